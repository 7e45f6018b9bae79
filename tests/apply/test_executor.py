"""The executor on a real SQLite platform and a real state store: failure isolation,
skipped dependents, the journal and the audit record of each action, interrupted runs."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from reconciler.apply import executor
from reconciler.apply.context import Context
from reconciler.apply.recovery import recover_interrupted
from reconciler.connectors.sql import SqlConnector
from reconciler.desired.model import Access, Desired, PermissionsMap, Settings, System, SystemRole
from reconciler.observe.model import Observed
from reconciler.plan.actions import Action, Reason
from reconciler.plan.model import Change, Params, Plan
from reconciler.privacy.identity import IdentityKey
from reconciler.store import open_store

KEY = IdentityKey("t", b"test-key", development=True)
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture
def platform(tmp_path: Path) -> Path:
    db = tmp_path / "insights.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(
            """
            CREATE TABLE user_roles (id INTEGER PRIMARY KEY, user_email TEXT NOT NULL,
                                     role TEXT NOT NULL, UNIQUE (user_email, role));
            INSERT INTO user_roles (user_email, role) VALUES
                ('ana@x.example', 'admin'), ('cara@x.example', 'contributor'),
                ('dave@x.example', 'viewer');
            -- a platform rule dsr cannot know about: ben may not be given roles
            CREATE TRIGGER no_ben BEFORE INSERT ON user_roles WHEN NEW.user_email = 'ben@x.example'
            BEGIN SELECT RAISE(ABORT, 'ben is suspended'); END;
            """
        )
    return db


def desired_for(db: Path) -> Desired:
    system = System(
        "insights",
        SystemRole.PLATFORM,
        f"sqlite:///{db}",
        ingests=("crm",),
        permissions=PermissionsMap("user_roles", "user_email", "role"),
    )
    return Desired(
        Settings("t"), {"insights": system}, Access(("admin",), {}), "sha256:" + "0" * 64
    )


def change(cid: str, action: Action, depends_on: tuple[str, ...] = (), **params: str) -> Change:
    return Change(
        cid,
        action,
        "insights",
        cid,
        Reason.IN_ACCESS,
        "test",
        Params(**params),
        rows=1,
        depends_on=depends_on,
    )


def test_failure_skips_dependents_but_not_independent_changes(
    platform: Path, tmp_path: Path
) -> None:
    plan = Plan(
        "t",
        NOW.isoformat(),
        "sha256:" + "0" * 64,
        {},
        changes=(
            change("a", Action.GRANT_ROLE, user="ben@x.example", role="viewer"),
            change("b", Action.REVOKE_ROLE, ("a",), user="cara@x.example", role="contributor"),
            change("c", Action.REMOVE_USER, user="dave@x.example"),
        ),
    )
    store = open_store(f"sqlite:///{tmp_path}/dsr.db")
    conn = SqlConnector("insights", f"sqlite:///{platform}")
    try:
        desired = desired_for(platform)
        ctx = Context(
            desired=desired,
            observed=Observed({}),
            connectors={"insights": conn},
            store=store,
            key=KEY,
            workspace=tmp_path,
            reobserve=lambda: Observed({}),
            clock=lambda: NOW,
        )
        result = executor.apply(plan, ctx)
        statuses = [(o.change.id, o.status) for o in result.results]
        assert statuses == [("a", "failed"), ("b", "skipped"), ("c", "succeeded")]
        assert "ben is suspended" in (result.results[0].message or "")
        assert not result.ok
        with sqlite3.connect(platform) as db:
            rows = set(db.execute("SELECT user_email, role FROM user_roles"))
        assert rows == {("ana@x.example", "admin"), ("cara@x.example", "contributor")}

        journal = [(e.change_id, e.status) for e in store.journal_entries(result.run_id)]
        assert journal == [
            ("a", "started"),
            ("a", "failed"),
            ("b", "skipped"),
            ("c", "started"),
            ("c", "succeeded"),
        ]
        audit = store.audit_records()
        assert [(r.action, r.outcome) for r in audit] == [
            ("grant_role", "failed"),
            ("remove_user", "succeeded"),
        ]
        assert all("@" not in r.target for r in audit)
        assert store.last_run() is not None and store.last_run().outcome == "failed"  # type: ignore[union-attr]
    finally:
        conn.close()
        store.close()


def test_interrupted_run_is_closed_and_audited(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/dsr.db")
    try:
        run = store.begin_run("p1", now=NOW)
        store.journal(run, "revoke_role:insights:abc:viewer", "started", now=NOW)
        # ... the process was killed here ...
        closed = recover_interrupted(store, clock=lambda: NOW)
        assert closed == [run]
        assert store.unfinished_runs() == []
        [record] = store.audit_records()
        assert (record.action, record.system, record.outcome) == (
            "revoke_role",
            "insights",
            "interrupted",
        )
        assert recover_interrupted(store, clock=lambda: NOW) == []  # once only
        assert store.verify_audit() == []
    finally:
        store.close()


def test_recovery_does_not_duplicate_an_audited_change(tmp_path: Path) -> None:
    from reconciler.store import AuditEvent

    store = open_store(f"sqlite:///{tmp_path}/dsr.db")
    try:
        run = store.begin_run("p1", now=NOW)
        done = "delete_rows:crm:DSR-1:customers"
        store.journal(run, done, "started", now=NOW)
        store.append_audit(
            AuditEvent(
                NOW,
                run,
                "delete_rows",
                "crm",
                "customers",
                "succeeded",
                "DSR-1",
                {"change": done, "rows": 1},
            )
        )
        lost = "mask_rows:crm:DSR-1:orders"
        store.journal(run, lost, "started", now=NOW)
        # ... killed: the first change was audited, the second not ...
        recover_interrupted(store, clock=lambda: NOW)
        records = store.audit_records("DSR-1")
        assert [(r.action, r.outcome) for r in records] == [
            ("delete_rows", "succeeded"),
            ("mask_rows", "interrupted"),
        ]
        assert records[1].details["change"] == lost
    finally:
        store.close()
