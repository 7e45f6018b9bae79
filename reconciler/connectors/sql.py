"""The SQL connector on SQLAlchemy 2 Core: SQLite, PostgreSQL (psycopg 3), MariaDB (PyMySQL).

Every identifier goes through SQLAlchemy's quoting and every value is a bound parameter;
no SQL is built by string formatting. Errors leave as `ConnectorError`, marked transient
when retrying may help (a connection refused, a lock timeout). This module must not decide
what to change: it carries out what the executor asks, idempotently.

Each primitive that writes runs in one transaction for the whole call, so a failure part way
(a foreign key that forbids a delete, a UNIQUE clash) leaves the system as it was.

`scan_matching` reads an identity table through the pushdown clause (`pushdown.py`), whose
parameters hold the identity key's pads: its errors give the database's error code only,
and the engine hides bound parameters from SQLAlchemy's logs and messages.
"""

from __future__ import annotations

import datetime
import decimal
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, CursorResult, Engine, Inspector, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.types import TypeEngine

from reconciler.connectors.engine import create_engine, describe_failure, is_transient, retrying
from reconciler.connectors.pushdown import IdentityFilter, SqlHashing, where_matching
from reconciler.connectors.reflection import ColumnInfo, ForeignKeyInfo, SchemaInfo
from reconciler.desired.model import DEFAULT_TIMEOUTS, PermissionsMap, Timeouts
from reconciler.errors import ConnectorError
from reconciler.privacy.withhold import withhold_values

T = TypeVar("T")


def table_ref(name: str, *columns: str) -> sa.TableClause:
    """A lightweight, quoted reference to `name` or `schema.name` with the given columns."""
    schema, _, bare = name.rpartition(".")
    return sa.table(bare, *(sa.column(c) for c in columns), schema=schema or None)


class SqlConnector:
    def __init__(self, system: str, url: str, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> None:
        self.system = system
        self._url = url
        self._timeouts = timeouts
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            url = make_url(self._url)
            file = url.database if url.get_backend_name() == "sqlite" else None
            # SQLite would create an empty database and report its tables missing.
            if file not in (None, "", ":memory:") and not Path(str(file)).is_file():
                raise ConnectorError(self.system, f"database file {file} does not exist")
            # hide_parameters: SQLAlchemy's logs and error texts never show bound values
            # (identifiers in IN lists, the pads of a pushdown query).
            self._engine = create_engine(
                self._url, timeouts=self._timeouts, pool_pre_ping=True, hide_parameters=True
            )
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _run(self, what: str | Callable[[], str], fn: Callable[[], T], *, quiet: bool = False) -> T:
        """Runs `fn`, retrying transient failures with backoff (`engine.retrying`, never past
        the connect timeout); wraps errors. `fn` must be safe to run again after a failure:
        one whole transaction, or a read. `quiet`: see `_error`."""
        started = time.monotonic()
        try:
            return retrying(fn, within=self._timeouts.connect)
        except (DBAPIError, SQLAlchemyError) as exc:
            elapsed = time.monotonic() - started
            raise self._error(
                what, exc, transient=is_transient(exc), elapsed=elapsed, quiet=quiet
            ) from None

    def _once(
        self, what: str | Callable[[], str], fn: Callable[[], T], *, quiet: bool = False
    ) -> T:
        """Runs `fn` once, wrapping errors: for steps that must not be repeated (the next
        batch of a stream whose earlier batches the caller already has)."""
        try:
            return fn()
        except (DBAPIError, SQLAlchemyError) as exc:
            raise self._error(what, exc, transient=is_transient(exc), quiet=quiet) from None

    def _error(
        self,
        what: str | Callable[[], str],
        exc: BaseException,
        *,
        transient: bool = False,
        elapsed: float = 0.0,
        quiet: bool = False,
    ) -> ConnectorError:
        """`what` failed; a callable `what` is asked only now, so it can say how far it got.
        `quiet`: the statement held secrets (a pushdown's pads), and a database may quote
        statement text in its message ("near '...'"): only its error code is shown."""
        doing = what if isinstance(what, str) else what()
        url = make_url(self._url)
        reason = describe_failure(exc, url, self._timeouts, elapsed) or (
            _code_only(exc) if quiet else _first_line(exc)
        )
        return ConnectorError(self.system, f"{doing}: {reason}", transient=transient)

    # --- permissions -------------------------------------------------------------------

    def read_permissions(self, mapping: PermissionsMap) -> frozenset[tuple[str, str]]:
        t = table_ref(mapping.table, mapping.user, mapping.role)

        def read() -> frozenset[tuple[str, str]]:
            with self.engine.connect() as conn:
                rows = conn.execute(sa.select(t.c[mapping.user], t.c[mapping.role]))
                return frozenset((str(u), str(r)) for u, r in rows)

        return self._run(f"reading {mapping.table}", read)

    def grant_role(self, mapping: PermissionsMap, user: str, role: str) -> int:
        t = table_ref(mapping.table, mapping.user, mapping.role)
        match = sa.and_(t.c[mapping.user] == user, t.c[mapping.role] == role)

        def grant() -> int:
            with self.engine.begin() as conn:
                if conn.execute(sa.select(sa.func.count()).select_from(t).where(match)).scalar():
                    return 0  # already granted: idempotent
                conn.execute(sa.insert(t).values({mapping.user: user, mapping.role: role}))
                return 1

        return self._run(f"granting in {mapping.table}", grant)

    def revoke_role(self, mapping: PermissionsMap, user: str, role: str) -> int:
        t = table_ref(mapping.table, mapping.user, mapping.role)
        stmt = sa.delete(t).where(t.c[mapping.user] == user, t.c[mapping.role] == role)
        return self._run(f"revoking in {mapping.table}", lambda: self._execute(stmt))

    def remove_user(self, mapping: PermissionsMap, user: str) -> int:
        t = table_ref(mapping.table, mapping.user, mapping.role)
        stmt = sa.delete(t).where(t.c[mapping.user] == user)
        return self._run(f"removing from {mapping.table}", lambda: self._execute(stmt))

    def _execute(self, stmt: sa.Executable) -> int:
        with self.engine.begin() as conn:
            return int(conn.execute(stmt).rowcount or 0)

    # --- erasure primitives ------------------------------------------------------------

    def reflect(self, schemas: Iterable[str | None]) -> SchemaInfo:
        """Every table of each schema (None: the connection's default schema), with its
        columns and foreign keys. Tables are named as the data map writes them."""
        wanted = list(dict.fromkeys(schemas))

        def read() -> SchemaInfo:
            with self.engine.connect() as conn:
                return _reflect(sa.inspect(conn), wanted)

        return self._run("reading the schema", read)

    def scan(
        self, table: str, columns: Sequence[str], *, batch: int = 5000
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Every row of `table` (those columns only), in lists of at most `batch` rows (each
        a SQLAlchemy Row, which compares, indexes and unpacks as a tuple).

        Memory stays bounded by `batch`: PostgreSQL and MariaDB stream through a server-side
        cursor (psycopg's named cursor, PyMySQL's SSCursor); SQLite's cursor steps through
        the table anyway. The connection stays open until the iterator is exhausted or
        closed. Only opening the stream is retried: a failure part way raises (transient if
        the connection failed), since the caller already holds the earlier batches. On
        MariaDB, a consumer slower than the server's net_write_timeout between batches
        loses the connection; and closing the iterator early reads the rest of the result
        off the wire (PyMySQL drains an unbuffered result before it can close it)."""
        _check_batch(batch)
        t = table_ref(table, *dict.fromkeys(columns))
        stmt = sa.select(*(t.c[c] for c in columns))
        return self._stream(stmt, f"scanning {table}", batch)

    def sql_hashing(self) -> SqlHashing:
        """Whether this database can compute identity hashes itself (`scan_matching`)."""

        def read() -> SqlHashing:
            with self.engine.connect():  # the server's version is known once connected
                dialect = self.engine.dialect
            version = dialect.server_version_info or ()
            return sql_hashing(dialect.name, version, _is_mariadb(dialect))

        return self._run("connecting", read)

    def scan_matching(
        self,
        table: str,
        columns: Sequence[str],
        filters: Sequence[IdentityFilter],
        *,
        batch: int = 5000,
    ) -> Iterator[list[tuple[Any, ...]]]:
        """The rows of `table` (those columns) that the database finds may belong to a
        subject (`pushdown.where_matching`), streamed as `scan` streams. Only for a database
        whose `sql_hashing()` is able. Its errors never quote the statement: it holds the
        key's pads."""
        _check_batch(batch)
        names = [*columns, *(f.column for f in filters)]
        t = table_ref(table, *dict.fromkeys(names))
        where = where_matching(self.engine.dialect.name, t, filters)
        stmt = sa.select(*(t.c[c] for c in columns)).where(where)
        return self._stream(stmt, f"matching identities in {table} (pushdown)", batch, quiet=True)

    def _stream(
        self, stmt: sa.Select[Any], what: str, batch: int, *, quiet: bool = False
    ) -> Iterator[list[tuple[Any, ...]]]:
        def open_stream() -> tuple[Connection, CursorResult[Any]]:
            conn = self.engine.connect()
            try:
                options = {"stream_results": True, "yield_per": batch}
                return conn, conn.execute(stmt, execution_options=options)
            except BaseException:
                conn.close()
                raise

        conn, result = self._run(what, open_stream, quiet=quiet)
        # Both closed even if the caller stops early: the result first, so that PyMySQL
        # finishes its unbuffered result before the connection rolls back.
        with conn, result:
            # Rows as the driver's fetchmany() gave them, wrapped once: a Row compares,
            # indexes and unpacks as a tuple, and copying each into one costs as much as
            # reading it (a table scan is hundreds of thousands of rows).
            parts = result.partitions()
            while True:
                part = self._once(what, lambda: next(parts, None), quiet=quiet)
                if part is None:
                    return
                yield list(part)

    def select_where_in(
        self,
        table: str,
        columns: Sequence[str],
        column: str,
        values: Iterable[Any],
        *,
        batch: int = 500,
    ) -> list[tuple[Any, ...]]:
        """The rows (those columns) whose `column` is one of `values`, asking `batch` values
        at a time. Repeated values count once; no values, no query."""
        _check_batch(batch)
        chunks = _chunks(values, batch)
        if not chunks:
            return []
        t = table_ref(table, *dict.fromkeys([*columns, column]))
        stmt = sa.select(*(t.c[c] for c in columns)).where(t.c[column].in_(_IN))

        def read() -> list[tuple[Any, ...]]:
            with self.engine.connect() as conn:
                return [tuple(row) for chunk in chunks for row in conn.execute(stmt, chunk)]

        return self._run(f"reading {table}", read)

    def count_where_in(
        self, table: str, column: str, values: Iterable[Any], *, batch: int = 500
    ) -> int:
        """How many rows have `column` in `values` (repeated values count once)."""
        _check_batch(batch)
        chunks = _chunks(values, batch)
        if not chunks:
            return 0
        t = table_ref(table, column)
        stmt = sa.select(sa.func.count()).select_from(t).where(t.c[column].in_(_IN))

        def count() -> int:
            with self.engine.connect() as conn:
                return sum(int(conn.execute(stmt, chunk).scalar_one()) for chunk in chunks)

        return self._run(f"counting in {table}", count)

    def delete_where_in(
        self, table: str, column: str, values: Iterable[Any], *, batch: int = 500
    ) -> int:
        """Deletes the rows whose `column` is in `values`, in one transaction for all the
        chunks: on any error nothing is deleted. Returns the number of rows deleted (those
        the database removes through ON DELETE CASCADE are not counted)."""
        _check_batch(batch)
        chunks = _chunks(values, batch)
        if not chunks:
            return 0
        t = table_ref(table, column)
        stmt = sa.delete(t).where(t.c[column].in_(_IN))

        def delete() -> int:
            with self.engine.begin() as conn:
                return sum(int(conn.execute(stmt, chunk).rowcount or 0) for chunk in chunks)

        return self._run(f"deleting from {table}", delete)

    def update_by_key(self, table: str, key: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Sets, in the row whose `key` column equals each mapping's `key` value, the other
        columns of that mapping. One transaction, one executemany. Every mapping must hold
        the same columns, the key among them. Returns the number of rows matched."""
        given = [dict(r) for r in rows]
        if not given:
            return 0
        columns = set(given[0])
        if key not in columns:
            raise ValueError(f"update of {table}: the rows do not carry the key column {key}")
        if any(set(r) != columns for r in given):
            raise ValueError(f"update of {table}: the rows do not all carry the same columns")
        others = sorted(columns - {key})
        if not others:
            raise ValueError(f"update of {table}: no column to update besides {key}")
        names = _bind_names([key, *others])
        t = table_ref(table, key, *others)
        stmt = (
            sa.update(t)
            .where(t.c[key] == sa.bindparam(names[key]))
            .values({c: sa.bindparam(names[c]) for c in others})
        )
        params = [{names[c]: r[c] for c in names} for r in given]

        def update() -> int:
            with self.engine.begin() as conn:
                return int(conn.execute(stmt, params).rowcount or 0)

        return self._run(f"updating {table}", update)

    def run_sql(self, statements: Sequence[str]) -> None:
        """Runs a data map's refresh statements, in order, in one transaction.

        They are the user's own SQL and go to the driver untouched: no bound parameters, so
        a `%` or `:name` in them is literal. On SQLite the transaction is opened explicitly,
        since the driver would otherwise run DDL outside one. MariaDB commits implicitly
        around DDL (CREATE, DROP, TRUNCATE...): only DML there is undone on failure."""
        given = list(statements)
        if not given:
            return
        done = [0]  # statements run so far in the current attempt: names the failing one

        def run() -> None:
            done[0] = 0
            with self.engine.begin() as conn:
                if conn.dialect.name == "sqlite":
                    conn.exec_driver_sql("BEGIN")
                raw = conn.execution_options(no_parameters=True)
                for sql in given:
                    raw.exec_driver_sql(sql)
                    done[0] += 1

        self._run(lambda: f"refresh statement {done[0] + 1} of {len(given)}", run)


# One expanding bound parameter for the IN list: each chunk binds its values to it.
_IN: sa.BindParameter[Any] = sa.bindparam("values", expanding=True)


def _check_batch(batch: int) -> None:
    if batch < 1:
        raise ValueError(f"batch must be at least 1, not {batch}")


def _chunks(values: Iterable[Any], batch: int) -> list[dict[str, list[Any]]]:
    """The distinct values, in order, as parameter sets of at most `batch` values."""
    distinct = list(dict.fromkeys(values))
    return [{"values": distinct[i : i + batch]} for i in range(0, len(distinct), batch)]


def _bind_names(columns: Sequence[str]) -> dict[str, str]:
    """Bound-parameter names for `columns`: `b_0`, `b_1`... (plain identifiers whatever the
    column is called), with more underscores in front while one would equal a column name,
    which SQLAlchemy reserves for the SET clause."""
    prefix = "b_"
    while any(f"{prefix}{i}" in columns for i in range(len(columns))):
        prefix = "_" + prefix
    return {c: f"{prefix}{i}" for i, c in enumerate(columns)}


def _reflect(insp: Inspector, schemas: Sequence[str | None]) -> SchemaInfo:
    default = insp.default_schema_name
    tables: dict[str, dict[str, ColumnInfo]] = {}
    raw_fks: list[tuple[str, dict[str, Any]]] = []
    for schema in schemas:
        # The get_multi_* forms ask once per schema where the dialect can (PostgreSQL),
        # rather than once per table; elsewhere they loop over the tables themselves.
        columns = insp.get_multi_columns(schema=schema)
        pks = insp.get_multi_pk_constraint(schema=schema)
        uniques = insp.get_multi_unique_constraints(schema=schema)
        indexes = insp.get_multi_indexes(schema=schema)
        fks = insp.get_multi_foreign_keys(schema=schema)
        for key, cols in sorted(columns.items(), key=lambda kv: kv[0][1]):
            name = _table_name(schema, key[1])
            pk = list(pks[key]["constrained_columns"]) if key in pks else []
            alone: set[str] = set(pk) if len(pk) == 1 else set()
            for uc in uniques.get(key, []):
                if len(uc["column_names"]) == 1:
                    alone.add(uc["column_names"][0])
            for ix in indexes.get(key, []):
                partial = any(k.endswith("_where") for k in ix.get("dialect_options", {}))
                names = ix["column_names"]
                if ix["unique"] and not partial and len(names) == 1 and names[0] is not None:
                    alone.add(names[0])
            tables[name] = {
                c["name"]: ColumnInfo(
                    name=c["name"],
                    nullable=bool(c["nullable"]),
                    unique=c["name"] in alone,
                    primary_key=c["name"] in pk,
                    type=column_type(c["type"]),
                    length=c["type"].length if isinstance(c["type"], sa.String) else None,
                )
                for c in cols
            }
            raw_fks.extend((name, dict(fk)) for fk in fks.get(key, []))

    def referred(schema: str | None, table: str) -> str:
        # The same table may be reachable as bare `t` and as `default.t`: use the form the
        # tables were asked for in, so that a foreign key names a key of `tables`.
        if schema is None or schema == default:
            for candidate in (_table_name(schema, table), _table_name(default, table), table):
                if candidate in tables:
                    return candidate
        return _table_name(schema, table)

    foreign_keys = tuple(
        ForeignKeyInfo(
            table=name,
            columns=tuple(fk["constrained_columns"]),
            referred_table=referred(fk.get("referred_schema"), fk["referred_table"]),
            referred_columns=tuple(fk["referred_columns"]),
            ondelete=normalise_ondelete((fk.get("options") or {}).get("ondelete")),
        )
        for name, fk in raw_fks
    )
    return SchemaInfo(tables=tables, foreign_keys=foreign_keys)


def _table_name(schema: str | None, table: str) -> str:
    return f"{schema}.{table}" if schema else table


_PYTHON_TYPES: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "boolean"),  # before int: bool is an int
    (int, "integer"),
    ((decimal.Decimal, float), "numeric"),
    (datetime.datetime, "datetime"),  # before date: a datetime is a date
    (datetime.date, "date"),
    (str, "string"),
    ((bytes, bytearray, memoryview), "binary"),
)


def column_type(type_: TypeEngine[Any]) -> str:
    """The kind of a reflected column's type, from the Python type its values load as.
    (MariaDB's BOOLEAN is TINYINT(1) and loads as int: it reads as "integer".)"""
    try:
        python = type_.python_type
    except NotImplementedError:  # NullType, and types with no single Python type
        return "other"
    for cls, kind in _PYTHON_TYPES:
        if issubclass(python, cls):
            return kind
    return "other"


def normalise_ondelete(value: str | None) -> str | None:
    """One of CASCADE, SET NULL, SET DEFAULT, RESTRICT; None for NO ACTION or no clause.
    (PostgreSQL 15 may add a column list: `SET NULL (col)`.)"""
    if not value:
        return None
    text = " ".join(value.upper().split())
    for known in ("CASCADE", "SET NULL", "SET DEFAULT", "RESTRICT"):
        if text.startswith(known):
            return known
    return None


# MariaDB, unlike PostgreSQL and SQLite, puts the offending value in the first line of some
# messages ("Duplicate entry 'ana@x.example' for key 'email'"): that value may be personal.
_VALUES_IN_MESSAGES = (
    (re.compile(r"Duplicate entry '.*' for key"), "Duplicate entry (value withheld) for key"),
    (re.compile(r"value: '.*?' for column"), "value (withheld) for column"),
)


def _is_mariadb(dialect: sa.Dialect) -> bool:
    return bool(getattr(dialect, "is_mariadb", False))


def sql_hashing(name: str, version: tuple[Any, ...], mariadb: bool = False) -> SqlHashing:
    """What a database of SQLAlchemy dialect `name` at server `version` can hash."""
    shown = ".".join(str(v) for v in version[:2] if isinstance(v, int))
    if name == "postgresql":
        database = f"PostgreSQL {shown}".strip()
        if version and version < (11,):
            return SqlHashing(database, "PostgreSQL before 11 has no sha256()")
        return SqlHashing(database)
    if name in ("mysql", "mariadb"):
        if mariadb or name == "mariadb":
            database = f"MariaDB {shown}".strip()
            too_old = bool(version) and version < (10, 0, 5)
        else:
            database = f"MySQL {shown}".strip()
            too_old = bool(version) and version < (8,)
        if too_old:
            return SqlHashing(database, f"{database} has no REGEXP_REPLACE()", True)
        return SqlHashing(database, key_in_statement=True)
    label = {"sqlite": "SQLite"}.get(name, name)
    return SqlHashing(label, f"{label} cannot compute SHA-256 in SQL")


def _code_only(exc: BaseException) -> str:
    """The database's error code, without its message (which may quote the statement)."""
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None)
    if code is None and orig is not None and orig.args and isinstance(orig.args[0], int):
        code = orig.args[0]
    shown = f" (error {code})" if code is not None else ""
    return (
        f"the database refused the pushdown query{shown}; its message is withheld, since the "
        "statement holds the identity key's pads (set match: stream for this system to read "
        "without pushdown)"
    )


def _first_line(exc: BaseException) -> str:
    """The database's own message without SQL text or parameters (they may hold values)."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc)
    line = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    for pattern, replacement in _VALUES_IN_MESSAGES:
        line = pattern.sub(replacement, line)
    return withhold_values(line)
