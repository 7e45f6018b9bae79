"""Tests for the demo generator, the demo platform's refresh jobs and the commands that play
the people around dsr (pick-subject, owner-delete, reinsert), on real SQLite files.

Also a smoke test of the `db_url` fixture on every backend. These tests must not touch the
repository's own state/ folder: every build happens in a temporary workspace.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT, make_engine
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select

from demo.contoso import _connect, build_demo, refresh
from reconciler.errors import DsrError

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


def _run_demo(*args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "demo", *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


def _pick(workspace: Path, where: str) -> str:
    result = _run_demo("pick-subject", "--in", where, cwd=workspace)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    [email] = result.stdout.splitlines()
    assert result.stdout == f"{email}\n"
    return email


def _assert_not_shown(email: str, result: subprocess.CompletedProcess[str]) -> None:
    for stream in (result.stdout, result.stderr):
        assert email.lower() not in stream.lower()
        assert email.split("@")[0].lower() not in stream.lower()


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
    assert _references(crm, "orders") == [("customer_id", "customers", "id", "SET NULL")]
    assert _references(crm, "order_lines") == [("order_id", "orders", "id", "NO ACTION")]
    assert _references(shop, "carts") == [("customer_id", "customers", "id", "NO ACTION")]
    nullable = {row[1]: not row[3] for row in _query(crm, "PRAGMA table_info(orders)")}
    assert nullable["customer_id"] is True


def _references(path: Path, table: str) -> list[tuple[Any, ...]]:
    sql = 'SELECT "from", "table", "to", on_delete FROM pragma_foreign_key_list(?)'
    return _query(path, sql, table)


def test_a_deleted_crm_customer_leaves_their_masked_orders_detached(demo_workspace: Path) -> None:
    """The data map masks and retains orders but deletes the customer: that must be possible."""
    crm = _db(demo_workspace, "crm")
    [(customer_id,)] = _query(
        crm,
        "SELECT customer_id FROM orders GROUP BY customer_id HAVING count(*) >= 2"
        " ORDER BY customer_id LIMIT 1",
    )
    orders = [
        row[0] for row in _query(crm, "SELECT id FROM orders WHERE customer_id = ?", customer_id)
    ]
    lines_before = _query(crm, "SELECT * FROM order_lines")
    total_orders = _query(crm, "SELECT count(*) FROM orders")

    with _sqlite(crm) as conn:
        conn.execute(
            "UPDATE orders SET shipping_address = NULL, phone = NULL, email = 'redacted'"
            " WHERE customer_id = ?",
            (customer_id,),
        )
        conn.execute("DELETE FROM customers WHERE id = ?", (customer_id,))

    marks = ",".join("?" * len(orders))
    assert _query(crm, f"SELECT customer_id FROM orders WHERE id IN ({marks})", *orders) == [
        (None,)
    ] * len(orders)
    assert _query(crm, "SELECT count(*) FROM orders") == total_orders
    assert _query(crm, "SELECT * FROM order_lines") == lines_before
    assert _query(crm, "PRAGMA foreign_key_check") == []
    refresh(demo_workspace, "insights")  # orders without a customer do not trip the platform


def test_crm_foreign_keys_are_still_enforced(demo_workspace: Path) -> None:
    crm = _db(demo_workspace, "crm")
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"), _sqlite(crm) as conn:
        conn.execute("INSERT INTO orders (customer_id, total_cents) VALUES (999999, 1)")
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"), _sqlite(crm) as conn:
        conn.execute("DELETE FROM orders WHERE id = 1")  # it has order lines
    # The demo's own connections enforce them too.
    with pytest.raises(DsrError, match="FOREIGN KEY"), _connect(crm) as conn:
        conn.exec_driver_sql("DELETE FROM orders WHERE id = 1")
    with (
        pytest.raises(DsrError, match="FOREIGN KEY"),
        _connect(_db(demo_workspace, "shop")) as conn,
    ):
        conn.exec_driver_sql(
            "DELETE FROM customers WHERE id = (SELECT customer_id FROM carts LIMIT 1)"
        )


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
    assert sorted(p.name for p in (state / "demo").iterdir()) == sorted(
        [*(f"{n}.db" for n in DATABASES), "seed"]
    )
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


def test_reset_removes_demo_requests_and_only_those(demo_workspace: Path) -> None:
    requests = demo_workspace / "policies" / "requests"
    requests.mkdir()
    kept = ("DSR-20261129-7KQ2.yaml", "DSR-DEMO.yaml", "DSR-DEMO-1.yml", "X-DSR-DEMO-1.yaml")
    for name in ("DSR-DEMO-20261129-A.yaml", "DSR-DEMO-B.yaml", *kept):
        (requests / name).write_text("id: x\n")
    (requests / "DSR-DEMO-dir.yaml").mkdir()  # not a request file: left alone
    (demo_workspace / "policies" / "DSR-DEMO-1.yaml").write_text("elsewhere\n")

    result = _run_demo("reset", cwd=demo_workspace)

    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in requests.iterdir()) == sorted([*kept, "DSR-DEMO-dir.yaml"])
    assert (demo_workspace / "policies" / "DSR-DEMO-1.yaml").exists()
    lines = result.stdout.splitlines()
    assert lines[0] == "removed 2 demo requests (policies/requests/DSR-DEMO-*.yaml)"
    assert [line.split()[0] for line in lines[1:]] == [f"state/demo/{n}.db" for n in DATABASES]

    again = _run_demo("reset", cwd=demo_workspace)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0].startswith("state/demo/crm.db")


# -- pick-subject ----------------------------------------------------------------------------


def test_pick_subject_crm_only_meets_its_conditions(demo_workspace: Path) -> None:
    email = _pick(demo_workspace, "crm-only")
    crm, shop, insights = (_db(demo_workspace, n) for n in ("crm", "shop", "insights"))
    [(customer_id,)] = _query(crm, "SELECT id FROM customers WHERE email = ?", email)
    assert _query(shop, "SELECT count(*) FROM customers WHERE lower(email) = ?", email.lower()) == [
        (0,)
    ]
    with_lines = (
        "SELECT count(*) FROM orders o WHERE o.customer_id = ?"
        " AND EXISTS (SELECT 1 FROM order_lines l WHERE l.order_id = o.id)"
    )
    [(orders,)] = _query(crm, with_lines, customer_id)
    assert orders >= 2
    [(logged,)] = _query(insights, "SELECT count(*) FROM system_logs WHERE actor = ?", email)
    assert logged >= 1  # there is such a customer for the default seed
    # The lowest id that fits.
    with _sqlite(crm) as conn:
        conn.execute("ATTACH DATABASE ? AS shop", (str(shop),))
        conn.execute("ATTACH DATABASE ? AS insights", (str(insights),))
        [(lowest,)] = conn.execute(
            "SELECT min(c.id) FROM customers c"
            " WHERE NOT EXISTS"
            " (SELECT 1 FROM shop.customers s WHERE lower(s.email) = lower(c.email))"
            " AND EXISTS (SELECT 1 FROM insights.system_logs g WHERE g.actor = c.email)"
            f" AND ({with_lines.replace('?', 'c.id')}) >= 2"
        ).fetchall()
    assert customer_id == lowest


def test_pick_subject_both_meets_its_conditions(demo_workspace: Path) -> None:
    email = _pick(demo_workspace, "both")
    crm, shop, insights = (_db(demo_workspace, n) for n in ("crm", "shop", "insights"))
    [(customer_id,)] = _query(crm, "SELECT id FROM customers WHERE email = ?", email)
    assert _query(shop, "SELECT count(*) FROM customers WHERE email = ?", email) == [(1,)]
    [(orders,)] = _query(crm, "SELECT count(*) FROM orders WHERE customer_id = ?", customer_id)
    assert orders >= 1
    [(consents,)] = _query(insights, "SELECT count(*) FROM consent WHERE email = ?", email)
    assert consents >= 1
    with _sqlite(crm) as conn:
        conn.execute("ATTACH DATABASE ? AS shop", (str(shop),))
        [(lowest,)] = conn.execute(
            "SELECT min(c.id) FROM customers c JOIN shop.customers s ON s.email = c.email"
            " WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id)"
        ).fetchall()
    assert customer_id == lowest


@pytest.mark.parametrize("where", ["crm-only", "both"])
def test_pick_subject_is_deterministic_for_the_seed(
    demo_workspace: Path, tmp_path: Path, where: str
) -> None:
    email = _pick(demo_workspace, where)
    assert _pick(demo_workspace, where) == email
    other = tmp_path / "other"
    (other / "policies").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "dsr.yaml", other / "dsr.yaml")
    build_demo(other)
    assert _pick(other, where) == email
    build_demo(other, seed=7)
    assert _pick(other, where) != email


def test_pick_subject_gives_the_same_customer_after_they_were_erased(
    demo_workspace: Path,
) -> None:
    both, crm_only = _pick(demo_workspace, "both"), _pick(demo_workspace, "crm-only")
    with _sqlite(_db(demo_workspace, "crm")) as conn:
        conn.execute("DELETE FROM customers WHERE email IN (?, ?)", (both, crm_only))
    with _sqlite(_db(demo_workspace, "shop")) as conn:
        conn.execute("DELETE FROM carts")
        conn.execute("DELETE FROM customers WHERE email = ?", (both,))
    refresh(demo_workspace, "insights")
    assert (_pick(demo_workspace, "both"), _pick(demo_workspace, "crm-only")) == (both, crm_only)
    assert both != crm_only


def test_pick_subject_needs_a_built_demo(tmp_path: Path) -> None:
    shutil.copy(REPO_ROOT / "dsr.yaml", tmp_path / "dsr.yaml")
    result = _run_demo("pick-subject", "--in", "both", cwd=tmp_path)
    assert result.returncode == 1
    assert "run `python -m demo reset` first" in result.stderr
    assert result.stdout == ""


# -- owner-delete and reinsert ---------------------------------------------------------------


def test_owner_delete_removes_the_shop_customer_and_their_carts(demo_workspace: Path) -> None:
    shop = _db(demo_workspace, "shop")
    email = _pick(demo_workspace, "both")
    [(shop_id,)] = _query(shop, "SELECT id FROM customers WHERE email = ?", email)
    [(carts,)] = _query(shop, "SELECT count(*) FROM carts WHERE customer_id = ?", shop_id)
    others = _query(shop, "SELECT * FROM carts WHERE customer_id != ?", shop_id)
    crm_before = _dump(_db(demo_workspace, "crm"))

    # As dsr normalises it: surrounding space and case do not matter.
    result = _run_demo("owner-delete", "shop", cwd=demo_workspace, stdin=f"  {email.upper()}\n")

    assert result.returncode == 0, result.stderr
    noun = "cart" if carts == 1 else "carts"
    assert result.stdout == f"shop: deleted 1 customer, {carts} {noun}\n"
    assert result.stderr == ""
    _assert_not_shown(email, result)
    assert _query(shop, "SELECT count(*) FROM customers WHERE email = ?", email) == [(0,)]
    assert _query(shop, "SELECT count(*) FROM customers") == [(1999,)]
    assert _query(shop, "SELECT * FROM carts") == others
    assert _query(shop, "PRAGMA foreign_key_check") == []
    assert _dump(_db(demo_workspace, "crm")) == crm_before  # a source of its own: untouched

    again = _run_demo("owner-delete", "shop", cwd=demo_workspace, stdin=email)
    assert again.returncode == 1
    assert "no customer has that e-mail address" in again.stderr
    _assert_not_shown(email, again)


@pytest.mark.parametrize("stdin", ["", "\n", "not-an-address\n", "a@example.com b@example.com\n"])
def test_owner_delete_and_reinsert_need_one_address_on_stdin(
    demo_workspace: Path, stdin: str
) -> None:
    before = {name: _dump(_db(demo_workspace, name)) for name in ("crm", "shop")}
    for args in (("owner-delete", "shop"), ("reinsert", "crm")):
        result = _run_demo(*args, cwd=demo_workspace, stdin=stdin)
        assert result.returncode == 1, args
        assert "expected one e-mail address on stdin" in result.stderr
        assert result.stdout == ""
    assert {name: _dump(_db(demo_workspace, name)) for name in ("crm", "shop")} == before


def test_owner_delete_and_reinsert_take_only_their_own_system(demo_workspace: Path) -> None:
    email = _pick(demo_workspace, "both")
    for args in (("owner-delete", "crm"), ("reinsert", "shop")):
        result = _run_demo(*args, cwd=demo_workspace, stdin=email)
        assert result.returncode == 2, args  # a usage error
        _assert_not_shown(email, result)


def test_reinsert_brings_an_erased_customer_back_into_the_crm(demo_workspace: Path) -> None:
    crm, insights = _db(demo_workspace, "crm"), _db(demo_workspace, "insights")
    email = _pick(demo_workspace, "crm-only")
    with _sqlite(crm) as conn:  # dsr's erasure, roughly: the customer goes, orders stay
        conn.execute("DELETE FROM customers WHERE email = ?", (email,))
    refresh(demo_workspace, "insights")
    assert _query(insights, "SELECT count(*) FROM profiles WHERE email = ?", email) == [(0,)]

    result = _run_demo("reinsert", "crm", cwd=demo_workspace, stdin=f"{email}\n")

    assert result.returncode == 0, result.stderr
    assert result.stdout == "crm: re-inserted 1 customer\n"
    assert result.stderr == ""
    _assert_not_shown(email, result)
    [(new_id,)] = _query(crm, "SELECT id FROM customers WHERE email = ?", email)
    assert new_id > 3000
    assert _query(crm, "SELECT count(*) FROM customers") == [(3000,)]
    assert _query(crm, "PRAGMA foreign_key_check") == []
    refresh(demo_workspace, "insights")
    assert _query(insights, "SELECT sources FROM profiles WHERE email = ?", email) == [("crm",)]

    again = _run_demo("reinsert", "crm", cwd=demo_workspace, stdin=email.upper())
    assert again.returncode == 1
    assert "already there" in again.stderr
    _assert_not_shown(email, again)
    assert _query(crm, "SELECT count(*) FROM customers") == [(3000,)]


def test_picked_subjects_pipe_through_without_reaching_a_terminal(demo_workspace: Path) -> None:
    """`pick-subject | owner-delete`, as `make demo` runs it: the address stays in the pipe."""
    command = (
        f"{sys.executable} -m demo pick-subject --in both"
        f" | {sys.executable} -m demo owner-delete shop"
    )
    result = subprocess.run(
        ["sh", "-c", command], cwd=demo_workspace, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("shop: deleted 1 customer, ")
    _assert_not_shown(_pick(demo_workspace, "both"), result)
