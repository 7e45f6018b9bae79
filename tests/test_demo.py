"""Tests for the demo generator and the demo platform's refresh jobs, on real SQLite files.

Also a smoke test of the `db_url` fixture on every backend. These tests must not touch the
repository's own state/ folder: every build happens in a temporary workspace.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from conftest import make_engine
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select

from reconciler.demo import build_demo, refresh

DATABASES = ("crm", "shop", "insights", "apps")


def _db(workspace: Path, name: str) -> Path:
    return workspace / "state" / "demo" / f"{name}.db"


@contextmanager
def _sqlite(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain connection with foreign keys enforced; commits on success, always closes."""
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("PRAGMA foreign_keys=ON")
        yield conn


def _dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table's rows, in primary key order, plus the schema."""
    with _sqlite(path) as conn:
        tables = [
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        ]
        dump = {
            name: conn.execute(f'SELECT * FROM "{name}" ORDER BY 1').fetchall() for name in tables
        }
        dump["sqlite_master"] = conn.execute("SELECT * FROM sqlite_master ORDER BY name").fetchall()
    return dump


def _query(path: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with _sqlite(path) as conn:
        return conn.execute(sql, params).fetchall()


def _without_ids(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return sorted(row[1:] for row in rows)


def _run_demo(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler.demo", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def test_same_seed_gives_identical_databases(tmp_path: Path) -> None:
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert build_demo(first) == build_demo(second)
    build_demo(other, seed=7)
    for name in DATABASES:
        assert _dump(_db(first, name)) == _dump(_db(second, name)), name
    assert _dump(_db(first, "crm")) != _dump(_db(other, "crm"))


def test_row_counts_are_in_expected_ranges(tmp_path: Path) -> None:
    counts = build_demo(tmp_path)
    crm, shop, insights = counts["crm"], counts["shop"], counts["insights"]
    assert crm["customers"] == 3000
    assert 6000 <= crm["orders"] <= 9000  # 0-5 orders each
    assert crm["orders"] <= crm["order_lines"] <= 4 * crm["orders"]
    assert shop["customers"] == 2000
    assert 2000 <= shop["carts"] <= 4000
    assert insights["profiles"] == 3000 + 2000 - 600
    assert insights["consent"] == 3000 + 2000  # one marketing per CRM, one newsletter per shop
    assert insights["system_logs"] > 0 and insights["audit_log"] > 0 and insights["segments"] > 0
    assert counts["apps"] == {"consent_view": insights["consent"]}


def test_platform_users_are_generated_with_the_drift_access_yaml_corrects(
    demo_workspace: Path,
) -> None:
    roles = _query(_db(demo_workspace, "insights"), "SELECT user_email, role FROM user_roles")
    assert sorted(roles) == [
        ("ana@contoso.example", "admin"),
        ("ben@contoso.example", "contributor"),
        ("cara@contoso.example", "contributor"),
        ("cara@contoso.example", "viewer"),
        ("dave@contoso.example", "contributor"),
        ("erin@contoso.example", "admin"),
    ]
    creators = _query(_db(demo_workspace, "insights"), "SELECT DISTINCT created_by FROM segments")
    assert ("dave@contoso.example",) in creators


def test_customers_shared_by_crm_and_shop(demo_workspace: Path) -> None:
    crm = {row[0] for row in _query(_db(demo_workspace, "crm"), "SELECT email FROM customers")}
    shop = {row[0] for row in _query(_db(demo_workspace, "shop"), "SELECT email FROM customers")}
    assert 500 <= len(crm & shop) <= 700
    both = _query(
        _db(demo_workspace, "insights"), "SELECT count(*) FROM profiles WHERE sources = 'crm,shop'"
    )
    assert both == [(len(crm & shop),)]
    domains = {email.rsplit("@", 1)[1] for email in crm | shop}
    assert domains <= {"example.com", "example.org", "example.net"}


def test_foreign_keys_are_declared_and_hold(demo_workspace: Path) -> None:
    for name in DATABASES:
        assert _query(_db(demo_workspace, name), "PRAGMA foreign_key_check") == [], name
    crm, shop = _db(demo_workspace, "crm"), _db(demo_workspace, "shop")
    assert _references(crm, "orders") == [("customer_id", "customers", "id")]
    assert _references(crm, "order_lines") == [("order_id", "orders", "id")]
    assert _references(shop, "carts") == [("customer_id", "customers", "id")]


def _references(path: Path, table: str) -> list[tuple[Any, ...]]:
    sql = 'SELECT "from", "table", "to" FROM pragma_foreign_key_list(?)'
    return _query(path, sql, table)


def test_initial_build_equals_a_refresh(demo_workspace: Path) -> None:
    before = {name: _dump(_db(demo_workspace, name)) for name in ("insights", "apps")}
    refresh(demo_workspace, "insights")
    refresh(demo_workspace, "apps")
    assert {name: _dump(_db(demo_workspace, name)) for name in ("insights", "apps")} == before


def test_refresh_after_erasure_at_the_sources_removes_only_that_subject(
    demo_workspace: Path,
) -> None:
    crm, shop, insights = (_db(demo_workspace, name) for name in ("crm", "shop", "insights"))
    # Someone in both sources, with orders (so order lines go first: the keys are enforced).
    with _sqlite(crm) as conn:
        conn.execute("ATTACH DATABASE ? AS shop", (str(shop),))
        [(customer_id, email)] = conn.execute(
            "SELECT c.id, c.email FROM customers c JOIN shop.customers s ON s.email = c.email"
            " WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id)"
            " ORDER BY c.id LIMIT 1"
        ).fetchall()
    profiles_before = _query(insights, "SELECT * FROM profiles")
    consent_before = _query(insights, "SELECT * FROM consent")
    untouched_before = {
        t: _query(insights, f"SELECT * FROM {t}")
        for t in ("system_logs", "audit_log", "user_roles", "segments")
    }

    with _sqlite(crm) as conn:
        orders = "SELECT id FROM orders WHERE customer_id = ?"
        conn.execute(f"DELETE FROM order_lines WHERE order_id IN ({orders})", (customer_id,))
        conn.execute("DELETE FROM orders WHERE customer_id = ?", (customer_id,))
        conn.execute("DELETE FROM customers WHERE id = ?", (customer_id,))
    refresh(demo_workspace, "insights")
    # Still in the shop: the profile stays, from the shop alone, with the shop's consent only.
    assert [
        row[5] for row in _query(insights, "SELECT * FROM profiles WHERE email = ?", email)
    ] == ["shop"]
    assert _query(insights, "SELECT purpose FROM consent WHERE email = ?", email) == [
        ("newsletter",)
    ]

    with _sqlite(shop) as conn:
        [(shop_id,)] = conn.execute("SELECT id FROM customers WHERE email = ?", (email,)).fetchall()
        conn.execute("DELETE FROM carts WHERE customer_id = ?", (shop_id,))
        conn.execute("DELETE FROM customers WHERE id = ?", (shop_id,))
    refresh(demo_workspace, "insights")

    profiles_after = _query(insights, "SELECT * FROM profiles")
    consent_after = _query(insights, "SELECT * FROM consent")
    assert _without_ids(profiles_after) == _without_ids(
        [r for r in profiles_before if r[1] != email]
    )
    assert _without_ids(consent_after) == _without_ids([r for r in consent_before if r[1] != email])
    assert len(consent_before) - len(consent_after) == 2
    for table, rows in untouched_before.items():
        assert _query(insights, f"SELECT * FROM {table}") == rows, table

    apps = _db(demo_workspace, "apps")
    assert _query(apps, "SELECT count(*) FROM consent_view WHERE email = ?", email) == [(2,)]
    refresh(demo_workspace, "apps")
    assert _query(apps, "SELECT * FROM consent_view") == _query(
        insights, "SELECT id, email, purpose, granted FROM consent"
    )


def test_refresh_fails_with_a_message_when_a_source_is_missing(demo_workspace: Path) -> None:
    _db(demo_workspace, "shop").unlink()
    result = _run_demo("refresh", "insights", cwd=demo_workspace)
    assert result.returncode != 0
    assert "shop.db not found" in result.stderr
    assert not _db(demo_workspace, "shop").exists()  # never created by a failed refresh
    assert _query(_db(demo_workspace, "insights"), "SELECT count(*) FROM profiles") == [(4400,)]


def test_refresh_command_runs_in_the_workspace(demo_workspace: Path) -> None:
    with _sqlite(_db(demo_workspace, "insights")) as conn:
        conn.execute("DELETE FROM consent")
    result = _run_demo("refresh", "insights", cwd=demo_workspace)
    assert result.returncode == 0, result.stderr
    assert _query(_db(demo_workspace, "insights"), "SELECT count(*) FROM consent") == [(5000,)]


def test_reset_removes_old_state_and_only_that(demo_workspace: Path) -> None:
    state = demo_workspace / "state"
    for name in ("dsr.db", "dsr.db-wal", "dsr.db-shm", ".gitkeep", "notes.txt"):
        (state / name).write_text("old")
    (state / "outbox").mkdir()
    (state / "outbox" / "DSR-1.zip").write_text("old")
    (state / "demo" / "stale.db").write_text("old")
    with _sqlite(_db(demo_workspace, "crm")) as conn:
        conn.execute("UPDATE customers SET city = 'changed'")

    result = _run_demo("reset", "--workspace", str(demo_workspace), cwd=demo_workspace.parent)

    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in state.iterdir()) == [".gitkeep", "demo", "notes.txt"]
    assert sorted(p.name for p in (state / "demo").iterdir()) == [
        f"{n}.db" for n in sorted(DATABASES)
    ]
    assert _query(
        _db(demo_workspace, "crm"), "SELECT count(*) FROM customers WHERE city = 'changed'"
    ) == [(0,)]
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [f"state/demo/{n}.db" for n in DATABASES]
    assert "customers=3000" in lines[0]


def test_reset_refuses_a_folder_without_dsr_yaml(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "dsr.db").write_text("keep")
    result = _run_demo("reset", cwd=tmp_path)
    assert result.returncode != 0
    assert "no dsr.yaml" in result.stderr
    assert (tmp_path / "state" / "dsr.db").read_text() == "keep"


def test_db_url_fixture_gives_a_working_empty_database(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        metadata = MetaData()
        things = Table(
            "things", metadata, Column("id", Integer, primary_key=True), Column("name", String(50))
        )
        with engine.begin() as conn:
            assert conn.dialect.has_table(conn, "things") is False
            metadata.create_all(conn)
            conn.execute(insert(things), [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}])
        with engine.connect() as conn:
            assert conn.execute(select(things.c.name).order_by(things.c.id)).scalars().all() == [
                "one",
                "two",
            ]
    finally:
        engine.dispose()
