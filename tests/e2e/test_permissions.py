"""Permissions end to end through the `dsr` CLI on the demo workspace (real SQLite files).

Covers the issue's "done when": drift revoked, apply twice is a no-op, stale saved plans
refused, the lock, audit verification, and bad input as file:line messages.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from reconciler.desired.schemas import load_schema
from reconciler.store import open_store

from .cli import dsr


def roles(ws: Path) -> set[tuple[str, str]]:
    with sqlite3.connect(ws / "state/demo/insights.db") as db:
        return set(db.execute("SELECT user_email, role FROM user_roles"))


def dsr_process(ws: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "reconciler", "-C", str(ws), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_demo_converges_and_second_apply_does_nothing(demo_workspace: Path) -> None:
    assert dsr(demo_workspace, "validate").exit_code == 0
    first = dsr(demo_workspace, "plan", "--detailed-exitcode")
    assert first.exit_code == 2, first.output
    assert "viewer to ben@contoso.example" in first.output
    assert "contributor from cara@contoso.example" in first.output
    assert "dave@contoso.example" in first.output

    applied = dsr(demo_workspace, "apply", "--auto-approve")
    assert applied.exit_code == 0, applied.output
    assert "Apply complete: 3 changes carried out" in applied.output
    assert roles(demo_workspace) == {
        ("ana@contoso.example", "admin"),
        ("erin@contoso.example", "admin"),
        ("ben@contoso.example", "contributor"),
        ("ben@contoso.example", "viewer"),
        ("cara@contoso.example", "viewer"),
    }
    again = dsr(demo_workspace, "apply", "--auto-approve")
    assert again.exit_code == 0
    assert "No changes" in again.output
    assert dsr(demo_workspace, "plan", "--detailed-exitcode").exit_code == 0


def test_removing_a_user_from_access_yaml_revokes_their_roles(demo_workspace: Path) -> None:
    assert dsr(demo_workspace, "apply", "--auto-approve").exit_code == 0
    access = demo_workspace / "policies/access.yaml"
    text = access.read_text()
    kept = [line for line in text.splitlines() if "ben@contoso.example" not in line]
    access.write_text("\n".join(kept) + "\n")

    planned = dsr(demo_workspace, "plan", "--detailed-exitcode")
    assert planned.exit_code == 2
    assert "ben@contoso.example (roles: contributor, viewer)" in planned.output
    assert dsr(demo_workspace, "apply", "--auto-approve").exit_code == 0
    assert not {r for r in roles(demo_workspace) if r[0] == "ben@contoso.example"}
    assert "No changes" in dsr(demo_workspace, "apply", "--auto-approve").output
    assert dsr(demo_workspace, "plan", "--detailed-exitcode").exit_code == 0


def test_saved_plan_applies_when_fresh_and_is_refused_when_stale(
    demo_workspace: Path, tmp_path: Path
) -> None:
    saved = tmp_path / "p.json"
    assert dsr(demo_workspace, "plan", "--out", str(saved)).exit_code == 0
    with sqlite3.connect(demo_workspace / "state/demo/insights.db") as db:
        db.execute(
            "INSERT INTO user_roles (user_email, role) VALUES ('eve@contoso.example', 'admin')"
        )
    before = roles(demo_workspace)
    stale = dsr(demo_workspace, "apply", str(saved), "--auto-approve")
    assert stale.exit_code == 1
    assert "actual state of insights changed since this plan was made" in stale.output
    assert "+ remove insights eve@contoso.example (roles: admin)" in stale.output
    assert roles(demo_workspace) == before  # nothing half-applied

    fresh = tmp_path / "q.json"
    assert dsr(demo_workspace, "plan", "--out", str(fresh)).exit_code == 0
    ok = dsr(demo_workspace, "apply", str(fresh), "--auto-approve")
    assert ok.exit_code == 0, ok.output
    assert ("eve@contoso.example", "admin") not in roles(demo_workspace)


def test_saved_plan_refused_after_policy_change(demo_workspace: Path, tmp_path: Path) -> None:
    saved = tmp_path / "p.json"
    assert dsr(demo_workspace, "plan", "--out", str(saved)).exit_code == 0
    access = demo_workspace / "policies/access.yaml"
    access.write_text(access.read_text().replace("roles: [viewer]", "roles: [viewer, contributor]"))
    stale = dsr(demo_workspace, "apply", str(saved), "--auto-approve")
    assert stale.exit_code == 1
    assert "policies changed since this plan was made" in stale.output
    assert "- revoke insights contributor from cara@contoso.example" in stale.output


def test_edited_plan_file_is_refused(demo_workspace: Path, tmp_path: Path) -> None:
    saved = tmp_path / "p.json"
    assert dsr(demo_workspace, "plan", "--out", str(saved)).exit_code == 0
    data = json.loads(saved.read_text())
    data["changes"] = data["changes"][:1]
    saved.write_text(json.dumps(data))
    result = dsr(demo_workspace, "apply", str(saved), "--auto-approve")
    assert result.exit_code == 1
    assert "edited after it was made" in result.output
    # Editing what a change does (not just which changes there are) is caught too.
    assert dsr(demo_workspace, "plan", "--out", str(saved)).exit_code == 0
    data = json.loads(saved.read_text())
    data["changes"][0]["params"] = {"user": "mallory@evil.example", "role": "admin"}
    saved.write_text(json.dumps(data))
    result = dsr(demo_workspace, "apply", str(saved), "--auto-approve")
    assert result.exit_code == 1
    assert "edited after it was made" in result.output
    assert ("mallory@evil.example", "admin") not in roles(demo_workspace)


def test_plan_json_validates_against_schema_and_round_trips(demo_workspace: Path) -> None:
    from reconciler.plan import planfile

    result = dsr(demo_workspace, "plan", "--format", "json")
    data = json.loads(result.stdout)
    jsonschema.Draft202012Validator(load_schema("plan")).validate(data)
    assert data["format_version"] == 2
    assert {c["action"] for c in data["changes"]} == {"grant_role", "revoke_role", "remove_user"}
    assert planfile.to_dict(planfile.from_dict(data)) == data


def test_markdown_plan(demo_workspace: Path) -> None:
    result = dsr(demo_workspace, "plan", "--format", "markdown")
    assert result.exit_code == 0
    assert "| - | revoke | contributor from cara@contoso.example |" in result.output
    assert "**Plan: 3 role changes.**" in result.output


def test_apply_without_auto_approve_needs_a_terminal(demo_workspace: Path) -> None:
    before = roles(demo_workspace)
    result = dsr(demo_workspace, "apply")
    assert result.exit_code == 1
    assert "pass --auto-approve" in result.output
    assert roles(demo_workspace) == before


def test_second_apply_fails_naming_the_lock_holder(demo_workspace: Path) -> None:
    store = open_store(f"sqlite:///{demo_workspace}/state/dsr.db")
    try:
        with store.lock("ops@runner-7: dsr apply", timeout=1):
            proc = dsr_process(demo_workspace, "apply", "--auto-approve", "--lock-timeout", "0.5")
            out, err = proc.communicate(timeout=60)
    finally:
        store.close()
    assert proc.returncode == 1, out + err
    assert "ops@runner-7: dsr apply" in err
    assert "Traceback" not in err
    assert ("dave@contoso.example", "contributor") in roles(demo_workspace)  # untouched


def test_two_applies_at_once_converge(demo_workspace: Path) -> None:
    procs = [dsr_process(demo_workspace, "apply", "--auto-approve") for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    outputs = [out for out, _ in results]
    assert sum("Apply complete: 3 changes" in o for o in outputs) == 1
    assert sum("No changes" in o for o in outputs) == 1
    assert dsr(demo_workspace, "plan", "--detailed-exitcode").exit_code == 0
    assert dsr(demo_workspace, "audit", "verify").exit_code == 0


def test_audit_verify_detects_an_edited_record(demo_workspace: Path) -> None:
    assert dsr(demo_workspace, "apply", "--auto-approve").exit_code == 0
    ok = dsr(demo_workspace, "audit", "verify")
    assert ok.exit_code == 0
    assert "3 records" in ok.output
    shown = dsr(demo_workspace, "audit", "show")
    assert "remove_user" in shown.output
    assert "@" not in shown.output  # users appear as keyed hashes only
    with sqlite3.connect(demo_workspace / "state/dsr.db") as db:
        db.execute("UPDATE audit SET outcome = 'failed' WHERE seq = 2")
    bad = dsr(demo_workspace, "audit", "verify")
    assert bad.exit_code == 1
    assert "audit record 2: content does not match its hash" in bad.output


@pytest.mark.parametrize(
    ("file", "content", "expected"),
    [
        ("policies/access.yaml", "roles: [admin\nusers: {}\n", "policies/access.yaml:"),
        (
            "policies/access.yaml",
            "roles: [admin]\nusers:\n  a@x.example: {roles: [boss]}\n",
            "policies/access.yaml:3:",
        ),
        ("dsr.yaml", "workspace: contoso\ncolour: blue\n", "dsr.yaml:2:"),
    ],
    ids=["malformed-yaml", "unknown-role", "unknown-key"],
)
def test_bad_input_is_reported_with_file_and_line(
    demo_workspace: Path, file: str, content: str, expected: str
) -> None:
    (demo_workspace / file).write_text(content)
    for command in (["validate"], ["plan"], ["apply", "--auto-approve"]):
        proc = subprocess.run(
            [sys.executable, "-m", "reconciler", "-C", str(demo_workspace), *command],
            capture_output=True,
            text=True,
            env={**os.environ},
            check=False,
        )
        assert proc.returncode == 1, command
        assert expected in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_status_shows_systems_and_last_run(demo_workspace: Path) -> None:
    before = dsr(demo_workspace, "status")
    assert before.exit_code == 0
    assert "never observed" in before.output
    assert "Last run: none" in before.output
    assert dsr(demo_workspace, "apply", "--auto-approve").exit_code == 0
    after = dsr(demo_workspace, "status")
    assert "insights" in after.output and ": ok" in after.output
    assert "succeeded" in after.output


def test_state_store_in_postgresql_shared_by_runners(
    demo_workspace: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dsr.yaml `state.url`: the lock, journal and audit chain in a shared PostgreSQL
    database (a driverless postgresql:// URL gets the psycopg driver dsr ships with)."""
    settings = demo_workspace / "dsr.yaml"
    settings.write_text(
        settings.read_text().replace(
            "state: {path: state/dsr.db}", "state: {url: env:DSR_STATE_URL}"
        )
    )
    assert "env:DSR_STATE_URL" in settings.read_text()
    unset = dsr(demo_workspace, "apply", "--auto-approve")
    assert unset.exit_code == 1 and "export DSR_STATE_URL" in unset.output
    monkeypatch.setenv(
        "DSR_STATE_URL", postgres_url.replace("postgresql+psycopg://", "postgresql://")
    )
    procs = [dsr_process(demo_workspace, "apply", "--auto-approve") for _ in range(2)]
    results = [p.communicate(timeout=120) for p in procs]
    outputs = [out for out, _ in results]
    assert [p.returncode for p in procs] == [0, 0], results
    assert sum("Apply complete: 3 changes" in o for o in outputs) == 1
    assert not (demo_workspace / "state/dsr.db").exists()
    verified = dsr(demo_workspace, "audit", "verify")
    assert verified.exit_code == 0 and "3 records" in verified.output
