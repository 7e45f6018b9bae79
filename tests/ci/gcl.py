"""Running a GitLab pipeline with gitlab-ci-local 4.60.0, the way these tests need it:

  gitlab-ci-local --force-shell-executor --shell-isolation --no-artifacts-to-source \\
      --home <empty dir> --no-color --variable K=V ... [--unset-variable K] [ARGS]

- run in the repository's work tree: `rules: changes:` runs `git diff` in the process's cwd;
- a clean environment (PATH with the host's Python, git, curl, bash and node; a HOME of its
  own): the shell executor hands the whole process environment to every job;
- `--shell-isolation`: each job runs in a fresh copy of the tracked files, as on a runner;
- `--force-shell-executor` runs `image:` jobs on the host, but still gives them the container's
  CI_PROJECT_DIR (/builds/...): the runner settings set CI_PROJECT_DIR=. (the job's folder);
- CI_SERVER_URL and CI_API_V4_URL come from the `gcl-origin` remote, which must be an http URL
  (the fake GitLab's); `origin` stays the bare repository (its HEAD gives the default branch);
- at least two --variable flags: with exactly one, 4.60 splits its value at spaces.
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .conftest import IDENTITY_KEY, Contoso, StateStore, git, host_path
from .fake_gitlab import FakeGitLab
from .tools import Tools, Wheelhouse


@dataclass
class Pipeline:
    returncode: int
    output: str
    seconds: float
    repo: Path

    def job_log(self, job: str) -> str:
        return (self.repo / ".gitlab-ci-local" / "output" / f"{job}.log").read_text()

    def passed(self) -> list[str]:
        return re.findall(r"^ PASS  (?:\[[^\]]*\] )?(\S+)", self.output, re.M)

    def failed(self) -> list[str]:
        return re.findall(r"^ FAIL  (?:\[[^\]]*\] )?(\S+)", self.output, re.M)


def command(
    tools: Tools,
    tmp: Path,
    *args: str,
    variables: dict[str, str] | None = None,
    unset: tuple[str, ...] = (),
) -> tuple[list[str], dict[str, str]]:
    """argv and environment for one gitlab-ci-local run."""
    home = tmp / "gcl-home"  # never the developer's ~/.gitlab-ci-local/variables.yml
    home.mkdir(parents=True, exist_ok=True)
    argv = [
        str(tools.gitlab_ci_local),
        "--force-shell-executor",
        "--shell-isolation",
        "--no-artifacts-to-source",
        "--home",
        str(home),
        "--no-color",
        "--max-job-name-padding",
        "0",
    ]
    for key, value in {"GCL_TEST": "1", **(variables or {})}.items():
        argv += ["--variable", f"{key}={value}"]
    for key in unset:
        argv += ["--unset-variable", key]
    env = {"PATH": host_path(tmp), "HOME": str(home), "LANG": "C.UTF-8"}
    return [*argv, *args], env


def gitlab_ci_local(
    tools: Tools,
    repo: Path,
    tmp: Path,
    *args: str,
    variables: dict[str, str] | None = None,
    unset: tuple[str, ...] = (),
    timeout: float = 600,
) -> Pipeline:
    argv, env = command(tools, tmp, *args, variables=variables, unset=unset)
    started = time.monotonic()
    done = subprocess.run(
        argv, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    return Pipeline(done.returncode, done.stdout + done.stderr, time.monotonic() - started, repo)


# --- what a pipeline is given -----------------------------------------------------------------

TOKEN = "glpat-not-a-real-token"
PROJECT_ID = 1217
MR_IID = 5
MARKER = "<!-- dsr-plan -->"


def remote_for(gitlab: FakeGitLab, clone: Path) -> None:
    """gitlab-ci-local takes CI_SERVER_URL and CI_API_V4_URL from this remote."""
    git(clone, "remote", "add", "gcl-origin", f"{gitlab.url}/contoso/privacy-workspace.git")


def unprotected(contoso: Contoso, store: StateStore) -> dict[str, str]:
    """Variables every pipeline sees: read-only credentials (the demo's SQLite files have no
    logins, so the systems' read-only URLs are the same files)."""
    return {
        "DSR_STATE_URL_READONLY": store.readonly_url,
        "DSR_IDENTITY_KEY": IDENTITY_KEY,
        "DSR_GITLAB_TOKEN": TOKEN,
        **{f"{name}_READONLY": url for name, url in contoso.urls.items()},
    }


def protected(contoso: Contoso, store: StateStore) -> dict[str, str]:
    """Variables only pipelines of the protected default branch see."""
    return {"DSR_STATE_URL": store.url, **contoso.urls}


def runner(wheelhouse: Wheelhouse) -> dict[str, str]:
    """The runner's own settings: pip installs from the wheelhouse, as a runner would from
    its organisation's index; CI_PROJECT_DIR: see the module docstring."""
    return {**wheelhouse.pip_env(), "CI_PROJECT_DIR": "."}


def merge_request(contoso: Contoso, store: StateStore, wheelhouse: Wheelhouse) -> dict[str, str]:
    return {
        **runner(wheelhouse),
        **unprotected(contoso, store),
        "CI_PIPELINE_SOURCE": "merge_request_event",
        "CI_MERGE_REQUEST_IID": str(MR_IID),
        "CI_MERGE_REQUEST_PROJECT_ID": str(PROJECT_ID),
    }


def main_branch(
    contoso: Contoso, store: StateStore, wheelhouse: Wheelhouse, source: str
) -> dict[str, str]:
    return {
        **runner(wheelhouse),
        **unprotected(contoso, store),
        **protected(contoso, store),
        "CI_PIPELINE_SOURCE": source,
        **({"DSR_SCHEDULE": "apply"} if source == "schedule" else {}),
    }
