"""The GitLab CI file `dsr init` writes: check-jsonschema on it, its shape, which jobs each kind
of pipeline runs (gitlab-ci-local's own rule evaluation), and a failed plan posted as the
merge-request note before the job fails. The whole loop (plan, merge, apply, a fresh runner, a
killed apply) is in test_pipeline.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from .conftest import Contoso, StateStore, run
from .fake_gitlab import FakeGitLab
from .gcl import MR_IID, PROJECT_ID, TOKEN, gitlab_ci_local, merge_request, remote_for
from .tools import Tools, Wheelhouse


@pytest.fixture
def gitlab() -> Iterator[FakeGitLab]:
    fake = FakeGitLab(TOKEN)
    fake.start()
    yield fake
    fake.stop()


def test_check_jsonschema_gitlab_ci(ci_tools: Tools, contoso: Contoso) -> None:
    done = run(
        [
            str(ci_tools.check_jsonschema),
            "--builtin-schema",
            "vendor.gitlab-ci",
            str(contoso.work / ".gitlab-ci.yml"),
        ],
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok -- validation done" in done.stdout


def test_the_shape_of_the_pipeline(contoso: Contoso) -> None:
    ci = yaml.safe_load((contoso.work / ".gitlab-ci.yml").read_text())
    assert ci["dsr-plan"]["interruptible"] is True
    assert ci["dsr-apply"]["resource_group"] == "dsr-apply"
    assert ci["dsr-apply"]["interruptible"] is False
    assert ci["dsr-status"]["needs"] == []
    assert ci[".dsr"]["cache"]["key"]["files"] == ["requirements-dsr.txt"]
    assert "python -m pip install -r requirements-dsr.txt" in ci[".dsr"]["before_script"]
    assert ci["dsr-plan"]["artifacts"]["when"] == "always"
    assert set(ci["dsr-plan"]["artifacts"]["paths"]) == {"plan.json", "plan.md", "dsr-plan-note.md"}
    assert ci["dsr-status"]["script"][-1] == "dsr status --fail-on-overdue"


def selected(
    tools: Tools, contoso: Contoso, tmp: Path, branch: str, variables: dict[str, str]
) -> list[str]:
    run(["git", "checkout", "-q", branch], cwd=contoso.work)
    unset = ("CI_COMMIT_BRANCH",) if "CI_MERGE_REQUEST_IID" in variables else ()
    p = gitlab_ci_local(tools, contoso.work, tmp, "--list-json", variables=variables, unset=unset)
    assert p.returncode == 0, p.output
    jobs = json.loads(p.output[p.output.index("[\n") : p.output.rindex("]") + 1])
    return [j["name"] for j in jobs if j["when"] != "never"]


def test_which_jobs_each_pipeline_runs(ci_tools: Tools, contoso: Contoso, tmp_path: Path) -> None:
    contoso.branch("feature")
    (contoso.work / "policies" / "requests" / "README.md").write_text("One file per request.\n")
    contoso.commit_and_push("a change under policies/")

    def jobs(branch: str, **variables: str) -> list[str]:
        return selected(ci_tools, contoso, tmp_path, branch, variables)

    mr = {"CI_PIPELINE_SOURCE": "merge_request_event", "CI_MERGE_REQUEST_IID": "5"}
    assert jobs("feature", **mr) == ["dsr-plan"]
    assert jobs("main", CI_PIPELINE_SOURCE="push") == ["dsr-apply"]
    assert jobs("feature", CI_PIPELINE_SOURCE="push") == []
    assert jobs("main", CI_PIPELINE_SOURCE="web") == ["dsr-apply"]
    assert jobs("main", CI_PIPELINE_SOURCE="schedule") == ["dsr-apply", "dsr-status"]
    assert jobs("main", CI_PIPELINE_SOURCE="schedule", DSR_SCHEDULE="apply") == ["dsr-apply"]
    assert jobs("main", CI_PIPELINE_SOURCE="schedule", DSR_SCHEDULE="status") == ["dsr-status"]
    assert jobs("feature", CI_PIPELINE_SOURCE="schedule") == []


def test_a_failed_plan_is_posted_as_the_note_then_fails_the_job(
    ci_tools: Tools,
    wheelhouse: Wheelhouse,
    contoso: Contoso,
    store: StateStore,
    gitlab: FakeGitLab,
    tmp_path: Path,
) -> None:
    """The state store cannot be opened (its database does not exist): dsr plan exits 1; the
    note says so with dsr's error line, the artifacts are kept, and the job fails last."""
    remote_for(gitlab, contoso.work)
    contoso.branch("erasure")
    contoso.new_request("erasure", "DSR-GL-0009", "crm-only")
    contoso.commit_and_push("DSR-GL-0009")
    variables = merge_request(contoso, store, wheelhouse)
    missing = store.readonly_url.rsplit("/", 1)[0] + "/dsr_ci_no_such_database"
    variables["DSR_STATE_URL_READONLY"] = missing
    p = gitlab_ci_local(
        ci_tools, contoso.work, tmp_path, variables=variables, unset=("CI_COMMIT_BRANCH",)
    )
    assert p.returncode != 0 and p.failed() == ["dsr-plan"], p.output
    log = p.job_log("dsr-plan")
    assert "posted the plan note" in log and "dsr validate or dsr plan exited 1" in log
    (note,) = gitlab.bot_notes((PROJECT_ID, MR_IID))
    assert "dsr plan failed (exit 1)" in note["body"]
    assert "dsr_ci_no_such_database" in note["body"]
    artifacts = contoso.work / ".gitlab-ci-local" / "artifacts" / "dsr-plan"
    assert (artifacts / "dsr-plan-note.md").exists()
