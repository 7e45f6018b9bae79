"""Observing with identity matching pushed down and streamed, on real databases.

Every golden case (cases/*.yaml) is written into a fresh database and observed both ways:
the matches are the same. With pushdown, the rows that leave the server are the matches;
the number of statements does not grow with the number of requests; requests hashed with a
previous key still match; `match:` decides the way, table by table.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from reconciler.connectors.pushdown import IdentityFilter, SqlHashing
from reconciler.connectors.sql import SqlConnector
from reconciler.desired.model import MatchMode, System, SystemRole, Table
from reconciler.errors import ConnectorError
from reconciler.observe import collect
from reconciler.observe.method import Method, how_matched
from reconciler.observe.model import Match
from reconciler.observe.subjects import Subject
from reconciler.privacy.identity import IdentityKey, hash_identity

from . import golden

CASES = golden.case_paths()


class CountingConnector(SqlConnector):
    """The real SQL connector, counting the identity rows each read hands over."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rows_read = 0

    def _count(self, batches: Iterator[list[tuple[Any, ...]]]) -> Iterator[list[tuple[Any, ...]]]:
        for batch in batches:
            self.rows_read += len(batch)
            yield batch

    def scan(self, table: str, columns: Sequence[str], *, batch: int = 5000) -> Any:
        return self._count(super().scan(table, columns, batch=batch))

    def scan_matching(
        self,
        table: str,
        columns: Sequence[str],
        filters: Sequence[IdentityFilter],
        *,
        batch: int = 5000,
    ) -> Any:
        return self._count(super().scan_matching(table, columns, filters, batch=batch))


def _write(url: str, case: dict[str, Any]) -> None:
    """The case's tables as real tables: integer columns where every value is an integer,
    text elsewhere (an integer among text values is written as text)."""
    tables = golden.tables_from(case["tables"])
    rows: dict[str, list[dict[str, Any]]] = {t: list(r) for t, r in case.get("rows", {}).items()}
    meta = sa.MetaData()
    for name in sorted({*tables, *rows}):
        spec = tables.get(name)
        names: dict[str, None] = {}
        if spec is not None:
            names |= dict.fromkeys([spec.primary_key or "id", *spec.identities.values()])
            if spec.subject:
                names[spec.subject.column] = None
            names |= dict.fromkeys(spec.mask)
        for row in rows.get(name, []):
            names |= dict.fromkeys(row)
        columns = []
        for c in names:
            values = [r.get(c) for r in rows.get(name, []) if r.get(c) is not None]
            numeric = bool(values) and all(type(v) is int for v in values)
            columns.append(sa.Column(c, sa.BigInteger if numeric else sa.String(200)))
        table = sa.Table(name, meta, *columns)
        rows[name] = [
            {
                c.name: (
                    r.get(c.name) if isinstance(c.type, sa.BigInteger) else _text(r.get(c.name))
                )
                for c in table.columns
            }
            for r in rows.get(name, [])
        ]
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        meta.create_all(conn)
        for name, table in meta.tables.items():
            if rows[name]:
                conn.execute(table.insert(), rows[name])
    engine.dispose()


def _text(value: Any) -> Any:
    return None if value is None else str(value)


def _observe(
    url: str, case: dict[str, Any], mode: MatchMode, key: IdentityKey = golden.KEY
) -> tuple[Any, dict[str, str], int]:
    """The case observed on `url` with `match: mode`: its matches (or the error), how each
    identity table was matched, and the identity rows read."""
    tables = golden.tables_from(case["tables"])
    system = System("s", SystemRole.SOURCE, url, tables=tables, match=mode)
    conn = CountingConnector("s", url)
    try:
        schema = conn.reflect([None])
        fks = tuple(golden.foreign_keys_from(case.get("foreign_keys", [])))
        schema = dataclasses.replace(schema, foreign_keys=fks)
        subjects = golden.subjects_from(case["subjects"])
        hashing = collect._Hashing(system, conn)
        try:
            found: Any = golden.as_expected(
                collect._match_tables("s", tables, conn, subjects, key, schema, hashing)
            )
        except ConnectorError as exc:
            found = f"error: {exc.detail}"
        methods = {t: str(how) for t, how in hashing.methods.items()}
        return found, methods, conn.rows_read
    finally:
        conn.close()


@pytest.fixture(
    params=[
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.getfixturevalue(f"{request.param}_url")


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_pushdown_and_streaming_observe_the_same(server: str, path: Path) -> None:
    case = golden.load(path)
    _write(server, case)
    pushed, methods, _ = _observe(server, case, MatchMode.PUSHDOWN)
    streamed, streamed_methods, _ = _observe(server, case, MatchMode.STREAM)
    assert pushed == streamed
    identity_tables = {
        t for t, spec in golden.tables_from(case["tables"]).items() if spec.identities
    }
    assert set(methods) == identity_tables
    assert set(methods.values()) == {"pushdown"}
    assert set(streamed_methods.values()) == {"stream (match: stream)"}
    if "xfail" not in case and isinstance(pushed, dict):
        assert pushed == golden.expected(case)


def _customers(url: str, n: int, *, foreign_key: bool = False) -> None:
    """n customers and 2n orders, two per customer; `foreign_key`: orders.customer_id is a
    database foreign key to customers.id."""
    references = " REFERENCES customers (id)" if foreign_key else ""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE TABLE customers (id INT PRIMARY KEY, email VARCHAR(100), phone VARCHAR(40))"
            )
        )
        conn.execute(
            sa.text(f"CREATE TABLE orders (id INT PRIMARY KEY, customer_id INT{references})")
        )
        conn.execute(
            sa.text("INSERT INTO customers VALUES (:id, :email, :phone)"),
            [
                {"id": i, "email": f" Person{i}@Example.COM", "phone": f"+44 (0)20 {i:07d}"}
                for i in range(n)
            ],
        )
        conn.execute(
            sa.text("INSERT INTO orders VALUES (:id, :c)"),
            [{"id": i, "c": i % n} for i in range(n * 2)],
        )
    engine.dispose()


LINKED = {
    "customers": {
        "primary_key": "id",
        "identities": {"email": "email", "phone": "phone"},
        "on_erasure": "delete",
    },
    "orders": {
        "primary_key": "id",
        "subject": {"column": "customer_id", "references": "customers.id"},
        "on_erasure": "delete",
    },
}


def _subjects(ids: range, key: IdentityKey = golden.KEY) -> list[Subject]:
    return [
        Subject(f"R{i}", (("email", hash_identity("email", f"person{i}@example.com", key)),), None)
        for i in ids
    ]


def _run(
    url: str,
    subjects: list[Subject],
    mode: MatchMode,
    key: IdentityKey = golden.KEY,
    fetched: list[int] | None = None,
) -> tuple[dict[tuple[str, str], Match], int, int, dict[str, str]]:
    """Matches, identity rows read, statements run, and how each table was matched.
    `fetched` (PostgreSQL, MariaDB: SQLite has no rowcount for a query) gets every row the
    database sent after reflection: the identity rows read (streamed: a server-side cursor's
    rowcount is not known) and each other cursor's rowcount."""
    tables = golden.tables_from(LINKED)
    system = System("s", SystemRole.SOURCE, url, tables=tables, match=mode)
    conn = CountingConnector("s", url)
    statements = 0
    rows = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    def count_rows(_conn: Any, cursor: Any, *args: Any) -> None:
        nonlocal rows
        context = args[2]
        if not context.execution_options.get("stream_results"):
            assert cursor.rowcount >= 0
            rows += cursor.rowcount

    try:
        schema = conn.reflect([None])
        sa.event.listen(conn.engine, "before_cursor_execute", count)
        if fetched is not None:
            sa.event.listen(conn.engine, "after_cursor_execute", count_rows)
        hashing = collect._Hashing(system, conn)
        found = collect._match_tables("s", tables, conn, subjects, key, schema, hashing)
        methods = {t: str(how) for t, how in hashing.methods.items()}
        if fetched is not None:
            fetched.append(conn.rows_read + rows)
        return found, conn.rows_read, statements, methods
    finally:
        conn.close()


def test_pushdown_reads_only_the_matching_rows(server: str) -> None:
    _customers(server, 2000)
    pushed, rows, _, _ = _run(server, _subjects(range(0, 2000, 100)), MatchMode.PUSHDOWN)
    streamed, all_rows, _, _ = _run(server, _subjects(range(0, 2000, 100)), MatchMode.STREAM)
    assert pushed == streamed
    assert len([k for (r, t), k in pushed.items() if t == "customers"]) == 20
    assert rows == 20  # exactly the matches left the server
    assert all_rows == 2000


@pytest.mark.postgres
def test_rows_fetched_are_the_matches(postgres_url: str) -> None:
    """Customers and the orders linked to them by a database foreign key: each matched order
    leaves the server once, for the link and the foreign key's count together (issue 11)."""
    _customers(postgres_url, 500, foreign_key=True)
    fetched: list[int] = []
    pushed, _, _, methods = _run(
        postgres_url, _subjects(range(0, 500, 5)), MatchMode.PUSHDOWN, fetched=fetched
    )
    assert methods == {"customers": "pushdown"}
    matched = sum(len(m.keys) for m in pushed.values())
    assert matched == 300  # 100 customers and their 200 orders
    assert fetched == [matched]
    customers = [m for (_, t), m in pushed.items() if t == "customers"]
    assert {tuple(m.referenced_by.items()) for m in customers} == {(("orders.customer_id", 2),)}


@pytest.mark.parametrize("where", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_statements_do_not_grow_with_requests(
    where: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'db.sqlite'}"
        if where == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    _customers(url, 300)
    mode = MatchMode.AUTO
    few, _, one, methods = _run(url, _subjects(range(1)), mode)
    many, _, hundred, _ = _run(url, _subjects(range(100)), mode)
    assert len({r for r, _ in many}) == 100 and len({r for r, _ in few}) == 1
    assert hundred == one
    assert methods["customers"] == (
        "pushdown" if where == "postgres" else "stream (SQLite cannot compute SHA-256 in SQL)"
    )


def test_previous_keys_still_match_under_pushdown(server: str) -> None:
    """A request filed before a key rotation (hashed with the old key) is found by pushdown,
    beside one hashed with the new key; a key dsr no longer knows matches nothing."""
    _customers(server, 50)
    old = IdentityKey("k0", b"the old key", development=False)
    new = IdentityKey("k1", b"the new key", development=False, previous=(old,))
    gone = IdentityKey("k9", b"a retired key", development=False)
    subjects = [*_subjects(range(3), old), *_subjects(range(10, 12), new)]
    subjects.append(
        Subject("G", (("email", hash_identity("email", "person20@example.com", gone)),), None)
    )
    pushed, rows, _, methods = _run(server, subjects, MatchMode.PUSHDOWN, new)
    assert methods["customers"] == "pushdown"
    assert {r for r, t in pushed if t == "customers"} == {"R0", "R1", "R2", "R10", "R11"}
    assert rows == 5
    streamed, _, _, _ = _run(server, subjects, MatchMode.STREAM, new)
    assert pushed == streamed


@pytest.mark.parametrize("mode", list(MatchMode))
def test_how_each_mode_matches(mode: MatchMode) -> None:
    """auto pushes down on PostgreSQL only; pushdown also on MariaDB and is a problem where
    the database cannot hash; stream never pushes down; a column of another type streams."""
    spec = Table("customers", "id", {"email": "email"})
    pg = SqlHashing("PostgreSQL 15")
    maria = SqlHashing("MariaDB 10.11", key_in_statement=True)
    lite = SqlHashing("SQLite", "SQLite cannot compute SHA-256 in SQL")
    hashing = {"pg": pg, "maria": maria, "lite": lite}
    got = {
        name: how_matched(mode, None if mode is MatchMode.STREAM else h, spec)
        for name, h in hashing.items()
    }
    expected = {
        MatchMode.AUTO: {"pg": Method.PUSHDOWN, "maria": Method.STREAM, "lite": Method.STREAM},
        MatchMode.PUSHDOWN: {
            "pg": Method.PUSHDOWN,
            "maria": Method.PUSHDOWN,
            "lite": Method.STREAM,
        },
        MatchMode.STREAM: {"pg": Method.STREAM, "maria": Method.STREAM, "lite": Method.STREAM},
    }[mode]
    assert {n: h.method for n, h in got.items()} == expected
    assert (got["lite"].problem is not None) == (mode is MatchMode.PUSHDOWN)
    if mode is MatchMode.AUTO:
        assert "SHOW PROCESSLIST" in str(got["maria"])
        assert str(got["lite"]) == "stream (SQLite cannot compute SHA-256 in SQL)"


def test_a_column_of_another_type_streams() -> None:
    from reconciler.connectors.reflection import ColumnInfo

    spec = Table("customers", "id", {"phone": "phone"})
    columns = {"phone": ColumnInfo("phone", True, False, False, "numeric", None)}
    how = how_matched(MatchMode.AUTO, SqlHashing("PostgreSQL 15"), spec, columns)
    assert str(how) == "stream (column phone holds numeric values)"


INTEGER_IDENTITIES = {
    "tables": {
        "customers": {
            "primary_key": "id",
            "identities": {"phone": "phone", "customer_id": "customer_no"},
            "on_erasure": "delete",
        }
    },
    "rows": {
        "customers": [
            {"id": 1, "phone": 551239235555, "customer_no": 12345},
            {"id": 2, "phone": 551239235556, "customer_no": 123450},
            {"id": 3, "phone": None, "customer_no": 0},
        ]
    },
    "subjects": {"DSR-1": [["phone", "+55 12 3923-5555"]], "DSR-2": [["customer_id", " 12345"]]},
}


def test_integer_identity_columns_are_pushed_down_as_their_text(server: str) -> None:
    """An integer column is hashed as Python's str() writes it: the database's text of it."""
    _write(server, INTEGER_IDENTITIES)
    pushed, methods, rows = _observe(server, INTEGER_IDENTITIES, MatchMode.PUSHDOWN)
    streamed, _, _ = _observe(server, INTEGER_IDENTITIES, MatchMode.STREAM)
    assert methods == {"customers": "pushdown"}
    assert pushed == streamed
    assert set(pushed) == {"DSR-1/customers", "DSR-2/customers"}
    assert pushed["DSR-1/customers"]["keys"] == [1] and pushed["DSR-2/customers"]["keys"] == [1]
    assert rows == 1


def test_how_a_table_was_matched_is_not_in_the_digest() -> None:
    """Both ways find the same rows: a saved plan stays valid when the way changes."""
    from reconciler.observe.model import ObservedSystem

    one = ObservedSystem("s", matched_by={"customers": "pushdown"})
    other = ObservedSystem("s", matched_by={"customers": "stream (match: stream)"})
    assert one.digest == other.digest
