"""The GitHub Actions workflows `dsr init` writes: zizmor and check-jsonschema on them, their
shape (least privilege, pins, concurrency), and their jobs run step by step by a strict stand-in
runner (gha.py), with the exact `run:` scripts, against Contoso's systems and a PostgreSQL
state store: the plan job with the read-only role, the apply job and the status job.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from reconciler.cli import cli

from .conftest import (
    IDENTITY_KEY,
    Contoso,
    StateStore,
    git,
    host_path,
    host_python,
    run,
)
from .gha import JobResult, Runner, gh_calls, gh_comments, install_fake_gh, load_workflow
from .tools import Tools, Wheelhouse

WORKFLOW_NAMES = ["dsr-apply.yml", "dsr-plan.yml", "dsr-status.yml"]
MARKER = "<!-- dsr-plan -->"
REPOSITORY = "contoso/privacy-workspace"
BOT = "github-actions[bot]"
TOKEN = "ghs_not_a_real_token"  # github.token: the fake gh only checks that it is set
# The release tags these commits were read from (the actions' repositories, tag dereferenced
# to its commit). upload-artifact v6 runs on Node.js 24, like the other two.
PINNED = {
    "actions/checkout": ("fbc6f3992d24b796d5a048ff273f7fcc4a7b6c09", "v5.1.0"),
    "actions/setup-python": ("ece7cb06caefa5fff74198d8649806c4678c61a1", "v6.3.0"),
    "actions/upload-artifact": ("b7c566a772e6b6bfb58ed0dc250532a479d7789f", "v6.0.0"),
}


@pytest.fixture(scope="module")
def workflows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workflows of a workspace fresh from `dsr init --ci github`."""
    root = tmp_path_factory.mktemp("init") / "ws"
    result = CliRunner().invoke(cli, ["init", str(root), "--ci", "github"])
    assert result.exit_code == 0, result.output
    return root / ".github" / "workflows"


# --- static checks ---------------------------------------------------------------------------


def test_the_three_workflows(workflows: Path) -> None:
    assert sorted(p.name for p in workflows.iterdir()) == WORKFLOW_NAMES


@pytest.mark.parametrize("persona", ["regular", "pedantic", "auditor"])
def test_zizmor_offline_has_no_findings(ci_tools: Tools, workflows: Path, persona: str) -> None:
    done = run(
        [
            str(ci_tools.zizmor),
            "--offline",
            f"--persona={persona}",
            "--no-progress",
            str(workflows),
        ],
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings to report" in done.stdout


def test_check_jsonschema_github_workflows(ci_tools: Tools, workflows: Path) -> None:
    files = [str(workflows / name) for name in WORKFLOW_NAMES]
    done = run(
        [str(ci_tools.check_jsonschema), "--builtin-schema", "vendor.github-workflows", *files],
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok -- validation done" in done.stdout


@pytest.mark.parametrize("name", WORKFLOW_NAMES)
def test_least_privilege_and_hygiene(workflows: Path, name: str) -> None:
    wf = load_workflow(workflows / name)
    assert wf["permissions"] == {}, "top-level permissions: {} so that no job inherits any"
    allowed = {"contents": "read", "pull-requests": "write"}
    for job_id, job in wf["jobs"].items():
        perms = job["permissions"]
        assert all(allowed[k] == v for k, v in perms.items()), perms
        if "pull-requests" in perms:
            assert name == "dsr-plan.yml", "only the plan job writes (its comment)"
        assert isinstance(job["timeout-minutes"], int)
        assert job["environment"]["deployment"] is False
        for step in job["steps"]:
            if "run" in step:
                assert "${{" not in step["run"], f"{job_id}: expression inside run:"
            uses = step.get("uses", "")
            if uses.startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False
            if uses.startswith("actions/setup-python@"):
                assert step["with"]["cache-dependency-path"] == "requirements-dsr.txt"
    text = (workflows / name).read_text()
    assert "python -m pip install -r requirements-dsr.txt" in text
    assert not re.search(r"pip install dsr(\s|$)", text)


def test_triggers_environments_and_concurrency(workflows: Path) -> None:
    plan = load_workflow(workflows / "dsr-plan.yml")
    assert list(plan["on"]) == ["pull_request"]
    assert plan["concurrency"] == {
        "group": "dsr-plan-${{ github.event.pull_request.number }}",
        "cancel-in-progress": True,
    }
    assert plan["jobs"]["plan"]["environment"]["name"] == "dsr-read"
    apply = load_workflow(workflows / "dsr-apply.yml")
    assert apply["concurrency"] == {"group": "dsr-apply", "cancel-in-progress": False}
    assert set(apply["on"]) == {"push", "schedule", "workflow_dispatch"}
    assert apply["on"]["push"]["branches"] == ["main"]
    assert apply["jobs"]["apply"]["environment"]["name"] == "dsr-apply"
    status = load_workflow(workflows / "dsr-status.yml")
    assert set(status["on"]) == {"schedule", "workflow_dispatch"}
    assert status["jobs"]["status"]["environment"]["name"] == "dsr-read"


def test_actions_pinned_by_full_sha_with_their_tag(workflows: Path) -> None:
    uses = re.compile(r"^\s*uses: ([\w.-]+/[\w.-]+)@(\S+)(?: # (\S+))?$", re.M)
    seen = set()
    for name in WORKFLOW_NAMES:
        for action, ref, tag in uses.findall((workflows / name).read_text()):
            assert (ref, tag) == PINNED[action], f"{name}: {action}@{ref} # {tag}"
            seen.add(action)
    assert seen == set(PINNED)


# --- running the jobs ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tool_cache_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python that setup-python hands each job a copy of."""
    venv = tmp_path_factory.mktemp("hostedtoolcache") / "python"
    run([host_python(), "-m", "venv", str(venv)])
    return venv


def pr_event(contoso: Contoso, branch: str, number: int = 17) -> dict[str, Any]:
    head = git(contoso.work, "rev-parse", branch)
    repo = {"full_name": REPOSITORY}
    return {
        "repository": REPOSITORY,
        "token": TOKEN,
        "event_name": "pull_request",
        "ref": f"refs/pull/{number}/merge",
        "event": {"pull_request": {"number": number, "head": {"sha": head, "repo": repo}}},
    }


def main_event(contoso: Contoso, event: str) -> dict[str, Any]:
    sha = git(contoso.work, "rev-parse", "main")
    return {
        "repository": REPOSITORY,
        "token": TOKEN,
        "event_name": event,
        "ref": "refs/heads/main",
        "sha": sha,
    }


def read_secrets(contoso: Contoso, state_url: str) -> dict[str, str]:
    """The dsr-read environment. The demo's SQLite files have no logins: the same URLs."""
    return {
        "DSR_STATE_URL_READONLY": state_url,
        "DSR_IDENTITY_KEY": IDENTITY_KEY,
        **{f"{k}_READONLY": v for k, v in contoso.urls.items()},
    }


def apply_secrets(contoso: Contoso, store: StateStore) -> dict[str, str]:
    """The dsr-apply environment."""
    return {"DSR_STATE_URL": store.url, "DSR_IDENTITY_KEY": IDENTITY_KEY, **contoso.urls}


@dataclass
class Jobs:
    """Runs one job of one of Contoso's workflows, each in a folder of its own."""

    contoso: Contoso
    tools: Tools
    wheelhouse: Wheelhouse
    python: Path
    tmp: Path
    runs: int = 0

    def run(
        self,
        workflow: str,
        job: str,
        *,
        ref: str,
        secrets: dict[str, str],
        github: dict[str, Any],
        comments: list[dict[str, Any]] | None = None,
    ) -> tuple[JobResult, Path]:
        self.runs += 1
        tmp = self.tmp / f"run{self.runs}"
        tmp.mkdir(parents=True)
        gh_state = tmp / "gh-state.json"
        install_fake_gh(tmp / "fakebin", self.tools.python, gh_state, comments or [])
        runner = Runner(
            workflow=self.contoso.work / ".github" / "workflows" / workflow,
            repo=self.contoso.origin,
            ref=ref,
            tmp=tmp,
            host_path=f"{tmp / 'fakebin'}:{host_path(tmp)}",
            secrets=secrets,
            github=github,
            extra_env={**self.wheelhouse.pip_env(), "FAKE_GH_STATE": str(gh_state)},
            python=self.python,
        )
        return runner.run_job(job), gh_state


@pytest.fixture
def jobs(
    contoso: Contoso,
    ci_tools: Tools,
    wheelhouse: Wheelhouse,
    tool_cache_python: Path,
    tmp_path: Path,
) -> Jobs:
    return Jobs(contoso, ci_tools, wheelhouse, tool_cache_python, tmp_path / "jobs")


def everything_said(result: JobResult, gh_state: Path) -> str:
    comments = "\n".join(c["body"] for c in gh_comments(gh_state))
    return "\n".join([result.log(), result.summary, comments])


SOMEONE_ELSES = {"id": 7, "issue": 17, "body": f"{MARKER}\ncopied", "user": {"login": "mallory"}}


def test_plan_posts_one_comment_and_edits_it_on_the_next_push(
    contoso: Contoso, store: StateStore, jobs: Jobs
) -> None:
    """With the read-only role, on a store no apply has created yet (it reads as empty)."""
    contoso.branch("erasure-1")
    contoso.new_request("erasure", "DSR-CI-0001", "crm-only")
    contoso.commit_and_push("DSR-CI-0001: erasure")
    first, gh_state = jobs.run(
        "dsr-plan.yml",
        "plan",
        ref="erasure-1",
        secrets=read_secrets(contoso, store.readonly_url),
        github=pr_event(contoso, "erasure-1"),
        comments=[SOMEONE_ELSES],
    )
    assert first.ok, first.log()
    assert first.job_if == "github.event.pull_request.head.repo.full_name == github.repository"
    assert first.outputs["plan"]["exitcode"] == "2"
    assert "dsr, version 0.2.0" in run([str(first.python_bin / "dsr"), "--version"]).stdout
    plan_md = (first.workspace / "plan.md").read_text()
    assert "DSR-CI-0001" in plan_md and "**Plan:" in plan_md
    assert first.artifacts["dsr-plan"] == ["plan.json", "plan.md", "dsr-plan-comment.md"]
    assert "DSR-CI-0001" in first.summary and MARKER not in first.summary
    assert "changes pending" in first.step("Fail if the plan failed").output
    comments = gh_comments(gh_state)
    assert comments[0] == SOMEONE_ELSES, "someone else's comment is never edited"
    ours = [c for c in comments if c["user"]["login"] == BOT]
    assert len(ours) == 1 and ours[0]["body"].startswith(MARKER + "\n### dsr plan")
    assert "DSR-CI-0001" in ours[0]["body"]
    calls = gh_calls(gh_state)
    assert calls[0][:3] == ["api", "--paginate", f"repos/{REPOSITORY}/issues/17/comments"]
    assert calls[1][:4] == ["api", "--method", "POST", f"repos/{REPOSITORY}/issues/17/comments"]
    assert contoso.subject("crm-only") not in everything_said(first, gh_state)

    # The next push to the pull request: the same comment is edited, no new one.
    contoso.new_request("erasure", "DSR-CI-0002", "both")
    contoso.commit_and_push("DSR-CI-0002: erasure")
    second, gh_state2 = jobs.run(
        "dsr-plan.yml",
        "plan",
        ref="erasure-1",
        secrets=read_secrets(contoso, store.readonly_url),
        github=pr_event(contoso, "erasure-1"),
        comments=comments,
    )
    assert second.ok, second.log()
    (patch,) = [c for c in gh_calls(gh_state2) if "PATCH" in c]
    assert patch[:4] == ["api", "--method", "PATCH", f"repos/{REPOSITORY}/issues/comments/1001"]
    after = [c for c in gh_comments(gh_state2) if c["user"]["login"] == BOT]
    assert len(after) == 1 and "DSR-CI-0002" in after[0]["body"]
    output = second.step("Post or update the pull-request comment").output
    assert "updated the plan comment 1001" in output


def test_a_failed_plan_is_posted_then_fails_the_job(
    contoso: Contoso, store: StateStore, jobs: Jobs
) -> None:
    """validate passes, plan exits 1 (its state store cannot be opened): the comment and the
    summary carry dsr's error line, the artifact is kept, and only then does the job fail."""
    contoso.branch("erasure-3")
    contoso.new_request("erasure", "DSR-CI-0003", "crm-only")
    contoso.commit_and_push("DSR-CI-0003: erasure")
    missing = store.readonly_url.rsplit("/", 1)[0] + "/dsr_ci_no_such_database"
    result, gh_state = jobs.run(
        "dsr-plan.yml",
        "plan",
        ref="erasure-3",
        secrets=read_secrets(contoso, missing),
        github=pr_event(contoso, "erasure-3"),
    )
    assert not result.ok
    assert result.outputs["plan"]["exitcode"] == "1"
    assert [s.returncode for s in result.steps][-4:] == [0, 0, 0, 1], result.log()
    assert "dsr-plan-comment.md" in result.artifacts["dsr-plan"]
    (comment,) = gh_comments(gh_state)
    assert "dsr plan failed (exit 1)" in comment["body"]
    assert "dsr_ci_no_such_database" in comment["body"]  # dsr's own error line, from plan.err
    assert "dsr plan failed (exit 1)" in result.summary
    assert "::error title=dsr plan failed::" in result.steps[-1].output


def test_apply_after_the_merge_then_nothing_to_do_and_status_reads(
    contoso: Contoso, store: StateStore, jobs: Jobs
) -> None:
    contoso.branch("erasure-4")
    contoso.new_request("erasure", "DSR-CI-0004", "crm-only")
    contoso.commit_and_push("DSR-CI-0004: erasure")
    contoso.merge("erasure-4")
    secrets = apply_secrets(contoso, store)
    first, _ = jobs.run(
        "dsr-apply.yml",
        "apply",
        ref="main",
        secrets=secrets,
        github=main_event(contoso, "push"),
    )
    assert first.ok, first.log()
    assert first.job_if == "github.ref == 'refs/heads/main'"
    out = first.step("Apply").output
    assert "Apply complete" in out and "DSR-CI-0004" in out
    assert "### dsr apply (exit 0)" in first.summary
    # The hourly run: nothing left to do.
    second, _ = jobs.run(
        "dsr-apply.yml",
        "apply",
        ref="main",
        secrets=secrets,
        github=main_event(contoso, "schedule"),
    )
    assert second.ok, second.log()
    assert "Nothing to do." in second.step("Apply").output
    # The daily status job, with the read-only role, on the tables apply created.
    status, _ = jobs.run(
        "dsr-status.yml",
        "status",
        ref="main",
        secrets={"DSR_STATE_URL_READONLY": store.readonly_url},
        github=main_event(contoso, "schedule"),
    )
    assert status.ok, status.log()
    assert re.search(r"DSR-CI-0004\s+erasure\s+completed", status.step("Status").output)
    assert "### dsr status (exit 0)" in status.summary


def test_status_fails_when_a_request_is_overdue(
    contoso: Contoso, store: StateStore, jobs: Jobs
) -> None:
    """A request received 90 days ago and never applied: the daily job fails, so that the
    team is notified."""
    contoso.branch("late")
    contoso.new_request("erasure", "DSR-CI-0005", "crm-only")
    path = contoso.work / "policies" / "requests" / "DSR-CI-0005.yaml"
    text = path.read_text()
    received = re.search(r"^received: (\S+)$", text, re.M)
    assert received
    old = date.fromisoformat(received.group(1)) - timedelta(days=90)
    path.write_text(text.replace(received.group(0), f"received: {old.isoformat()}"))
    contoso.commit_and_push("DSR-CI-0005: received long ago")
    contoso.merge("late")
    result, _ = jobs.run(
        "dsr-status.yml",
        "status",
        ref="main",
        secrets={"DSR_STATE_URL_READONLY": store.readonly_url},
        github=main_event(contoso, "schedule"),
    )
    assert not result.ok
    assert "### dsr status (exit 1)" in result.summary
    assert re.search(r"DSR-CI-0005.*overdue", result.step("Status").output, re.I)
