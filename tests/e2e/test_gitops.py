"""The loop on CI runners: exit codes as schedulers read them, history not re-judged, a state
store that outlives runners (read-only plans, packages kept in the store), locks that die with
their holder, timeouts, SIGTERM, machine-readable output. Real SQLite and PostgreSQL; the demo
workspace. Each test here failed before the change it pins (the GitOps issue, #8)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from demo.contoso import pick_subject
from reconciler.store import open_store

from .cli import dsr, file_request


def dsr_process(ws: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "reconciler", "-C", str(ws), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def file_erasure(ws: Path, where: str, rid: str) -> None:
    email = pick_subject(ws, where)
    file_request(ws, "erasure", email, rid)


def file_export(ws: Path, where: str, rid: str, approver: str | None) -> None:
    email = pick_subject(ws, where)
    file_request(ws, "export", email, rid)
    if approver:
        assert dsr(ws, "approve", rid, "--by", approver).exit_code == 0


def use_shared_store(ws: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = ws / "dsr.yaml"
    text = settings.read_text().replace(
        "state: {path: state/dsr.db}", "state: {url: env:DSR_STATE_URL}"
    )
    settings.write_text(text)
    monkeypatch.setenv("DSR_STATE_URL", url)


# -- exit codes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args", [["plan", "--no-such-option"], ["no-such-command"], ["plan", "--format", "yaml"]]
)
def test_a_usage_error_exits_1_not_2(demo_workspace: Path, args: list[str]) -> None:
    """2 means "changes pending" to a scheduler; a typo in a job must read as an error."""
    result = dsr(demo_workspace, *args)
    assert result.exit_code == 1, result.output


def test_waiting_on_a_source_owner_is_not_a_pending_change(demo_workspace: Path) -> None:
    file_erasure(demo_workspace, "both", "DSR-W-1")  # also in the shop, which dsr may not write
    assert dsr(demo_workspace, "apply", "--auto-approve").exit_code == 0
    planned = dsr(demo_workspace, "plan", "--detailed-exitcode")
    assert planned.exit_code == 0, planned.output
    assert "waiting on a source owner (DSR-W-1)" in planned.output
    again = dsr(demo_workspace, "apply", "--auto-approve")
    assert again.exit_code == 0
    assert "waiting on a source owner" in again.output


def test_status_fails_on_overdue_requests_only_when_asked(demo_workspace: Path) -> None:
    email = pick_subject(demo_workspace, "crm-only")
    filed = dsr(
        demo_workspace,
        "new",
        "erasure",
        "--email",
        "-",
        "--requested-by",
        "dpo@x.example",
        "--id",
        "DSR-LATE-1",
        "--received",
        "2020-01-06",
        input=email,
    )
    assert filed.exit_code == 0, filed.output
    assert dsr(demo_workspace, "status").exit_code == 0
    failed = dsr(demo_workspace, "status", "--fail-on-overdue")
    assert failed.exit_code == 1
    assert "DSR-LATE-1 is overdue: due 2020-02-06" in failed.output
    assert "error: 1 request is overdue" in failed.output
    data = json.loads(dsr(demo_workspace, "status", "--format", "json").stdout)
    (late,) = [r for r in data["requests"] if r["id"] == "DSR-LATE-1"]
    assert late["overdue"] is True and late["due"] == "2020-02-06"
    assert dsr(demo_workspace, "apply", "--auto-approve").exit_code == 0
    # Answered (late): no longer overdue.
    assert dsr(demo_workspace, "status", "--fail-on-overdue").exit_code == 0


# -- history is not re-judged ---------------------------------------------------------------


def test_removing_an_admin_who_once_approved_an_export_breaks_nothing(
    demo_workspace: Path,
) -> None:
    file_export(demo_workspace, "export", "DSR-X-1", "erin@contoso.example")
    assert dsr(demo_workspace, "apply", "--auto-approve").exit_code == 0
    access = demo_workspace / "policies/access.yaml"
    access.write_text(
        "\n".join(x for x in access.read_text().splitlines() if not x.startswith("  erin@")) + "\n"
    )
    for args in (["validate", "--offline"], ["plan"], ["apply", "--auto-approve"]):
        result = dsr(demo_workspace, *args)
        assert result.exit_code == 0, (args, result.output)
    assert dsr(demo_workspace, "audit", "verify").exit_code == 0
    status = dsr(demo_workspace, "status").output
    assert "DSR-X-1" in status and "ready" in status


# -- a state store that outlives runners ----------------------------------------------------


def test_plan_never_writes_to_a_local_store(demo_workspace: Path) -> None:
    store = demo_workspace / "state/dsr.db"
    assert dsr(demo_workspace, "plan").exit_code == 0
    assert not store.exists(), "a dry run created the state store"
    assert dsr(demo_workspace, "apply", "--auto-approve").exit_code == 0
    file_erasure(demo_workspace, "crm-only", "DSR-RO-1")
    before = store.read_bytes()
    assert dsr(demo_workspace, "plan").exit_code == 0
    assert store.read_bytes() == before


@pytest.mark.postgres
def test_plan_runs_with_a_role_that_can_only_read_the_store(
    demo_workspace: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_shared_store(demo_workspace, postgres_url, monkeypatch)
    assert dsr(demo_workspace, "apply", "--auto-approve").exit_code == 0
    file_erasure(demo_workspace, "crm-only", "DSR-RO-2")
    role = f"dsr_plan_{os.getpid()}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    database = sa.make_url(postgres_url).database
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        conn.execute(sa.text(f'CREATE ROLE "{role}" LOGIN'))
        conn.execute(sa.text(f'GRANT CONNECT ON DATABASE "{database}" TO "{role}"'))
        conn.execute(sa.text(f'GRANT USAGE ON SCHEMA public TO "{role}"'))
        conn.execute(sa.text(f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"'))
    try:
        readonly = sa.make_url(postgres_url).set(username=role)
        monkeypatch.setenv("DSR_STATE_URL", readonly.render_as_string(hide_password=False))
        planned = dsr(demo_workspace, "plan", "--detailed-exitcode")
        assert planned.exit_code == 2, planned.output  # the new erasure, planned read-only
        assert "DSR-RO-2" in planned.output
        assert dsr(demo_workspace, "status").exit_code == 0
        assert dsr(demo_workspace, "audit", "verify").exit_code == 0
        refused = dsr(demo_workspace, "apply", "--auto-approve")
        assert refused.exit_code == 1  # a read-only role cannot apply, and says so
        assert "Traceback" not in refused.output
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'REASSIGN OWNED BY "{role}" TO CURRENT_USER'))
            conn.execute(sa.text(f'DROP OWNED BY "{role}"'))
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


def test_apply_on_a_ci_runner_refuses_a_local_state_file(
    demo_workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    refused = dsr(demo_workspace, "apply", "--auto-approve")
    assert refused.exit_code == 1
    assert "CI is set and the state store is a local file (state/dsr.db)" in refused.output
    assert not (demo_workspace / "state/dsr.db").exists()
    allowed = dsr(demo_workspace, "apply", "--auto-approve", "--allow-local-state")
    assert allowed.exit_code == 0, allowed.output


@pytest.mark.postgres
def test_export_packages_live_in_a_shared_store_and_are_written_out_for_delivery(
    demo_workspace: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_shared_store(demo_workspace, postgres_url, monkeypatch)
    file_export(demo_workspace, "export", "DSR-X-2", "erin@contoso.example")
    assert dsr(demo_workspace, "apply", "--auto-approve").exit_code == 0
    assert not (demo_workspace / "state/outbox").exists(), "the package went to the runner's disk"
    listed = json.loads(dsr(demo_workspace, "outbox", "list", "--format", "json").stdout)
    assert [(p["request"], p["location"]) for p in listed] == [("DSR-X-2", "state store")]
    out = tmp_path / "delivery" / "DSR-X-2.zip"
    out.parent.mkdir()
    got = dsr(demo_workspace, "outbox", "get", "DSR-X-2", "--out", str(out))
    assert got.exit_code == 0, got.output
    assert out.stat().st_mode & 0o777 == 0o600
    import zipfile

    with zipfile.ZipFile(out) as archive:
        assert "manifest.json" in archive.namelist()
    again = dsr(demo_workspace, "outbox", "get", "DSR-X-2", "--out", str(out))
    assert again.exit_code == 1 and "exists" in again.output  # never replaces a file
    # A second runner (no outbox folder, same store): nothing to rebuild.
    assert "No changes" in dsr(demo_workspace, "apply", "--auto-approve").output
    builds = [
        json.loads(line)
        for line in dsr(demo_workspace, "audit", "show", "--format", "json").stdout.splitlines()
        if '"build_export"' in line
    ]
    assert len(builds) == 1


# -- locks ---------------------------------------------------------------------------------


def test_apply_stops_on_sigterm_at_an_action_boundary_and_releases_the_lock(
    demo_workspace: Path,
) -> None:
    """A scheduler's stop (SIGTERM) ends the run with 130, between two actions; the lock is
    released and the next run converges."""
    systems = demo_workspace / "policies/systems.yaml"
    # A refresh that takes a while, so that the signal lands while apply is running.
    systems.write_text(
        systems.read_text().replace(
            "refresh: {command: [python, -m, demo, refresh, insights]}",
            "refresh: {command: [python, -c, 'import subprocess, sys, time; time.sleep(3); "
            'sys.exit(subprocess.call([sys.executable, "-m", "demo", "refresh", '
            '"insights"]))\']}',
        )
    )
    file_erasure(demo_workspace, "crm-only", "DSR-T-1")
    proc = dsr_process(demo_workspace, "apply", "--auto-approve")
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + 60
    while "delete crm" not in seen and time.monotonic() < deadline:
        seen += proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, seen + out + err
    assert "interrupted after" in err and "Traceback" not in err
    store = open_store(f"sqlite:///{demo_workspace}/state/dsr.db")
    try:
        assert store.lock_holder() is None
        last = store.last_run()
        assert last is not None and last.outcome == "interrupted"
    finally:
        store.close()
    finished = dsr(demo_workspace, "apply", "--auto-approve")
    assert finished.exit_code == 0, finished.output
    assert dsr(demo_workspace, "plan", "--detailed-exitcode").exit_code == 0


def test_status_names_the_lock_holder_and_force_unlock_releases_a_dead_ones_record(
    demo_workspace: Path,
) -> None:
    store = open_store(f"sqlite:///{demo_workspace}/state/dsr.db")
    try:
        with store.lock("ops@runner-7: dsr apply", timeout=0):
            status = dsr(demo_workspace, "status")
            assert "Lock: ops@runner-7: dsr apply (pid" in status.output
            data = json.loads(dsr(demo_workspace, "status", "--format", "json").stdout)
            assert data["lock"]["holder"] == "ops@runner-7: dsr apply"
            held = dsr(demo_workspace, "force-unlock", "--yes")
            assert held.exit_code == 1  # a live holder on this machine: stop it instead
            assert "still running on this machine" in held.output
        assert "Lock: free" in dsr(demo_workspace, "status").output
    finally:
        store.close()
    # A record left by a runner that died elsewhere (the lock itself died with it).
    with sqlite3.connect(demo_workspace / "state/dsr.db") as db:
        db.execute(
            "INSERT INTO state_lock (name, holder, pid, host, acquired_at, token) VALUES "
            "('state', 'ci@runner-9: dsr apply', 4242, 'runner-9', "
            "'2026-11-29T11:30:00.000000Z', 'x')"
        )
    released = dsr(demo_workspace, "force-unlock", "--yes")
    assert released.exit_code == 0
    assert "removed the record left by ci@runner-9: dsr apply (pid 4242 on host runner-9)" in (
        released.output
    )


# -- timeouts ------------------------------------------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for c in held:
            c.close()
        server.close()


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
def test_a_database_that_never_answers_fails_the_run_within_its_timeout(
    demo_workspace: Path, silent_server: int, scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    systems = demo_workspace / "policies/systems.yaml"
    systems.write_text(
        systems.read_text().replace(
            "    url: sqlite:///state/demo/shop.db\n",
            "    url: env:SHOP_URL\n    timeouts: {connect: 2, statement: 2}\n",
        )
    )
    monkeypatch.setenv("SHOP_URL", f"{scheme}://dsr@127.0.0.1:{silent_server}/shop")
    file_erasure(demo_workspace, "both", "DSR-H-1")
    started = time.monotonic()
    result = dsr(demo_workspace, "plan")
    took = time.monotonic() - started
    assert result.exit_code == 1, result.output
    assert took < 20, f"waited {took:.0f} s"
    assert "observed shop" in result.output  # progress while observing, even on failure
    assert f"no answer from {scheme}" in result.output or "timeout" in result.output
    assert "127.0.0.1" in result.output and "Traceback" not in result.output


def test_a_state_store_that_never_answers_fails_within_its_timeout(
    demo_workspace: Path, silent_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = demo_workspace / "dsr.yaml"
    settings.write_text(
        settings.read_text().replace(
            "state: {path: state/dsr.db}",
            "state: {url: env:DSR_STATE_URL}\ntimeouts: {connect: 2, statement: 2}",
        )
    )
    url = f"postgresql://dsr@127.0.0.1:{silent_server}/dsr?password=hunter2"
    monkeypatch.setenv("DSR_STATE_URL", url)
    started = time.monotonic()
    result = dsr(demo_workspace, "status")
    assert result.exit_code == 1
    assert time.monotonic() - started < 20
    assert "within the connect timeout of 2 s" in result.output
    assert "hunter2" not in result.output  # a password in the query string is scrubbed


# -- machine-readable output ----------------------------------------------------------------


def test_json_output_and_json_logs(demo_workspace: Path) -> None:
    proc = dsr_process(
        demo_workspace, "--log-format", "json", "apply", "--auto-approve", "--format", "json"
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    result = json.loads(out)
    assert result["outcome"] == "succeeded"
    assert {c["action"] for c in result["changes"]} == {"grant_role", "revoke_role", "remove_user"}
    events = [json.loads(line) for line in err.splitlines()]
    assert {"observed", "change"} <= {e["event"] for e in events}
    assert all({"at", "level", "event", "message"} <= set(e) for e in events)
    valid = json.loads(dsr(demo_workspace, "validate", "--offline", "--format", "json").stdout)
    assert valid["valid"] is True
    (demo_workspace / "policies/requests").mkdir(exist_ok=True)
    (demo_workspace / "policies/requests/DSR-BAD-1.yaml").write_text("id: DSR-BAD-1\n")
    invalid = dsr(demo_workspace, "validate", "--offline", "--format", "json")
    assert invalid.exit_code == 1
    problems = json.loads(invalid.stdout)["problems"]
    assert problems[0]["file"] == "policies/requests/DSR-BAD-1.yaml"
    assert problems[0]["line"] == 1
