"""Engines and the rules every connection of dsr shares: the systems' and the state store's.

One home for what was written three times before: which driver a bare URL gets, how a SQLite
file is opened (foreign keys on, a busy timeout), and which database errors are worth a retry.
The retry rule reads the drivers' error classes and codes, never English message text. The
drivers are imported only when an error is read (SQLAlchemy imports them itself when a URL
needs one): a SQLite workspace never loads psycopg or PyMySQL.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import DBAPIError
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from reconciler.desired.model import Timeouts

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


def create_engine(
    url: str | URL,
    *,
    timeouts: Timeouts | None = None,
    pg_options: Sequence[str] = (),
    **options: Any,
) -> Engine:
    """An engine for `url`. On SQLite, every connection enforces foreign keys and waits up to
    SQLITE_BUSY_TIMEOUT_MS for another writer. On PostgreSQL and MariaDB/MySQL, `timeouts`
    bound connecting and every statement, so that a server that never answers fails the run
    instead of hanging it. `pg_options` are extra `-c name=value` settings for PostgreSQL
    sessions; `options` go to SQLAlchemy."""
    parsed = sa.make_url(url)
    connect_args = dict(options.pop("connect_args", {}))
    backend = parsed.get_backend_name()
    settings = list(pg_options)
    if timeouts is not None and backend == "postgresql":
        connect_args["connect_timeout"] = max(2, timeouts.connect)  # libpq's floor is 2 s
        settings.append(f"statement_timeout={timeouts.statement * 1000}")
    if settings and backend == "postgresql":
        connect_args["options"] = " ".join(f"-c {s}" for s in settings)
    if timeouts is not None and backend in ("mysql", "mariadb"):
        # PyMySQL's read timeout bounds the handshake as well as every statement's answer.
        connect_args["connect_timeout"] = timeouts.connect
        connect_args["read_timeout"] = timeouts.statement
        connect_args["write_timeout"] = timeouts.statement
    engine = sa.create_engine(parsed, connect_args=connect_args, **options)
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
    import psycopg.errors
    import pymysql

    if isinstance(orig, psycopg.errors.ConnectionTimeout):
        return False  # the server did not answer in time: waiting again would not help
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


def retrying(fn: Callable[[], T], *, attempts: int = RETRIES, within: float = 30.0) -> T:
    """`fn()`, run again with exponential backoff while it fails transiently, for at most
    `attempts` tries and no new try after `within` seconds (a server that timed out once is
    not waited for three times); the last error is raised as it was. `fn` must be safe to run
    again: one whole transaction, or a read."""
    for attempt in Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_after_attempt(attempts) | stop_after_delay(within),
        wait=wait_exponential(multiplier=0.25, max=4),
        reraise=True,
    ):
        with attempt:
            return fn()
    raise AssertionError("unreachable: tenacity reraises the last error")


# -- what went wrong, in words that name the server (never the password) --------------------


def describe_failure(
    exc: BaseException, url: URL, timeouts: Timeouts, elapsed: float = 0.0
) -> str | None:
    """A fixed message for the usual ways a connection fails (a timeout, refused,
    authentication, a missing database), or None for anything else."""
    return _timed_out(exc, url, timeouts, elapsed) or _connection_problem(exc, url)


def scrub_url(url: URL) -> str:
    """The URL to show in a message: the password and any query parameter that looks like a
    credential (`?password=`, `sslpassword`, `token`...) replaced by `***`."""
    query = {k: ("***" if _CREDENTIAL.search(k) else v) for k, v in url.query.items()}
    return url.set(query=query).render_as_string(hide_password=True)


_CREDENTIAL = re.compile(r"pass|pwd|secret|token|key|credential|auth", re.IGNORECASE)


def _where(url: URL) -> str:
    return f"{url.get_backend_name()} at {url.host or 'localhost'}:{url.port or 'default port'}"


def _timed_out(exc: BaseException, url: URL, timeouts: Timeouts, elapsed: float) -> str | None:
    """What timed out and after how long, when a timeout ended the call: a server that
    accepts connections but never answers fails the run with this, instead of hanging it."""
    import psycopg.errors
    import pymysql

    orig = getattr(exc, "orig", None)
    hint = "(dsr.yaml timeouts, or timeouts of the system in policies/systems.yaml)"
    if isinstance(orig, psycopg.errors.ConnectionTimeout):
        where = _where(url)
        return f"no answer from {where} within the connect timeout of {timeouts.connect} s {hint}"
    if isinstance(orig, psycopg.Error) and orig.sqlstate == _PG_QUERY_CANCELED:
        return f"a statement ran past the statement timeout of {timeouts.statement} s {hint}"
    errno = orig.args[0] if isinstance(orig, pymysql.err.MySQLError) and orig.args else None
    if errno in (_MYSQL_LOST, _MYSQL_CANNOT_CONNECT) and elapsed >= min(
        timeouts.connect, timeouts.statement
    ):
        return (
            f"no answer from {_where(url)} within {elapsed:.0f} s: a connect timeout of "
            f"{timeouts.connect} s or a statement timeout of {timeouts.statement} s {hint}"
        )
    return None


_PG_QUERY_CANCELED = "57014"
_MYSQL_CANNOT_CONNECT = 2003
_MYSQL_LOST = 2013


def _connection_problem(exc: BaseException, url: URL) -> str | None:
    """A fixed message for the usual ways of not getting in, naming the server, database and
    user from the URL (never the password): the driver's own text is withheld elsewhere."""
    orig = getattr(exc, "orig", None)
    errno = (
        orig.args[0] if orig is not None and orig.args and isinstance(orig.args[0], int) else None
    )
    state = getattr(orig, "sqlstate", None)
    text = str(orig if orig is not None else exc).lower()
    where = _where(url)
    if errno == 1045 or state in ("28P01", "28000") or "authentication failed" in text:
        return f"cannot connect to {where} as user {url.username}: authentication failed"
    if errno == 1049 or state == "3D000" or ('database "' in text and "does not exist" in text):
        return f"database {url.database} does not exist on {where}"
    if errno == 2003 or "connection refused" in text or "could not connect" in text:
        return f"cannot connect to {where}: connection refused or unreachable"
    return None
