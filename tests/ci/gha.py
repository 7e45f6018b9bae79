"""A small, strict stand-in for a GitHub Actions runner: it runs the `run:` steps of one job of a
workflow file in order, with bash as GitHub runs it, and the `env:` each level declares.

What it does, and what it refuses:
- `${{ ... }}` is evaluated in `env:` values only, and only as a plain context path:
  secrets.NAME (empty when unset, as on GitHub), vars.NAME, github.a.b (from the event the
  test gives), steps.ID.outputs.NAME. Anything else (functions, operators) is an error: the
  templates keep logic out of expressions. A `${{` inside `run:` is an error too.
- `uses:` steps: actions/checkout clones the workspace repository at the ref under test;
  actions/setup-python puts a fresh copy of a pristine venv of the host's Python 3.11 (made
  once, as the runner's tool cache holds its Pythons) first on PATH (the real action also
  exports pythonLocation etc.; the templates do not use them);
  actions/upload-artifact copies the listed paths into artifacts/NAME/. Any other action is
  an error.
- Step-level `if:` is an error (the templates have none); the job-level `if:` is returned for
  the test to check, not evaluated.
- Like GitHub: GITHUB_OUTPUT, GITHUB_ENV and GITHUB_STEP_SUMMARY files, a failed step skips the
  rest, `defaults.run.shell: bash` is `bash --noprofile --norc -eo pipefail {0}`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
PATH_EXPR = re.compile(r"[A-Za-z_][\w-]*(\.[A-Za-z_][\w-]*)*")
KNOWN_ACTIONS = ("actions/checkout@", "actions/setup-python@", "actions/upload-artifact@")


@dataclass
class StepResult:
    name: str
    returncode: int | None  # None: skipped
    output: str = ""


@dataclass
class JobResult:
    steps: list[StepResult]
    outputs: dict[str, dict[str, str]]
    summary: str
    artifacts: dict[str, list[str]]
    workspace: Path
    job_if: str | None

    @property
    def ok(self) -> bool:
        return all(s.returncode in (0, None) for s in self.steps) and self.steps[-1].returncode == 0

    @property
    def python_bin(self) -> Path:
        """bin/ of the Python that setup-python gave the job (dsr is installed there)."""
        return self.workspace.parent / "hostedtoolcache" / "python" / "bin"

    def step(self, name: str) -> StepResult:
        return next(s for s in self.steps if s.name == name)

    def log(self) -> str:
        return "\n".join(f"--- {s.name}: {s.returncode}\n{s.output}" for s in self.steps)


def load_workflow(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as True
    if True in data:
        data["on"] = data.pop(True)
    return data


@dataclass
class Runner:
    workflow: Path
    repo: Path  # the git repository actions/checkout clones
    ref: str
    tmp: Path
    host_path: str  # PATH before setup-python: python3, git, bash, and the fake gh
    secrets: dict[str, str] = field(default_factory=dict)
    github: dict[str, Any] = field(default_factory=dict)  # the github context (event etc.)
    extra_env: dict[str, str] = field(default_factory=dict)  # the runner's own environment
    python: Path = Path()  # a pristine venv of the host's Python: setup-python's tool cache
    python_version: str = "3.11"

    def evaluate(self, text: str, steps: dict[str, dict[str, str]]) -> str:
        def one(m: re.Match[str]) -> str:
            expr = m.group(1)
            if not PATH_EXPR.fullmatch(expr):
                raise NotImplementedError(f"expression not supported by this harness: {expr}")
            head, *rest = expr.split(".")
            if head == "secrets":
                return self.secrets.get(rest[0], "")
            if head == "vars":
                return ""
            if head == "steps":
                sid, kind, name = rest
                assert kind == "outputs", expr
                return steps.get(sid, {}).get(name, "")
            if head == "github":
                value: Any = self.github
                for part in rest:
                    value = value[part]
                return str(value)
            raise NotImplementedError(f"context not supported by this harness: {expr}")

        return EXPR.sub(one, str(text))

    def run_job(self, job_id: str) -> JobResult:
        wf = load_workflow(self.workflow)
        job = wf["jobs"][job_id]
        shell = (job.get("defaults") or wf.get("defaults") or {}).get("run", {}).get("shell")
        assert shell == "bash", f"{self.workflow.name}: defaults.run.shell should be bash"
        workspace = self.tmp / "workspace"
        runner_temp = self.tmp / "runner-temp"
        artifacts_dir = self.tmp / "artifacts"
        for d in (runner_temp, artifacts_dir):
            d.mkdir(parents=True, exist_ok=True)
        summary = runner_temp / "step_summary.md"
        summary.write_text("")
        path = self.host_path
        env_from_steps: dict[str, str] = {}
        outputs: dict[str, dict[str, str]] = {}
        artifacts: dict[str, list[str]] = {}
        results: list[StepResult] = []
        failed = False
        for i, step in enumerate(job["steps"]):
            name = step.get("name") or step.get("uses") or f"step {i}"
            if "if" in step:
                raise NotImplementedError(f"step-level if: in {name}")
            if failed:
                results.append(StepResult(name, None))
                continue
            uses = step.get("uses")
            if uses:
                assert uses.startswith(KNOWN_ACTIONS), f"unexpected action {uses}"
                with_ = step.get("with") or {}
                if uses.startswith("actions/checkout@"):
                    assert with_.get("persist-credentials") is False
                    subprocess.run(
                        [
                            "git",
                            "clone",
                            "-q",
                            "--branch",
                            self.ref,
                            str(self.repo),
                            str(workspace),
                        ],
                        check=True,
                    )
                    results.append(StepResult(name, 0, f"checked out {self.ref}"))
                elif uses.startswith("actions/setup-python@"):
                    assert str(with_["python-version"]) == self.python_version, with_
                    venv = self.tmp / "hostedtoolcache" / "python"
                    shutil.copytree(self.python, venv, symlinks=True)
                    results.append(StepResult(name, 0, f"Python {self.python_version}"))
                    path = f"{venv / 'bin'}:{path}"
                else:  # upload-artifact
                    copied = []
                    dest = artifacts_dir / with_["name"]
                    dest.mkdir(parents=True, exist_ok=True)
                    for rel in str(with_["path"]).split():
                        src = workspace / rel
                        if src.exists():
                            shutil.copy(src, dest / src.name)
                            copied.append(rel)
                    artifacts[with_["name"]] = copied
                    if not copied and with_.get("if-no-files-found", "warn") == "error":
                        failed = True
                    results.append(StepResult(name, 1 if failed else 0, f"uploaded {copied}"))
                continue

            script = step["run"]
            assert "${{" not in script, f"{name}: expression inside run:"
            env_levels = {
                **(wf.get("env") or {}),
                **(job.get("env") or {}),
                **(step.get("env") or {}),
            }
            step_env = {k: self.evaluate(v, outputs) for k, v in env_levels.items()}
            output_file = runner_temp / f"output_{i}"
            env_file = runner_temp / f"env_{i}"
            output_file.write_text("")
            env_file.write_text("")
            env = {
                "PATH": path,
                "HOME": str(self.tmp / "home"),
                "CI": "true",
                "GITHUB_ACTIONS": "true",
                "GITHUB_WORKSPACE": str(workspace),
                "GITHUB_OUTPUT": str(output_file),
                "GITHUB_ENV": str(env_file),
                "GITHUB_STEP_SUMMARY": str(summary),
                "GITHUB_REPOSITORY": self.github["repository"],
                "GITHUB_SERVER_URL": "https://github.com",
                "GITHUB_RUN_ID": str(self.github.get("run_id", "4242")),
                "GITHUB_SHA": self.github.get("sha", "0" * 40),
                "GITHUB_REF": self.github.get("ref", f"refs/heads/{self.ref}"),
                "GITHUB_EVENT_NAME": self.github.get("event_name", ""),
                "RUNNER_TEMP": str(runner_temp),
                **self.extra_env,
                **env_from_steps,
                **step_env,
            }
            (self.tmp / "home").mkdir(exist_ok=True)
            script_file = runner_temp / f"step_{i}.sh"
            script_file.write_text(script)
            done = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script_file)],
                cwd=workspace,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            results.append(StepResult(name, done.returncode, done.stdout + done.stderr))
            if "id" in step:
                outputs[step["id"]] = parse_key_values(output_file.read_text())
            env_from_steps.update(parse_key_values(env_file.read_text()))
            failed = done.returncode != 0
        return JobResult(results, outputs, summary.read_text(), artifacts, workspace, job.get("if"))


def parse_key_values(text: str) -> dict[str, str]:
    """GITHUB_OUTPUT / GITHUB_ENV: `name=value` lines and `name<<DELIM` heredocs."""
    values: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, delim = line.split("<<", 1)
            body = []
            for inner in lines:
                if inner == delim:
                    break
                body.append(inner)
            values[key] = "\n".join(body)
        elif "=" in line:
            key, value = line.split("=", 1)
            values[key] = value
    return values


def install_fake_gh(
    bin_dir: Path, python: Path, state_file: Path, comments: list[dict[str, Any]]
) -> None:
    """Puts a `gh` on PATH (bin_dir) that is tests/ci/fake_gh.py, run by `python` (which has
    the jq package), holding `comments` to begin with."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    gh = bin_dir / "gh"
    script = Path(__file__).with_name("fake_gh.py")
    gh.write_text(f'#!/bin/sh\nexec "{python}" "{script}" "$@"\n')
    gh.chmod(0o755)
    state_file.write_text(json.dumps({"next_id": 1000, "comments": comments}))


def gh_calls(state_file: Path) -> list[list[str]]:
    path = Path(str(state_file) + ".calls")
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def gh_comments(state_file: Path) -> list[dict[str, Any]]:
    return json.loads(state_file.read_text())["comments"]
