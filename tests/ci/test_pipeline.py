"""The real pipeline, end to end: the GitLab CI file `dsr init` writes, run by gitlab-ci-local
on Contoso's workspace repository (a local bare origin), with a PostgreSQL state store (a
database per test, dropped after) and a fake GitLab API for the merge-request note.

The story: a merge request files an erasure and an approved export, made with `dsr new` and
`dsr approve`; its pipeline plans with the read-only role and posts the plan as a note. After
the merge, the main pipeline applies both (the export package is built). The next scheduled
pipeline runs in a fresh clone, standing in for a new runner with nothing of the first one's
files: it changes nothing and builds no second package. And an apply killed with SIGKILL while
it holds the lock does not block the next pipeline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import APPROVER, Contoso, StateStore, make_contoso, state_store
from .fake_gitlab import FakeGitLab
from .gcl import (
    MARKER,
    MR_IID,
    PROJECT_ID,
    TOKEN,
    Pipeline,
    command,
    gitlab_ci_local,
    main_branch,
    merge_request,
    remote_for,
)
from .tools import Tools, Wheelhouse

ERASURE, EXPORT = "DSR-GL-0001", "DSR-GL-0002"
WAIT_SECONDS = 180  # for a killed job's apply to reach its refresh


@dataclass
class Story:
    contoso: Contoso
    store: StateStore
    gitlab: FakeGitLab
    subjects: list[str]  # the raw addresses filed: never in a note or a log
    merge_request: Pipeline
    merged: Pipeline
    fresh_clone: Path
    next_runner: Pipeline


@pytest.fixture(scope="module")
def story(
    tmp_path_factory: pytest.TempPathFactory, ci_tools: Tools, wheelhouse: Wheelhouse
) -> Iterator[Story]:
    tmp = tmp_path_factory.mktemp("pipeline")
    contoso = make_contoso(tmp)
    gitlab = FakeGitLab(TOKEN)
    gitlab.start()
    try:
        with state_store() as store:
            remote_for(gitlab, contoso.work)
            # A privacy engineer's merge request: an erasure and an export, approved by an admin.
            contoso.branch("requests")
            contoso.new_request("erasure", ERASURE, "crm-only")
            contoso.new_request("export", EXPORT, "export")
            approved = contoso.dsr("approve", EXPORT, "--by", APPROVER)
            assert approved.exit_code == 0, approved.output
            contoso.commit_and_push(f"{ERASURE}, {EXPORT}")
            mr = gitlab_ci_local(
                ci_tools,
                contoso.work,
                tmp,
                variables=merge_request(contoso, store, wheelhouse),
                unset=("CI_COMMIT_BRANCH",),  # GitLab sets none in merge-request pipelines
            )
            contoso.merge("requests")
            merged = gitlab_ci_local(
                ci_tools,
                contoso.work,
                tmp,
                variables=main_branch(contoso, store, wheelhouse, "push"),
            )
            fresh = contoso.fresh_clone(tmp / "runner-2")
            remote_for(gitlab, fresh)
            later = gitlab_ci_local(
                ci_tools,
                fresh,
                tmp,
                variables=main_branch(contoso, store, wheelhouse, "schedule"),
            )
            subjects = [contoso.subject("crm-only"), contoso.subject("export")]
            yield Story(contoso, store, gitlab, subjects, mr, merged, fresh, later)
    finally:
        gitlab.stop()


def test_the_merge_request_gets_a_plan_and_one_note(story: Story) -> None:
    mr = story.merge_request
    assert mr.returncode == 0 and mr.passed() == ["dsr-plan"], mr.output
    log = mr.job_log("dsr-plan")
    assert "dsr, version 0.2.0" in log  # installed from requirements-dsr.txt, in the job
    assert "changes pending" in log and "posted the plan note" in log
    (note,) = story.gitlab.bot_notes((PROJECT_ID, MR_IID))
    body = note["body"]
    assert body.startswith(MARKER + "\n### dsr plan")
    assert ERASURE in body and EXPORT in body and "**Plan:" in body
    artifacts = story.contoso.work / ".gitlab-ci-local" / "artifacts" / "dsr-plan"
    assert {"plan.json", "plan.md", "dsr-plan-note.md"} <= {p.name for p in artifacts.iterdir()}
    for subject in story.subjects:
        assert subject not in body and subject not in log


def test_after_the_merge_the_main_pipeline_applies(story: Story) -> None:
    merged = story.merged
    assert merged.returncode == 0 and merged.passed() == ["dsr-apply"], merged.output
    log = merged.job_log("dsr-apply")
    assert "Apply complete" in log and ERASURE in log and EXPORT in log
    status = story.contoso.dsr("status", "--format", "json", state_url=story.store.readonly_url)
    assert status.exit_code == 0, status.output
    states = {r["id"]: r["state"] for r in json.loads(status.stdout)["requests"]}
    assert states == {ERASURE: "completed", EXPORT: "ready"}
    for subject in story.subjects:
        assert subject not in log


def test_a_fresh_runner_changes_nothing_and_builds_no_second_package(story: Story) -> None:
    later = story.next_runner
    assert later.returncode == 0 and later.passed() == ["dsr-apply"], later.output
    assert "Nothing to do." in later.job_log("dsr-apply")
    job_dir = story.fresh_clone / ".gitlab-ci-local" / "builds" / "dsr-apply"
    assert sorted(p.name for p in (job_dir / "state").iterdir()) == [".gitignore"]
    audit = story.contoso.dsr("audit", "show", "--format", "json", state_url=story.store.url)
    assert audit.exit_code == 0, audit.output
    records = [json.loads(line) for line in audit.stdout.splitlines()]
    builds = [r for r in records if r["action"] == "build_export"]
    assert [(r["request"], r["outcome"]) for r in builds] == [(EXPORT, "succeeded")]
    verify = story.contoso.dsr("audit", "verify", state_url=story.store.url)
    assert verify.exit_code == 0, verify.output


def test_the_package_can_be_fetched_from_a_fresh_clone(story: Story, tmp_path: Path) -> None:
    """The package lives in the state store, not on the runner that built it."""
    out = tmp_path / "delivery.zip"
    get = ["outbox", "get", EXPORT, "--out", str(out)]
    fetched = story.contoso.dsr(*get, state_url=story.store.url, cwd=story.fresh_clone)
    assert fetched.exit_code == 0, fetched.output
    with zipfile.ZipFile(out) as package:
        manifest = json.loads(package.read("manifest.json"))
    assert manifest["request_id"] == EXPORT


# --- a killed apply ----------------------------------------------------------------------------


def session_processes(sid: int) -> list[str]:
    """The processes still alive in session `sid`, as `pid command`."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if int(fields[3]) == sid and fields[0] != "Z":
            alive.append(f"{stat.parent.name} {cmdline.strip()}")
    return alive


def test_an_apply_killed_while_holding_the_lock_does_not_block_the_next(
    contoso: Contoso, store: StateStore, ci_tools: Tools, wheelhouse: Wheelhouse, tmp_path: Path
) -> None:
    contoso.branch("late-erasure")
    contoso.new_request("erasure", "DSR-GL-0003", "crm-only")
    contoso.commit_and_push("DSR-GL-0003")
    contoso.merge("late-erasure")
    variables = main_branch(contoso, store, wheelhouse, "push")
    gate = tmp_path / "refresh-gate"
    argv, env = command(
        ci_tools, tmp_path, variables={**variables, "CONTOSO_REFRESH_GATE": str(gate)}
    )
    log = tmp_path / "killed.log"
    with open(log, "w") as out:
        # A session of its own: the runner going away takes every process of the job with it.
        job = subprocess.Popen(
            argv,
            cwd=contoso.work,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + WAIT_SECONDS
        while not Path(f"{gate}.waiting").exists():
            assert job.poll() is None, f"the job ended first:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"no refresh began:\n{log.read_text()}"
            time.sleep(0.2)
        # The apply is inside its lock, at the refresh of the platform.
        status = contoso.dsr("status", "--format", "json", state_url=store.readonly_url)
        lock = json.loads(status.stdout)["lock"]
        assert lock is not None and lock["holder"].endswith(": dsr apply"), status.output
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=30)
    assert session_processes(job.pid) == []

    again = gitlab_ci_local(ci_tools, contoso.work, tmp_path, variables=variables)
    assert again.returncode == 0 and again.passed() == ["dsr-apply"], again.output
    apply_log = again.job_log("dsr-apply")
    assert "took over the state lock left by" in apply_log  # the dead run's record of it
    assert "was interrupted; recorded in the audit log" in apply_log
    status = contoso.dsr("status", "--format", "json", state_url=store.readonly_url)
    after = json.loads(status.stdout)
    assert after["lock"] is None
    assert {r["id"]: r["state"] for r in after["requests"]} == {"DSR-GL-0003": "completed"}
