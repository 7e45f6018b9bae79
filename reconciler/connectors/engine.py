"""Engines and the rules every connection of dsr shares: the systems' and the state store's.

One home for what was written three times before: which driver a bare URL gets, how a SQLite
file is opened (foreign keys on, a busy timeout), and which database errors are worth a retry.
The retry rule reads the drivers' error classes and codes, never English message text.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import pymysql
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import DBAPIError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000  # how long a SQLite writer waits for another before failing
RETRIES = 3  # attempts at a transient failure, the first one included

_SHIPPED_DRIVERS = {
    "postgresql": "postgresql+psycopg",
    "mysql": "mysql+pymysql",
    "mariadb": "mariadb+pymysql",
}


def with_shipped_driver(url: URL) -> URL:
    """A URL without a driver gets the one dsr ships with (SQLAlchemy's default for
    postgresql:// is psycopg2, which is not installed)."""
    if url.drivername in _SHIPPED_DRIVERS:
        return url.set(drivername=_SHIPPED_DRIVERS[url.drivername])
    return url


def create_engine(url: str | URL, **options: Any) -> Engine:
    """An engine for `url`; on SQLite, every connection enforces foreign keys and waits up to
    SQLITE_BUSY_TIMEOUT_MS for another writer. `options` go to SQLAlchemy."""
    engine = sa.create_engine(url, **options)
    if engine.dialect.name == "sqlite":

        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_MS)}")
                cursor.execute("PRAGMA foreign_keys = ON")
            finally:
                cursor.close()

        sa.event.listen(engine, "connect", on_connect)
    return engine


# PostgreSQL SQLSTATEs worth a retry: the connection or the server, not the statement.
_PG_TRANSIENT_CLASSES = ("08",)  # connection exception
_PG_TRANSIENT = {
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "55P03",  # lock_not_available
    "57P01",  # admin_shutdown
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now (the database system is starting up)
    "53300",  # too_many_connections
}
# MySQL and MariaDB error numbers worth a retry.
_MYSQL_TRANSIENT = {
    1040,  # too many connections
    1205,  # lock wait timeout exceeded
    1213,  # deadlock found
    2002,  # can't connect through the socket
    2003,  # can't connect to the server
    2006,  # server has gone away
    2013,  # lost connection during query
}
_SQLITE_TRANSIENT = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the connection, the server or a lock failed, not the statement."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        orig: BaseException | None = exc.orig
    else:
        orig = exc
    if isinstance(orig, psycopg.Error):
        state = orig.sqlstate
        if state is None:  # raised by the client: no connection could be made or kept
            return isinstance(orig, psycopg.OperationalError)
        return state in _PG_TRANSIENT or state.startswith(_PG_TRANSIENT_CLASSES)
    if isinstance(orig, pymysql.err.MySQLError):
        code = orig.args[0] if orig.args and isinstance(orig.args[0], int) else None
        return code in _MYSQL_TRANSIENT
    if isinstance(orig, sqlite3.Error):
        return getattr(orig, "sqlite_errorcode", None) in _SQLITE_TRANSIENT
    return False


def retrying(fn: Callable[[], T], *, attempts: int = RETRIES) -> T:
    """`fn()`, run again with exponential backoff while it fails transiently; the last error
    is raised as it was. `fn` must be safe to run again: one whole transaction, or a read."""
    for attempt in Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=0.25, max=4),
        reraise=True,
    ):
        with attempt:
            return fn()
    raise AssertionError("unreachable: tenacity reraises the last error")
