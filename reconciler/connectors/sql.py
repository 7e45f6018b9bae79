"""The SQL connector on SQLAlchemy 2 Core: SQLite, PostgreSQL (psycopg 3), MariaDB (PyMySQL).

Every identifier goes through SQLAlchemy's quoting and every value is a bound parameter;
no SQL is built by string formatting. Errors leave as `ConnectorError`, marked transient
when retrying may help (a connection refused, a lock timeout). This module must not decide
what to change: it carries out what the executor asks, idempotently.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from reconciler.errors import ConnectorError, DsrError
from reconciler.model import PermissionsMap, System

T = TypeVar("T")
RETRIES = 3


def resolve_url(system: System, workspace: Path) -> str:
    """`env:NAME` -> the variable's value; a relative SQLite path -> under the workspace."""
    url = system.url
    if url.startswith("env:"):
        name = url[4:]
        value = os.environ.get(name)
        if not value:
            raise DsrError(
                f"system {system.name}: environment variable {name} is not set "
                f"(policies/systems.yaml: systems.{system.name}.url)"
            )
        url = value
    try:
        parsed = make_url(url)
    except (SQLAlchemyError, ValueError) as exc:
        # Never echo the URL itself: it may carry a password.
        raise DsrError(
            f"system {system.name}: not a valid SQLAlchemy URL ({type(exc).__name__})"
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        if not path.is_absolute():
            parsed = parsed.set(database=str(workspace / path))
    return parsed.render_as_string(hide_password=False)


def create_engine(url: str) -> Engine:
    engine = sa.create_engine(url, future=True, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

    return engine


def table_ref(name: str, *columns: str) -> sa.TableClause:
    """A lightweight, quoted reference to `name` or `schema.name` with the given columns."""
    schema, _, bare = name.rpartition(".")
    return sa.table(bare, *(sa.column(c) for c in columns), schema=schema or None)


class SqlConnector:
    def __init__(self, system: str, url: str) -> None:
        self.system = system
        self._url = url
        self._engine: Engine | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(self._url)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _run(self, what: str, fn: Callable[[], T]) -> T:
        """Runs `fn`, retrying transient failures with backoff; wraps errors."""
        for attempt in range(1, RETRIES + 1):
            try:
                return fn()
            except OperationalError as exc:
                if not is_transient(exc):
                    raise ConnectorError(self.system, f"{what}: {_first_line(exc)}") from None
                if attempt == RETRIES:
                    raise ConnectorError(
                        self.system, f"{what}: {_first_line(exc)}", transient=True
                    ) from None
                time.sleep(0.25 * 2**attempt)
            except (DBAPIError, SQLAlchemyError) as exc:
                raise ConnectorError(self.system, f"{what}: {_first_line(exc)}") from None
        raise AssertionError("unreachable")

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


_TRANSIENT_HINTS = (
    "could not connect",
    "connection refused",
    "connection timed out",
    "timeout expired",
    "server closed the connection",
    "lost connection",
    "can't connect",
    "database is locked",
    "deadlock",
    "lock wait timeout",
    "too many connections",
    "the database system is starting",
)


def is_transient(exc: OperationalError) -> bool:
    """Worth retrying: the connection, not the statement, failed. (SQLite raises
    OperationalError for a missing table too, so the class alone does not tell.)"""
    if exc.connection_invalidated:
        return True
    text = str(exc.orig if exc.orig is not None else exc).lower()
    return any(hint in text for hint in _TRANSIENT_HINTS)


def _first_line(exc: BaseException) -> str:
    """The database's own message without SQL text or parameters (they may hold values)."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__
