"""Identity matching pushed down to real PostgreSQL and MariaDB: the database's filter keeps
exactly the rows whose normalised value's keyed hash is wanted, plus the rows it must leave
to Python (anything but printable ASCII), whatever the values: Unicode, spaces, NULLs, case,
phones in every format. Python's matching is the reference."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reconciler.connectors.pushdown import IdentityFilter, KeyDigests
from reconciler.connectors.sql import SqlConnector
from reconciler.errors import ConnectorError
from reconciler.observe.subjects import Subject, Wanted
from reconciler.privacy.identity import IdentityKey, hash_identity, is_plain, pads

OLD = IdentityKey("k0", b"the key before the rotation", development=False)
KEY = IdentityKey("k1", b"pushdown-test-key" * 5, development=False, previous=(OLD,))  # > 64 B
IDENTITIES = {"email": "email", "phone": "phone", "customer_id": "ref"}
EVERY = [(0, kind, old) for kind in IDENTITIES for old in (False, True)]  # row 0, all kinds

# Pieces that SQL and Python treat differently unless the filter is careful.
TRICKY = [
    "a", "Z", "ana", "ANA", "x.y", "@", "example.COM", "+", "(0)", "-", " ", "  ", "\t", "\n",
    "\x0b", "\x1f", "\x7f", "\u00a0", "\u2003", "\u3000", "\u200b", "É", "é", "ß", "İ", "ı",
    "I", "i", "\u212a", "k", "ſ", "s", "Ａ", "ｂ", "0", "7", "44", "20 7946-0958", "٠١٢",
    "０１", "²", "'", "\\", "%", "_", "ä", "Ω",
]  # fmt: skip
value = st.one_of(
    st.none(),
    st.just(""),
    st.lists(st.sampled_from(TRICKY), max_size=6).map("".join),
    st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"]), max_size=8),
)


@pytest.fixture(
    params=[
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ]
)
def server(request: pytest.FixtureRequest) -> Iterator[str]:
    yield request.getfixturevalue(f"{request.param}_url")


def _create(url: str) -> None:
    engine = sa.create_engine(url)
    # The e-mail column has a Turkish collation where the server has one: its LOWER('I') is
    # a dotless i, which the filter must not use.
    if engine.dialect.name == "postgresql":
        with engine.connect() as c:
            tr = c.execute(
                sa.text("SELECT 1 FROM pg_collation WHERE collname = 'tr-TR-x-icu'")
            ).scalar()
        collate = ' COLLATE "tr-TR-x-icu"' if tr else ""
        ddl = f"CREATE TABLE people (id INT PRIMARY KEY, email TEXT{collate}, phone TEXT, ref TEXT)"
    else:
        ddl = (
            "CREATE TABLE people (id INT PRIMARY KEY, "
            "email VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_turkish_ci, "
            "phone VARCHAR(200) CHARACTER SET utf8mb4, ref VARCHAR(200) CHARACTER SET utf8mb4)"
        )
    with engine.begin() as c:
        c.execute(sa.text(ddl))
    engine.dispose()


def _filters(wanted: Wanted) -> list[IdentityFilter]:
    return [
        IdentityFilter(
            column,
            kind,
            tuple(KeyDigests(pads(k.secret), frozenset(d)) for k, d in wanted.keys[kind]),
        )
        for kind, column in IDENTITIES.items()
        if kind in wanted.keys
    ]


def _kept_by_python(row: dict[str, Any], wanted: Wanted, columns: set[str]) -> bool:
    """What the SQL filter on `columns` must keep, computed in Python: a value not printable
    ASCII, or one whose keyed hash under some key is wanted (the empty string included: SQL
    may hash it, and Python then finds no match in it)."""
    for kind, column in IDENTITIES.items():
        v = row[column]
        if v is None or kind not in wanted.keys or column not in columns:
            continue
        if not is_plain(str(v)) or wanted.requests(kind, str(v)):
            return True
    return False


def _matched_by_python(row: dict[str, Any], wanted: Wanted, columns: set[str]) -> bool:
    return any(
        row[c] not in (None, "") and wanted.requests(k, str(row[c]))
        for k, c in IDENTITIES.items()
        if c in columns
    )


def test_sql_filter_keeps_exactly_what_python_would(server: str) -> None:
    _create(server)
    conn = SqlConnector("s", server)
    columns = ["id", "email", "phone", "ref"]

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(
        rows=st.lists(st.tuples(value, value, value), min_size=1, max_size=12),
        picks=st.lists(
            st.tuples(st.integers(0, 11), st.sampled_from(list(IDENTITIES)), st.booleans())
        ),
        extra=value,
    )
    # Cases a reader would try first, always run: a capital I under a Turkish collation, a
    # Kelvin sign against a k, a tab, Arabic-Indic and full-width digits, rotated keys.
    @example(rows=[("Ana.I@X.example", "+44 (0)20 7946-0958", " 42 ")], picks=EVERY, extra=None)
    @example(rows=[("\u212a@x", "٠١٢", "\tk")], picks=EVERY, extra="k@x")
    @example(rows=[(" ÉSS@x ", "０１２", ""), ("ess@x", "+012", None)], picks=EVERY, extra=None)
    def check(rows: list[tuple[Any, Any, Any]], picks: list[Any], extra: str | None) -> None:
        records = [{"id": i, "email": e, "phone": p, "ref": r} for i, (e, p, r) in enumerate(rows)]
        with conn.engine.begin() as c:
            c.execute(sa.text("DELETE FROM people"))
            c.execute(sa.text("INSERT INTO people VALUES (:id, :email, :phone, :ref)"), records)
        # Subjects: values of the rows (a request of any kind may name any of them), some
        # hashed under the previous key, and one value that may be in no row.
        subjects = []
        for n, (index, kind, old) in enumerate(picks):
            raw = rows[index % len(rows)][list(IDENTITIES).index(kind)]
            if raw is not None:
                h = hash_identity(kind, raw, OLD if old else KEY)
                subjects.append(Subject(f"R{n}", ((kind, h),), None))
        if extra is not None:
            subjects.append(Subject("X", (("email", hash_identity("email", extra, KEY)),), None))
        wanted = Wanted(subjects, KEY)
        filters = _filters(wanted)
        if not filters:
            return
        # The values as the database stores them (MariaDB's VARCHAR keeps what it is given).
        stored = [
            dict(zip(columns, r, strict=True)) for b in conn.scan("people", columns) for r in b
        ]
        # Each column alone (a row kept for one column must not hide another's mistake),
        # then all together, as observe asks.
        for part in [[f] for f in filters] + [filters]:
            got = {r[0] for b in conn.scan_matching("people", columns, part) for r in b}
            only = {f.column for f in part}
            assert got == {r["id"] for r in stored if _kept_by_python(r, wanted, only)}
            assert {r["id"] for r in stored if _matched_by_python(r, wanted, only)} <= got

    try:
        check()
    finally:
        conn.close()


@pytest.mark.parametrize("kind", ["postgres", "mariadb"])
def test_errors_and_logs_never_show_the_pads(
    kind: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    """A pushdown that fails says so by code only; SQLAlchemy's logs hide parameters."""
    url = request.getfixturevalue(f"{kind}_url")
    _create(url)
    conn = SqlConnector("s", url)
    p = pads(KEY.secret)
    f = IdentityFilter("email", "email", (KeyDigests(p, frozenset({b"\x01" * 32})),))
    shown = [p.inner.hex(), p.outer.hex(), repr(p.inner)[2:40], repr(p.outer)[2:40]]
    try:
        caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
        conn.engine.echo = True
        assert list(conn.scan_matching("people", ["id"], [f])) == []
        missing = IdentityFilter("nope", "email", f.keys)
        with pytest.raises(ConnectorError) as failed:
            list(conn.scan_matching("people", ["id"], [missing]))
        assert "refused the pushdown query" in str(failed.value)
        text = caplog.text + str(failed.value)
        assert "hidden due to hide_parameters" in caplog.text
        for s in shown:
            assert s not in text
    finally:
        conn.close()
