"""The state store on SQLAlchemy Core: a SQLite file today, a PostgreSQL database tomorrow.

One code path for every dialect: tables are `sqlalchemy.Table`s created on open, every value
travels as a bound parameter, and the only dialect-specific code is how SQLite is told to share
its file between processes (WAL, a busy timeout, and `BEGIN IMMEDIATE` for writes). Writes that
must be serialised across processes (the lock, audit appends) take a write lock first: `BEGIN
IMMEDIATE` on SQLite, `SELECT ... FOR UPDATE` elsewhere.

This module must not print, exit, hold state in module globals, or format values into SQL.
Datetimes are stored as fixed-width ISO 8601 UTC strings, so they sort as text.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError

from reconciler.errors import DsrError, LockTimeout
from reconciler.store.base import (
    GENESIS_HASH,
    IDENTITY_HASH_PATTERN,
    JOURNAL_STATUSES,
    REFRESH_STATUSES,
    REQUEST_STATES,
    SUBJECT_KINDS,
    AuditEvent,
    AuditRecord,
    ExportRecord,
    JournalEntry,
    LockInfo,
    Observation,
    RefreshRecord,
    RequestState,
    RunInfo,
    Tombstone,
)

# 1: lock, runs, journal, audit, observations. 2: + tombstones, request_states, refreshes.
# 3: + exports.
# Opening an older store creates the missing tables and moves it to this version; a newer
# store is refused, because this dsr would not know what its tables mean.
SCHEMA_VERSION = 3
LOCK_NAME = "state"  # one lock for the whole store: one writer at a time
LOCK_POLL_SECONDS = 0.2
SQLITE_BUSY_TIMEOUT_MS = 30_000

metadata = sa.MetaData()

meta_table = sa.Table(
    "store_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(255), nullable=False),
)

# At most one row per lock name; its `token` tells this acquisition from a later one.
lock_table = sa.Table(
    "state_lock",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("acquired_at", sa.String(32), nullable=False),
    sa.Column("token", sa.String(64), nullable=False),
)

runs_table = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("plan_id", sa.String(255), nullable=False),
    sa.Column("started_at", sa.String(32), nullable=False),
    sa.Column("ended_at", sa.String(32), nullable=True),
    sa.Column("outcome", sa.String(64), nullable=True),
)

journal_table = sa.Table(
    "journal",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("change_id", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("message", sa.Text, nullable=True),
)

# `seq` is assigned by the appender from the head, never by the database, so a gap means a
# removed record and not a rolled-back insert.
audit_table = sa.Table(
    "audit",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("system", sa.String(255), nullable=False),
    sa.Column("target", sa.String(255), nullable=False),
    sa.Column("outcome", sa.String(64), nullable=False),
    sa.Column("request", sa.String(255), nullable=True, index=True),
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

# One row (id = 1): the last appended seq and hash, updated in the append's transaction, so
# that removing records from the end of the chain is detectable.
audit_head_table = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

observations_table = sa.Table(
    "observations",
    metadata,
    sa.Column("system", sa.String(255), primary_key=True),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("digest", sa.String(255), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
)

tombstones_table = sa.Table(
    "tombstones",
    metadata,
    sa.Column("request_id", sa.String(255), primary_key=True),
    sa.Column("subject_kind", sa.String(32), nullable=False),
    sa.Column("identities", sa.Text, nullable=False),  # JSON [[type, hash], ...]
    sa.Column("systems", sa.Text, nullable=True),  # JSON [name, ...]; NULL: all systems
    sa.Column("completed_at", sa.String(32), nullable=False),
    sa.Column("receipt_hash", sa.String(255), nullable=False),
)

request_states_table = sa.Table(
    "request_states",
    metadata,
    sa.Column("request_id", sa.String(255), primary_key=True),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("at", sa.String(32), nullable=False),
)

# History: one row per refresh, never updated.
refreshes_table = sa.Table(
    "refreshes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("system", sa.String(255), nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("message", sa.Text, nullable=True),
    sa.Index("ix_refreshes_system_at", "system", "at"),
)

exports_table = sa.Table(
    "exports",
    metadata,
    sa.Column("request_id", sa.String(255), primary_key=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("manifest_sha256", sa.String(64), nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("built_at", sa.String(32), nullable=False),
    sa.Column("expires_at", sa.String(32), nullable=False),
    sa.Column("expired_at", sa.String(32), nullable=True),
)

HEAD_ID = 1
_IDENTITY_HASH = re.compile(IDENTITY_HASH_PATTERN)
# Set on a Connection to choose how the SQLite begin hook starts its transaction.
_BEGIN_OPTION = "dsr_sqlite_begin"


def format_time(value: datetime) -> str:
    """A timezone-aware datetime as fixed-width ISO 8601 UTC: `2026-11-29T11:30:00.000000Z`."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: the state store needs timezone-aware times")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def audit_hash(fields: dict[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of a stored record's fields, `hash` excluded."""
    return hashlib.sha256(canonical_json(fields).encode("utf-8")).hexdigest()


def _hashed_fields(row: Any, details: dict[str, Any]) -> dict[str, Any]:
    return {
        "seq": int(row.seq),
        "at": row.at,
        "run_id": row.run_id,
        "action": row.action,
        "system": row.system,
        "target": row.target,
        "outcome": row.outcome,
        "request": row.request,
        "details": details,
        "prev_hash": row.prev_hash,
    }


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (signal 0 checks, sends nothing)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError as exc:
        # EPERM: it exists but belongs to someone else.
        return exc.errno == errno.EPERM
    return True


def _masked(url: URL) -> str:
    return url.render_as_string(hide_password=True)


class SqlStateStore:
    """`StateStore` on a SQLAlchemy engine. Build it with `open_store`."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._host = socket.gethostname()

    # --- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str) -> SqlStateStore:
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise DsrError(f"state store: not a valid SQLAlchemy URL: {exc}") from None
        connect_args: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database
            if database and database != ":memory:" and not database.startswith("file:"):
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            connect_args["timeout"] = SQLITE_BUSY_TIMEOUT_MS / 1000
        try:
            engine = sa.create_engine(parsed, connect_args=connect_args)
        except (ArgumentError, ImportError) as exc:
            raise DsrError(f"state store {_masked(parsed)}: {exc}") from None
        if engine.dialect.name == "sqlite":
            _share_sqlite_file(engine)
        store = cls(engine)
        try:
            store._create_schema()
        except DBAPIError as exc:
            engine.dispose()
            raise DsrError(f"cannot open the state store {_masked(parsed)}: {exc.orig}") from None
        except BaseException:
            engine.dispose()
            raise
        return store

    def _create_schema(self) -> None:
        for attempt in range(2):
            try:
                with self._write() as conn:
                    metadata.create_all(conn)
                    self._init_rows(conn)
                return
            except DBAPIError:
                # Another process created the same tables between our check and our CREATE
                # (possible on PostgreSQL); the second pass finds them.
                if attempt == 1:
                    raise

    @staticmethod
    def _init_rows(conn: Connection) -> None:
        version = conn.execute(
            sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
        ).scalar_one_or_none()
        if version is None:
            conn.execute(
                sa.insert(meta_table).values(key="schema_version", value=str(SCHEMA_VERSION))
            )
        elif not version.isdigit() or int(version) > SCHEMA_VERSION:
            raise DsrError(
                f"the state store has schema version {version}; "
                f"this dsr understands version {SCHEMA_VERSION}"
            )
        elif int(version) < SCHEMA_VERSION:
            # Every change so far only added tables, which create_all (same transaction) made.
            conn.execute(
                sa.update(meta_table)
                .where(meta_table.c.key == "schema_version")
                .values(value=str(SCHEMA_VERSION))
            )
        head = conn.execute(
            sa.select(audit_head_table.c.seq).where(audit_head_table.c.id == HEAD_ID)
        ).first()
        if head is None:
            # Only a store with no audit records gets a fresh head; a missing head next to
            # existing records is tampering and must stay visible to `verify_audit`.
            any_record = conn.execute(sa.select(audit_table.c.seq).limit(1)).first()
            if any_record is None:
                conn.execute(
                    sa.insert(audit_head_table).values(id=HEAD_ID, seq=0, hash=GENESIS_HASH)
                )

    def close(self) -> None:
        self._engine.dispose()

    # --- transactions --------------------------------------------------------------------

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """A transaction that holds SQLite's write lock from its first statement.

        A deferred SQLite transaction that reads and then writes fails at once with "database
        is locked" when another process wrote in between; `BEGIN IMMEDIATE` waits for the
        busy timeout instead. Other dialects lock rows with `FOR UPDATE` where it matters.
        """
        with self._engine.connect() as conn:
            if self._sqlite:
                conn.execution_options(**{_BEGIN_OPTION: "BEGIN IMMEDIATE"})
            with conn.begin():
                yield conn

    # --- the one-writer lock -------------------------------------------------------------

    @contextlib.contextmanager
    def lock(
        self,
        holder: str,
        *,
        timeout: float,
        on_wait: Callable[[LockInfo], None] | None = None,
    ) -> Iterator[LockInfo]:
        token = secrets.token_hex(16)
        deadline = time.monotonic() + max(timeout, 0.0)
        waited = False
        while True:
            mine, current = self._try_lock(holder, token)
            if mine is not None:
                break
            if current is None:
                # The lock was released or changed hands under us: look again almost at once.
                time.sleep(0.01)
                continue
            if time.monotonic() >= deadline:
                raise LockTimeout(f"state is locked by {current.describe()}; waited {timeout:g}s")
            if not waited and on_wait is not None:
                on_wait(current)
            waited = True
            time.sleep(max(0.0, min(LOCK_POLL_SECONDS, deadline - time.monotonic())))
        try:
            yield mine
        finally:
            with self._write() as conn:
                conn.execute(
                    sa.delete(lock_table).where(
                        lock_table.c.name == LOCK_NAME, lock_table.c.token == token
                    )
                )

    def _try_lock(self, holder: str, token: str) -> tuple[LockInfo | None, LockInfo | None]:
        """One attempt: (our LockInfo, None) if taken, (None, holder) if held by someone else,
        (None, None) if we lost a race and should look again."""
        now = datetime.now(UTC)
        mine = LockInfo(holder=holder, pid=os.getpid(), host=self._host, acquired_at=now)
        values = {
            "holder": holder,
            "pid": mine.pid,
            "host": self._host,
            "acquired_at": format_time(now),
            "token": token,
        }
        try:
            with self._write() as conn:
                row = conn.execute(
                    sa.select(lock_table).where(lock_table.c.name == LOCK_NAME).with_for_update()
                ).first()
                if row is None:
                    conn.execute(sa.insert(lock_table).values(name=LOCK_NAME, **values))
                    return mine, None
                current = LockInfo(
                    holder=row.holder,
                    pid=int(row.pid),
                    host=row.host,
                    acquired_at=parse_time(row.acquired_at),
                )
                if current.host != self._host or pid_alive(current.pid):
                    return None, current
                # Compare-and-swap on the token: only the attempt that saw this stale row wins.
                taken = conn.execute(
                    sa.update(lock_table)
                    .where(lock_table.c.name == LOCK_NAME, lock_table.c.token == row.token)
                    .values(**values)
                )
                if taken.rowcount != 1:
                    return None, None
                return LockInfo(
                    holder=holder,
                    pid=mine.pid,
                    host=self._host,
                    acquired_at=now,
                    took_over_stale=True,
                    replaced=current,
                ), None
        except IntegrityError:
            # Another process inserted the lock row between our SELECT and INSERT (a missing
            # row cannot be locked FOR UPDATE).
            return None, None

    # --- runs and the journal ------------------------------------------------------------

    def begin_run(self, plan_id: str, *, now: datetime) -> str:
        # Sortable: the start time first, then randomness so that two runs never collide.
        run_id = f"{now.astimezone(UTC):%Y%m%dT%H%M%S%fZ}-{secrets.token_hex(4)}"
        with self._write() as conn:
            conn.execute(
                sa.insert(runs_table).values(
                    id=run_id, plan_id=plan_id, started_at=format_time(now)
                )
            )
        return run_id

    def journal(
        self,
        run_id: str,
        change_id: str,
        status: str,
        *,
        now: datetime,
        message: str | None = None,
    ) -> None:
        if status not in JOURNAL_STATUSES:
            raise ValueError(f"journal status {status!r} is not one of {sorted(JOURNAL_STATUSES)}")
        at = format_time(now)
        with self._write() as conn:
            known = conn.execute(
                sa.select(runs_table.c.id).where(runs_table.c.id == run_id)
            ).first()
            if known is None:
                raise ValueError(f"unknown run {run_id!r}")
            conn.execute(
                sa.insert(journal_table).values(
                    run_id=run_id, change_id=change_id, status=status, at=at, message=message
                )
            )

    def journal_entries(self, run_id: str) -> list[JournalEntry]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(journal_table)
                .where(journal_table.c.run_id == run_id)
                .order_by(journal_table.c.id)
            ).all()
        return [
            JournalEntry(
                run_id=row.run_id,
                change_id=row.change_id,
                status=row.status,
                at=parse_time(row.at),
                message=row.message,
            )
            for row in rows
        ]

    def end_run(self, run_id: str, outcome: str, *, now: datetime) -> None:
        with self._write() as conn:
            done = conn.execute(
                sa.update(runs_table)
                .where(runs_table.c.id == run_id)
                .values(ended_at=format_time(now), outcome=outcome)
            )
            if done.rowcount != 1:
                raise ValueError(f"unknown run {run_id!r}")

    def last_run(self) -> RunInfo | None:
        with self._read() as conn:
            row = conn.execute(
                sa.select(runs_table).order_by(runs_table.c.id.desc()).limit(1)
            ).first()
        return None if row is None else _run_info(row)

    def unfinished_runs(self) -> list[RunInfo]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(runs_table)
                .where(runs_table.c.ended_at.is_(None))
                .order_by(runs_table.c.id)
            ).all()
        return [_run_info(row) for row in rows]

    # --- the audit log -------------------------------------------------------------------

    def append_audit(self, event: AuditEvent) -> AuditRecord:
        details_json = canonical_json(event.details)
        details: dict[str, Any] = json.loads(details_json)  # a private copy, as stored
        at = format_time(event.at)
        with self._write() as conn:
            head = conn.execute(
                sa.select(audit_head_table.c.seq, audit_head_table.c.hash)
                .where(audit_head_table.c.id == HEAD_ID)
                .with_for_update()
            ).first()
            if head is None:
                raise DsrError("the audit log has no head row: run `dsr audit verify`")
            seq = int(head.seq) + 1
            prev_hash = str(head.hash)
            fields: dict[str, Any] = {
                "seq": seq,
                "at": at,
                "run_id": event.run_id,
                "action": event.action,
                "system": event.system,
                "target": event.target,
                "outcome": event.outcome,
                "request": event.request,
                "details": details,
                "prev_hash": prev_hash,
            }
            digest = audit_hash(fields)
            conn.execute(
                sa.insert(audit_table).values(**{**fields, "details": details_json, "hash": digest})
            )
            conn.execute(
                sa.update(audit_head_table)
                .where(audit_head_table.c.id == HEAD_ID)
                .values(seq=seq, hash=digest)
            )
        return AuditRecord(
            seq=seq,
            at=parse_time(at),
            run_id=event.run_id,
            action=event.action,
            system=event.system,
            target=event.target,
            outcome=event.outcome,
            request=event.request,
            details=details,
            prev_hash=prev_hash,
            hash=digest,
        )

    def audit_records(self, request: str | None = None) -> list[AuditRecord]:
        query = sa.select(audit_table).order_by(audit_table.c.seq)
        if request is not None:
            query = query.where(audit_table.c.request == request)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            AuditRecord(
                seq=int(row.seq),
                at=parse_time(row.at),
                run_id=row.run_id,
                action=row.action,
                system=row.system,
                target=row.target,
                outcome=row.outcome,
                request=row.request,
                details=json.loads(row.details),
                prev_hash=row.prev_hash,
                hash=row.hash,
            )
            for row in rows
        ]

    def verify_audit(self) -> list[str]:
        with self._read() as conn:
            # Reading the head FOR SHARE (a no-op on SQLite, whose read transaction is already
            # a snapshot) holds appenders back, so the records read next match this head.
            head = conn.execute(
                sa.select(audit_head_table.c.seq, audit_head_table.c.hash)
                .where(audit_head_table.c.id == HEAD_ID)
                .with_for_update(read=True)
            ).first()
            rows = conn.execute(sa.select(audit_table).order_by(audit_table.c.seq)).all()
        problems: list[str] = []
        expected_seq, prev_hash = 1, GENESIS_HASH
        for row in rows:
            seq = int(row.seq)
            if seq != expected_seq:
                missing = (
                    f"record {expected_seq} is"
                    if seq == expected_seq + 1
                    else f"records {expected_seq}-{seq - 1} are"
                )
                problems.append(f"audit record {seq}: {missing} missing before it")
            elif row.prev_hash != prev_hash:
                problems.append(
                    f"audit record {seq}: prev_hash does not match the hash of record {seq - 1}"
                )
            try:
                details = json.loads(row.details)
            except ValueError:
                problems.append(f"audit record {seq}: details are not valid JSON")
            else:
                if audit_hash(_hashed_fields(row, details)) != row.hash:
                    problems.append(f"audit record {seq}: content does not match its hash")
            expected_seq, prev_hash = seq + 1, row.hash
        last_seq = expected_seq - 1
        if head is None:
            problems.append("audit head is missing")
        elif int(head.seq) > last_seq:
            problems.append(
                f"audit head is at record {head.seq} but the last record is {last_seq}: "
                "records were removed from the end"
            )
        elif int(head.seq) < last_seq:
            problems.append(
                f"audit head is at record {head.seq} but the last record is {last_seq}: "
                "the head was edited or records were added around it"
            )
        elif head.hash != prev_hash:
            problems.append(f"audit head hash does not match record {last_seq}")
        return problems

    # --- observations --------------------------------------------------------------------

    def record_observation(
        self, system: str, *, now: datetime, digest: str, error: str | None
    ) -> None:
        values = {"at": format_time(now), "digest": digest, "error": error}
        self._upsert(observations_table, observations_table.c.system, system, values)

    def _upsert(
        self, table: sa.Table, key_column: sa.Column[Any], key: str, values: dict[str, Any]
    ) -> None:
        """Update the row whose `key_column` is `key`, or insert it; one transaction."""
        for attempt in range(2):
            try:
                with self._write() as conn:
                    updated = conn.execute(
                        sa.update(table).where(key_column == key).values(**values)
                    )
                    if updated.rowcount == 0:
                        conn.execute(sa.insert(table).values({key_column.name: key, **values}))
                return
            except IntegrityError:
                # Another process inserted this key's first row concurrently; update it.
                if attempt == 1:
                    raise

    def observations(self) -> dict[str, Observation]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(observations_table).order_by(observations_table.c.system)
            ).all()
        return {
            row.system: Observation(
                system=row.system, at=parse_time(row.at), digest=row.digest, error=row.error
            )
            for row in rows
        }

    # --- tombstones ----------------------------------------------------------------------

    def record_tombstone(self, tombstone: Tombstone) -> None:
        if tombstone.subject_kind not in SUBJECT_KINDS:
            raise ValueError(
                f"tombstone {tombstone.request_id}: subject kind {tombstone.subject_kind!r} "
                f"is not one of {sorted(SUBJECT_KINDS)}"
            )
        for n, (kind, digest) in enumerate(tombstone.identities, start=1):
            # The value is never echoed: if it is not a hash it may be the raw identifier.
            if not _IDENTITY_HASH.fullmatch(digest):
                raise ValueError(
                    f"tombstone {tombstone.request_id}: identity {n} ({kind}) is not an "
                    "hmac-sha256:<key id>:<hex> hash"
                )
        values = {
            "subject_kind": tombstone.subject_kind,
            "identities": canonical_json([list(pair) for pair in tombstone.identities]),
            "systems": None if tombstone.systems is None else canonical_json(tombstone.systems),
            "completed_at": format_time(tombstone.completed_at),
            "receipt_hash": tombstone.receipt_hash,
        }
        self._upsert(tombstones_table, tombstones_table.c.request_id, tombstone.request_id, values)

    def tombstones(self) -> dict[str, Tombstone]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(tombstones_table).order_by(tombstones_table.c.request_id)
            ).all()
        return {
            row.request_id: Tombstone(
                request_id=row.request_id,
                subject_kind=row.subject_kind,
                identities=tuple((str(k), str(h)) for k, h in json.loads(row.identities)),
                systems=None if row.systems is None else tuple(json.loads(row.systems)),
                completed_at=parse_time(row.completed_at),
                receipt_hash=row.receipt_hash,
            )
            for row in rows
        }

    # --- request states ------------------------------------------------------------------

    def set_request_state(
        self, request_id: str, state: str, *, now: datetime, detail: str | None = None
    ) -> None:
        if state not in REQUEST_STATES:
            raise ValueError(f"request state {state!r} is not one of {sorted(REQUEST_STATES)}")
        values = {"state": state, "detail": detail, "at": format_time(now)}
        self._upsert(request_states_table, request_states_table.c.request_id, request_id, values)

    def request_states(self) -> dict[str, RequestState]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(request_states_table).order_by(request_states_table.c.request_id)
            ).all()
        return {
            row.request_id: RequestState(
                request_id=row.request_id,
                state=row.state,
                detail=row.detail,
                at=parse_time(row.at),
            )
            for row in rows
        }

    # --- refreshes -----------------------------------------------------------------------

    def record_refresh(
        self, system: str, *, now: datetime, status: str, message: str | None = None
    ) -> None:
        if status not in REFRESH_STATUSES:
            raise ValueError(f"refresh status {status!r} is not one of {sorted(REFRESH_STATUSES)}")
        at = format_time(now)
        with self._write() as conn:
            conn.execute(
                sa.insert(refreshes_table).values(
                    system=system, at=at, status=status, message=message
                )
            )

    def last_refreshes(self) -> dict[str, RefreshRecord]:
        # The latest per system in one pass: `at` first (runners may record out of order),
        # then the later insert when two share a timestamp.
        ranked = sa.select(
            refreshes_table,
            sa.func.row_number()
            .over(
                partition_by=refreshes_table.c.system,
                order_by=(refreshes_table.c.at.desc(), refreshes_table.c.id.desc()),
            )
            .label("rank"),
        ).subquery()
        with self._read() as conn:
            rows = conn.execute(
                sa.select(ranked).where(ranked.c.rank == 1).order_by(ranked.c.system)
            ).all()
        return {
            row.system: RefreshRecord(
                system=row.system, at=parse_time(row.at), status=row.status, message=row.message
            )
            for row in rows
        }

    # --- exports -------------------------------------------------------------------------

    def record_export(self, record: ExportRecord) -> None:
        values = {
            "path": record.path,
            "manifest_sha256": record.manifest_sha256,
            "rows": record.rows,
            "built_at": format_time(record.built_at),
            "expires_at": format_time(record.expires_at),
            "expired_at": None if record.expired_at is None else format_time(record.expired_at),
        }
        self._upsert(exports_table, exports_table.c.request_id, record.request_id, values)

    def exports(self) -> dict[str, ExportRecord]:
        with self._read() as conn:
            rows = conn.execute(sa.select(exports_table).order_by(exports_table.c.request_id)).all()
        return {
            row.request_id: ExportRecord(
                request_id=row.request_id,
                path=row.path,
                manifest_sha256=row.manifest_sha256,
                rows=row.rows,
                built_at=parse_time(row.built_at),
                expires_at=parse_time(row.expires_at),
                expired_at=None if row.expired_at is None else parse_time(row.expired_at),
            )
            for row in rows
        }


def _run_info(row: Any) -> RunInfo:
    return RunInfo(
        run_id=row.id,
        plan_id=row.plan_id,
        started_at=parse_time(row.started_at),
        ended_at=None if row.ended_at is None else parse_time(row.ended_at),
        outcome=row.outcome,
    )


def _share_sqlite_file(engine: Engine) -> None:
    """Let several processes share one SQLite file safely.

    WAL lets readers run while one process writes; the busy timeout makes a writer wait for
    another instead of failing. pysqlite's own transaction handling (which never begins a
    transaction for SELECT and cannot say IMMEDIATE) is switched off and SQLAlchemy emits
    BEGIN itself: the recipe in SQLAlchemy's SQLite docs, "Enabling Non-Legacy SQLite
    Transactional Modes", for Python < 3.12.
    """

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA busy_timeout = 30000")  # = SQLITE_BUSY_TIMEOUT_MS
            cursor.execute("PRAGMA journal_mode = WAL")
            # FULL: a journal row is on disk before the action it announces runs.
            cursor.execute("PRAGMA synchronous = FULL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    def on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(conn.get_execution_options().get(_BEGIN_OPTION, "BEGIN"))

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)
