"""Batched apply end to end: the statements sent to a source do not grow with the number of
requests, and an apply killed (SIGKILL, `DSR_KILL_AT`) at any point inside a batch converges
on the next run with nothing applied twice, on SQLite and PostgreSQL.

The workspace is a CRM alone (customers deleted, orders masked), so a plan of K erasures is
four batches: every request's masks, every request's deletes, every verification, every
receipt.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from reconciler.cli import cli
from reconciler.connectors.sql import create_engine
from reconciler.store import Outcome, open_store

SYSTEMS = """\
systems:
  crm:
    role: source
    url: env:DSR_TEST_DB
    tables:
      customers:
        primary_key: id
        identities: {email: email}
        on_erasure: delete
      orders:
        primary_key: id
        subject: {column: customer_id, references: customers.id}
        on_erasure:
          mask: {shipping_address: "null", email: redact}
          reason: bookkeeping obligation, 10 years
"""
IDENTITY_KEY = "test-identity-key-of-at-least-32-bytes"
CUSTOMERS = 120


def email(i: int) -> str:
    return f"subject.{i}@example.test"


def build(url: str) -> None:
    meta = sa.MetaData()
    customers = sa.Table(
        "customers",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.String(120), nullable=False, unique=True),
    )
    orders = sa.Table(
        "orders",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id", ondelete="SET NULL")),
        sa.Column("email", sa.String(120), nullable=False),
        sa.Column("shipping_address", sa.String(120)),
    )
    engine = create_engine(url)
    try:
        meta.create_all(engine)
        with engine.begin() as conn:
            conn.execute(
                customers.insert(), [{"id": i, "email": email(i)} for i in range(1, CUSTOMERS + 1)]
            )
            conn.execute(
                orders.insert(),
                [
                    {
                        "id": 10 * i + n,
                        "customer_id": i,
                        "email": email(i),
                        "shipping_address": f"{i} Road",
                    }
                    for i in range(1, CUSTOMERS + 1)
                    for n in (1, 2)
                ],
            )
    finally:
        engine.dispose()


class Workspace:
    def __init__(self, root: Path, url: str, requests: int) -> None:
        self.root, self.url = root, url
        self.env = {**os.environ, "DSR_TEST_DB": url, "DSR_IDENTITY_KEY": IDENTITY_KEY}
        (root / "policies/requests").mkdir(parents=True)
        (root / "dsr.yaml").write_text(
            "workspace: test\nidentity: {key: env:DSR_IDENTITY_KEY, key_id: t1}\n"
        )
        (root / "policies/systems.yaml").write_text(SYSTEMS)
        build(url)
        for i in range(1, requests + 1):
            done = self.dsr(
                "new",
                "erasure",
                "--email",
                "-",
                "--requested-by",
                "dpo@contoso.example",
                "--id",
                f"DSR-B-{i:03d}",
                input=email(i) + "\n",
            )
            assert done.exit_code == 0, done.output

    def dsr(self, *args: str, input: str | None = None) -> Result:
        result = CliRunner(env=self.env).invoke(cli, ["-C", str(self.root), *args], input=input)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result

    def killed_apply(self, point: str) -> int:
        """`dsr apply` in a process of its own that SIGKILLs itself at `point`."""
        done = subprocess.run(
            [sys.executable, "-m", "reconciler", "-C", str(self.root), "apply", "--auto-approve"],
            env={**self.env, "DSR_KILL_AT": point},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        return done.returncode

    def rows(self) -> dict[str, list[tuple[Any, ...]]]:
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                return {
                    t: [tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {t} ORDER BY id"))]
                    for t in ("customers", "orders")
                }
        finally:
            engine.dispose()

    def completions(self) -> Counter[str]:
        verified = self.dsr("audit", "verify")
        assert verified.exit_code == 0, verified.output
        store = open_store(f"sqlite:///{self.root}/state/dsr.db", readonly=True)
        try:
            return Counter(
                r.request or ""
                for r in store.audit_records()
                if r.action == "complete" and r.outcome is Outcome.SUCCEEDED
            )
        finally:
            store.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'crm.db'}"


@contextlib.contextmanager
def statements_to(database: str) -> Iterator[list[str]]:
    """Every statement any engine sends to the SQLite file `database` inside the block (an
    executemany counts once)."""
    seen: list[str] = []

    def count(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if conn.engine.url.database == database:
            seen.append(statement)

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", count)


def writes(statements: list[str]) -> Counter[str]:
    """DELETE and UPDATE statements, by their first two words and table."""
    return Counter(
        " ".join(s.split()[:3])
        for s in statements
        if s.lstrip().upper().startswith(("DELETE", "UPDATE"))
    )


def test_statements_sent_to_the_source_do_not_grow_with_the_requests(tmp_path: Path) -> None:
    counted = {}
    for k in (10, 100):
        database = str(tmp_path / f"crm-{k}.db")
        ws = Workspace(tmp_path / f"ws-{k}", f"sqlite:///{database}", k)
        with statements_to(database) as seen:
            done = ws.dsr("apply", "--auto-approve")
        assert done.exit_code == 0, done.output
        assert len(ws.rows()["customers"]) == CUSTOMERS - k
        assert sum(ws.completions().values()) == k
        counted[k] = (len(seen), writes(seen))
    # One DELETE of customers and one UPDATE (an executemany) of orders for all requests.
    assert (
        counted[10][1]
        == counted[100][1]
        == Counter({"DELETE FROM customers": 1, "UPDATE orders SET": 1})
    )
    assert counted[10][0] == counted[100][0]  # reads too: observe, re-observe, batches


# Each point inside a batch: the n-th pass, in the order mask, delete, verify, complete.
POINTS = [
    "run_started",
    "journal_started",  # the masks journalled, none made
    "change_done",  # the masks made, not audited
    "audited",  # the masks audited and journalled
    "journal_started:2",
    "change_done:2",  # the deletes made, not audited
    "audited:2",
    "verified:5",  # the fifth verification passed, none recorded
    "change_done:3",
    "journal_started:4",
    "change_done:4",  # the receipts made, not written
    "receipt",  # the receipts and tombstones written
    "run_ended",
]
REQUESTS = 12


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def source_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'crm.db'}"
    else:
        yield request.getfixturevalue("postgres_url")


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[Any, ...]]]:
    """The source's rows after an apply that nobody killed."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    ws = Workspace(tmp / "ws", f"sqlite:///{tmp / 'crm.db'}", REQUESTS)
    assert ws.dsr("apply", "--auto-approve").exit_code == 0
    return ws.rows()


@pytest.mark.parametrize("point", POINTS)
def test_a_batched_apply_killed_anywhere_converges_with_nothing_applied_twice(
    point: str,
    source_url: str,
    tmp_path: Path,
    uninterrupted: dict[str, list[tuple[Any, ...]]],
) -> None:
    ws = Workspace(tmp_path / "ws", source_url, REQUESTS)
    assert ws.killed_apply(point) == -signal.SIGKILL, f"the run did not reach {point}"
    done = ws.dsr("apply", "--auto-approve")
    assert done.exit_code == 0, done.output
    assert ws.rows() == uninterrupted
    # One receipt per request, whatever the killed run had written; the chain verifies.
    assert ws.completions() == {f"DSR-B-{i:03d}": 1 for i in range(1, REQUESTS + 1)}
    again = ws.dsr("plan", "--detailed-exitcode")
    assert again.exit_code == 0, again.output  # nothing left to do
