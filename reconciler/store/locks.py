"""The one-writer lock, held by the operating system or the database, never by a row alone.

A lock must die with its holder: a runner killed in the middle of `apply` must not block every
later run. So the lock itself is one the holder's death releases:

- on SQLite, an exclusive `flock` on `<store file>.lock`, released by the kernel when the
  process ends (a state file is local to one machine);
- on PostgreSQL, a session advisory lock (`pg_try_advisory_lock`), released by the server
  when the holder's connection ends, whichever runner it ran on.

Beside it, a row in `state_lock` says who holds it (holder, pid, host, since), for messages,
`dsr status` and `dsr force-unlock`. A row found when the lock is taken was left by a holder
that died: the new holder reports that it took over from it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from reconciler.errors import DsrError, LockTimeout
from reconciler.store.records import LockInfo
from reconciler.store.tables import format_time, lock_table, parse_time

LOCK_NAME = "state"  # one lock for the whole store: one writer at a time
POLL_SECONDS = 0.2
# The PostgreSQL advisory lock key: "dsr-lock" as a (positive) 64-bit integer.
ADVISORY_KEY = int.from_bytes(b"dsr-lock", "big")


class StoreLock:
    """Takes and releases the one-writer lock of a store; see the module docstring."""

    def __init__(
        self, engine: Engine, write: Callable[[], contextlib.AbstractContextManager[Connection]]
    ) -> None:
        self._engine = engine
        self._write = write
        self._host = socket.gethostname()
        self._sqlite = engine.dialect.name == "sqlite"
        database = engine.url.database or ""
        local = self._sqlite and database not in ("", ":memory:")
        self._file = (
            Path(f"{database}.lock") if local and not database.startswith("file:") else None
        )
        self._token = ""
        if engine.dialect.name not in ("sqlite", "postgresql"):
            raise DsrError(
                f"the state store must be SQLite or PostgreSQL, not {engine.dialect.name}"
            )

    @contextlib.contextmanager
    def hold(
        self,
        holder: str,
        *,
        timeout: float,
        on_wait: Callable[[LockInfo], None] | None = None,
    ) -> Iterator[LockInfo]:
        deadline = time.monotonic() + max(timeout, 0.0)
        waited = False
        with self._mechanism() as (try_take, release):
            while not try_take():
                current = self.recorded() or LockInfo("another dsr", 0, "unknown host", _now())
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"state is locked by {current.describe()}; waited {timeout:g}s"
                    )
                if not waited and on_wait is not None:
                    on_wait(current)
                waited = True
                time.sleep(max(0.0, min(POLL_SECONDS, deadline - time.monotonic())))
            try:
                info = self._record(holder)
                yield info
            finally:
                # The lock itself goes in any case, even if its record cannot be cleared.
                with contextlib.suppress(Exception), self._write() as conn:
                    conn.execute(
                        sa.delete(lock_table).where(
                            lock_table.c.name == LOCK_NAME,
                            lock_table.c.token == self._token,
                        )
                    )
                release()

    @contextlib.contextmanager
    def _mechanism(
        self,
    ) -> Iterator[tuple[Callable[[], bool], Callable[[], None]]]:
        """(try to take, release) for this store's kind of lock; cleans up on exit."""
        if self._sqlite:
            if self._file is None:  # an in-memory store: one process, nothing to share
                yield (lambda: True), (lambda: None)
                return
            self._file.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self._file, "a+")  # noqa: SIM115 - kept open while the lock is held
            try:
                yield (lambda: _try_flock(handle)), (lambda: fcntl.flock(handle, fcntl.LOCK_UN))
            finally:
                handle.close()
            return
        conn = self._engine.connect()
        try:
            # Session locks: autocommit, so that no transaction is left open while it is held.
            auto = conn.execution_options(isolation_level="AUTOCOMMIT")

            def take() -> bool:
                query = sa.text("SELECT pg_try_advisory_lock(:key)")
                return bool(auto.execute(query, {"key": ADVISORY_KEY}).scalar())

            def release() -> None:
                auto.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})

            yield take, release
        finally:
            conn.close()

    def _record(self, holder: str) -> LockInfo:
        """Writes who holds the lock now; a row left by a dead holder is replaced, and said."""
        self._token = secrets.token_hex(16)
        now = _now()
        values = {
            "holder": holder,
            "pid": os.getpid(),
            "host": self._host,
            "acquired_at": format_time(now),
            "token": self._token,
        }
        with self._write() as conn:
            row = conn.execute(sa.select(lock_table).where(lock_table.c.name == LOCK_NAME)).first()
            if row is None:
                conn.execute(sa.insert(lock_table).values(name=LOCK_NAME, **values))
            else:
                conn.execute(
                    sa.update(lock_table).where(lock_table.c.name == LOCK_NAME).values(**values)
                )
        replaced = _info(row) if row is not None else None
        return LockInfo(
            holder,
            os.getpid(),
            self._host,
            now,
            took_over_stale=replaced is not None,
            replaced=replaced,
        )

    def recorded(self) -> LockInfo | None:
        """Who the lock row says holds the lock (it may be a holder that died)."""
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(lock_table).where(lock_table.c.name == LOCK_NAME)).first()
        return _info(row) if row is not None else None

    def held(self) -> LockInfo | None:
        """The holder, if the lock is held right now; None when it is free. Never takes it
        on PostgreSQL (it asks `pg_locks`); on SQLite it tries the `flock` and lets go."""
        if self._sqlite:
            with self._mechanism() as (try_take, release):
                if try_take():
                    release()
                    return None
        elif not self._holder_backends():
            return None
        return self.recorded() or LockInfo("another dsr", 0, "unknown host", _now())

    def _holder_backends(self) -> list[int]:
        """PostgreSQL: the server processes of the sessions holding the advisory lock."""
        with self._engine.connect() as conn:
            return list(
                conn.execute(
                    sa.text(
                        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                        "AND ((classid::bigint << 32) | objid::bigint) = :key"
                    ),
                    {"key": ADVISORY_KEY},
                ).scalars()
            )

    def force_release(self) -> str:
        """Releases the lock of a holder that is stuck or gone, and says what was released.

        On PostgreSQL the holder's session is terminated (its transaction, if any, rolls
        back). On SQLite a live holder on this machine cannot be released for it: stop it."""
        recorded = self.recorded()
        held = self.held()
        what = recorded.describe() if recorded else "an unknown holder"
        if held is None:
            if recorded is None:
                return "no lock is held"
            with self._write() as conn:
                conn.execute(sa.delete(lock_table).where(lock_table.c.name == LOCK_NAME))
            return f"no lock is held; removed the record left by {what}"
        if self._sqlite:
            raise DsrError(
                f"the lock is held by {what}, a process still running on this machine; stop "
                "it (dsr stops at the next action boundary on SIGTERM) and the lock goes with it"
            )
        pids = self._holder_backends()
        with self._engine.connect() as conn:
            auto = conn.execution_options(isolation_level="AUTOCOMMIT")
            for pid in pids:
                auto.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            auto.execute(sa.delete(lock_table).where(lock_table.c.name == LOCK_NAME))
        backends = ", ".join(str(p) for p in pids) or "none found"
        return f"released the lock held by {what} (PostgreSQL backend {backends} terminated)"


def _try_flock(handle: IO[Any]) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _info(row: Any) -> LockInfo:
    return LockInfo(
        holder=row.holder, pid=int(row.pid), host=row.host, acquired_at=parse_time(row.acquired_at)
    )


def _now() -> datetime:
    return datetime.now(UTC)
