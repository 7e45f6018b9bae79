"""The state store on SQLAlchemy Core: a SQLite file today, a PostgreSQL database tomorrow.

One code path for every dialect: tables are `sqlalchemy.Table`s created on open, every value
travels as a bound parameter, and the only dialect-specific code is how SQLite is told to share
its file between processes (WAL, a busy timeout, and `BEGIN IMMEDIATE` for writes). Writes that
must be serialised across processes (the lock, audit appends) take a write lock first: `BEGIN
IMMEDIATE` on SQLite, `SELECT ... FOR UPDATE` elsewhere. The audit log is `audit_log.py`,
which this store composes and lends its transactions to.

This module must not print, exit, hold state in module globals, or format values into SQL.
Datetimes are stored as fixed-width ISO 8601 UTC strings, so they sort as text.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError

from reconciler.connectors.engine import create_engine, describe_failure, scrub_url
from reconciler.desired.model import DEFAULT_TIMEOUTS, SubjectKind, Timeouts
from reconciler.errors import DsrError
from reconciler.privacy.identity import IdentityKey
from reconciler.privacy.withhold import withhold_values
from reconciler.store.audit_log import AuditLog, tombstone_values
from reconciler.store.locks import StoreLock
from reconciler.store.records import (
    IDENTITY_HASH_PATTERN,
    AuditEvent,
    AuditRecord,
    ExportRecord,
    Fact,
    FactKind,
    JournalEntry,
    JournalStatus,
    LockInfo,
    Observation,
    Outcome,
    RefreshRecord,
    RequestRecord,
    RequestState,
    RunInfo,
    Tombstone,
    member,
)
from reconciler.store.tables import (
    SCHEMA_VERSION,
    create_schema,
    export_intents_table,
    export_packages_table,
    exports_table,
    format_time,
    journal_table,
    meta_table,
    observations_table,
    parse_time,
    refreshes_table,
    request_facts_table,
    request_states_table,
    runs_table,
    tombstones_table,
)

_IDENTITY_HASH = re.compile(IDENTITY_HASH_PATTERN)
# Set on a Connection to choose how the SQLite begin hook starts its transaction.
_BEGIN_OPTION = "dsr_sqlite_begin"


_CHUNK = 500  # keys in one IN list


class StoreError(DsrError):
    """The state store could not be reached, or refused what was asked of it."""


class SqlStateStore:
    """`StateStore` on a SQLAlchemy engine. Build it with `open_store`."""

    def __init__(
        self,
        engine: Engine,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        audit_key: IdentityKey | None = None,
    ) -> None:
        self._engine = engine
        self._timeouts = timeouts
        self._audit_key = audit_key
        self._sqlite = engine.dialect.name == "sqlite"
        self._lock = StoreLock(engine, self._write)
        self._audit = AuditLog(
            audit_key, read=self._read, write=self._write, snapshot=self._snapshot
        )

    # --- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: str,
        *,
        readonly: bool = False,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        audit_key: IdentityKey | None = None,
    ) -> SqlStateStore:
        """The store at `url`, its tables created or moved to this version; `readonly`: as it
        is, never written (a dry run's plan), and an empty store when there is none yet."""
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise DsrError(f"state store: not a valid SQLAlchemy URL: {exc}") from None
        sqlite = parsed.get_backend_name() == "sqlite"
        database = parsed.database or ""
        on_disk = sqlite and database not in ("", ":memory:") and not database.startswith("file:")
        if readonly and on_disk and not Path(database).is_file():
            return cls.open("sqlite://", audit_key=audit_key)  # nothing applied yet: empty
        if on_disk:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # Read-only: the server refuses every write, whatever the role may do.
        pg_options = ["default_transaction_read_only=on"] if readonly else []
        try:
            engine = create_engine(parsed, timeouts=timeouts, pg_options=pg_options)
        except (ArgumentError, ImportError) as exc:
            raise DsrError(f"state store {scrub_url(parsed)}: {exc}") from None
        if engine.dialect.name == "sqlite":
            _share_sqlite_file(engine)
        store = cls(engine, timeouts, audit_key)
        try:
            if not readonly:
                store._create_schema()
            elif not store._check_schema():
                engine.dispose()
                return cls.open("sqlite://", audit_key=audit_key)
        except StoreError as exc:
            engine.dispose()
            raise DsrError(f"cannot open the state store {scrub_url(parsed)}: {exc}") from None
        except BaseException:
            engine.dispose()
            raise
        return store

    def _check_schema(self) -> bool:
        """For a read-only store: False when it has no tables yet; refuses a version other
        than this dsr's (an older one is moved by the next apply)."""
        with self._read() as conn:
            if not sa.inspect(conn).has_table(meta_table.name):
                return False
            version = conn.execute(
                sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
            ).scalar_one_or_none()
        if version != str(SCHEMA_VERSION):
            raise DsrError(
                f"the state store has schema version {version}; this dsr reads version "
                f"{SCHEMA_VERSION} (an older store is moved to it by the next dsr apply)"
            )
        return True

    def _create_schema(self) -> None:
        for attempt in range(2):
            try:
                with self._write() as conn:
                    create_schema(conn)
                return
            except (StoreError, IntegrityError):
                # Another process created the same tables between our check and our CREATE
                # (possible on PostgreSQL: a unique violation in its catalog); the second
                # pass finds them.
                if attempt == 1:
                    raise

    def close(self) -> None:
        self._engine.dispose()

    # --- transactions --------------------------------------------------------------------

    @contextlib.contextmanager
    def _failures(self) -> Iterator[None]:
        """Database errors as one line that names the store (never its password) and what
        went wrong; a unique-key clash stays an IntegrityError, for the callers that expect
        one (an insert that lost a race)."""
        started = time.monotonic()
        try:
            yield
        except IntegrityError:
            raise
        except DBAPIError as exc:
            url = self._engine.url
            reason = describe_failure(exc, url, self._timeouts, time.monotonic() - started)
            if reason is None:
                text = str(exc.orig if exc.orig is not None else exc).strip()
                reason = withhold_values(text.splitlines()[0] if text else type(exc).__name__)
            raise StoreError(f"state store {scrub_url(url)}: {reason}") from None

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._failures(), self._engine.connect() as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[Connection]:
        """A read transaction that sees one snapshot throughout (SQLite's read transactions
        always do; PostgreSQL's need REPEATABLE READ)."""
        with self._failures(), self._engine.connect() as conn:
            if not self._sqlite:
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """A transaction that holds SQLite's write lock from its first statement.

        A deferred SQLite transaction that reads and then writes fails at once with "database
        is locked" when another process wrote in between; `BEGIN IMMEDIATE` waits for the
        busy timeout instead. Other dialects lock rows with `FOR UPDATE` where it matters.
        """
        with self._failures(), self._engine.connect() as conn:
            if self._sqlite:
                conn.execution_options(**{_BEGIN_OPTION: "BEGIN IMMEDIATE"})
            with conn.begin():
                yield conn

    # --- the one-writer lock -------------------------------------------------------------

    def lock(
        self,
        holder: str,
        *,
        timeout: float,
        on_wait: Callable[[LockInfo], None] | None = None,
    ) -> contextlib.AbstractContextManager[LockInfo]:
        return self._lock.hold(holder, timeout=timeout, on_wait=on_wait)

    def lock_holder(self) -> LockInfo | None:
        return self._lock.held()

    def force_unlock(self) -> str:
        return self._lock.force_release()

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
        status: JournalStatus,
        *,
        now: datetime,
        message: str | None = None,
    ) -> None:
        status = member(JournalStatus, status, "journal status")
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

    def record_batch(
        self,
        run_id: str,
        *,
        now: datetime,
        journal: Sequence[tuple[str, JournalStatus, str | None]] = (),
        audit: Sequence[AuditEvent] = (),
        completions: Sequence[tuple[AuditEvent, Tombstone]] = (),
    ) -> list[AuditRecord]:
        at = format_time(now)
        entries = [
            {
                "run_id": run_id,
                "change_id": change_id,
                "status": member(JournalStatus, status, "journal status"),
                "at": at,
                "message": message,
            }
            for change_id, status, message in journal
        ]
        with self._write() as conn:
            known = conn.execute(
                sa.select(runs_table.c.id).where(runs_table.c.id == run_id)
            ).first()
            if known is None:
                raise ValueError(f"unknown run {run_id!r}")
            records = self._audit.append_many_in(conn, audit)
            records += self._audit.complete_many_in(conn, completions)
            if entries:
                conn.execute(sa.insert(journal_table), entries)
        return records

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
                status=JournalStatus(row.status),
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

    # --- the audit log (audit_log.py) --------------------------------------------------

    def append_audit(self, event: AuditEvent) -> AuditRecord:
        return self._audit.append(event)

    def record_completion(self, event: AuditEvent, tombstone: Tombstone) -> AuditRecord:
        return self._audit.record_completion(event, tombstone)

    def audit_records(self, request: str | None = None) -> list[AuditRecord]:
        return self._audit.records(request)

    def audit_records_of(self, requests: Sequence[str]) -> dict[str, list[AuditRecord]]:
        return self._audit.records_of(requests)

    def audit_head(self) -> tuple[int, str]:
        return self._audit.head()

    def verify_audit(self, witness: tuple[int, str] | None = None) -> list[str]:
        return self._audit.verify(witness)

    # --- facts kept for an open request's receipt ----------------------------------------

    def record_facts(self, request_id: str, facts: list[Fact], *, now: datetime) -> None:
        """Keeps each fact (one per kind, system and table; a later one replaces it)."""
        if not facts:
            return
        with self._write() as conn:
            _record_facts(conn, request_id, facts, now)

    def request_facts(self) -> dict[str, tuple[Fact, ...]]:
        t = request_facts_table
        with self._read() as conn:
            rows = conn.execute(
                sa.select(t).order_by(t.c.request_id, t.c.kind, t.c.system, t.c.table_name)
            ).all()
        found: dict[str, list[Fact]] = {}
        for r in rows:
            found.setdefault(r.request_id, []).append(
                Fact(FactKind(r.kind), r.system, r.table_name, int(r.rows), r.reason, r.masked)
            )
        return {rid: tuple(facts) for rid, facts in found.items()}

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
        for n, (kind, digest) in enumerate(tombstone.identities, start=1):
            # The value is never echoed: if it is not a hash it may be the raw identifier.
            if not _IDENTITY_HASH.fullmatch(digest):
                raise ValueError(
                    f"tombstone {tombstone.request_id}: identity {n} ({kind}) is not an "
                    "hmac-sha256:<key id>:<hex> hash"
                )
        values = tombstone_values(tombstone)
        self._upsert(tombstones_table, tombstones_table.c.request_id, tombstone.request_id, values)

    def tombstones(self) -> dict[str, Tombstone]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(tombstones_table).order_by(tombstones_table.c.request_id)
            ).all()
        return {
            row.request_id: Tombstone(
                request_id=row.request_id,
                subject_kind=SubjectKind(row.subject_kind),
                identities=tuple((str(k), str(h)) for k, h in json.loads(row.identities)),
                systems=None if row.systems is None else tuple(json.loads(row.systems)),
                completed_at=parse_time(row.completed_at),
                receipt_hash=row.receipt_hash,
            )
            for row in rows
        }

    # --- request states ------------------------------------------------------------------

    def set_request_state(
        self, request_id: str, state: RequestState, *, now: datetime, detail: str | None = None
    ) -> None:
        values = {
            "state": member(RequestState, state, "request state").value,
            "detail": detail,
            "at": format_time(now),
        }
        self._upsert(request_states_table, request_states_table.c.request_id, request_id, values)

    def record_requests(
        self,
        states: Mapping[str, tuple[RequestState, str | None]],
        facts: Mapping[str, list[Fact]],
        *,
        now: datetime,
    ) -> None:
        at = format_time(now)
        rows = [
            {
                "request_id": rid,
                "state": member(RequestState, state, "request state").value,
                "detail": detail,
                "at": at,
            }
            for rid, (state, detail) in states.items()
        ]
        t = request_states_table
        with self._write() as conn:
            ids = list(states)
            for i in range(0, len(ids), _CHUNK):
                conn.execute(sa.delete(t).where(t.c.request_id.in_(ids[i : i + _CHUNK])))
            if rows:
                conn.execute(sa.insert(t), rows)
            for rid, found in facts.items():
                _record_facts(conn, rid, found, now)

    def request_states(self) -> dict[str, RequestRecord]:
        with self._read() as conn:
            rows = conn.execute(
                sa.select(request_states_table).order_by(request_states_table.c.request_id)
            ).all()
        return {
            row.request_id: RequestRecord(
                request_id=row.request_id,
                state=RequestState(row.state),
                detail=row.detail,
                at=parse_time(row.at),
            )
            for row in rows
        }

    # --- refreshes -----------------------------------------------------------------------

    def record_refresh(
        self, system: str, *, now: datetime, status: Outcome, message: str | None = None
    ) -> None:
        if status not in (Outcome.SUCCEEDED, Outcome.FAILED):
            raise ValueError(f"refresh status {status!r} is not one of succeeded, failed")
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
                system=row.system,
                at=parse_time(row.at),
                status=Outcome(row.status),
                message=row.message,
            )
            for row in rows
        }

    # --- exports -------------------------------------------------------------------------

    def record_export(self, record: ExportRecord) -> None:
        values = _export_values(record)
        self._upsert(exports_table, exports_table.c.request_id, record.request_id, values)

    def record_export_change(self, event: AuditEvent, record: ExportRecord) -> AuditRecord:
        """An export's record and the audit record of its build or expiry, in one transaction:
        a run killed in between leaves both or neither, so an export record never lacks the
        audit record that vouches for it."""
        key = exports_table.c.request_id
        with self._write() as conn:
            audited = self._audit.append_in(conn, event)
            values = _export_values(record)
            done = conn.execute(
                sa.update(exports_table).where(key == record.request_id).values(values)
            )
            if done.rowcount == 0:
                conn.execute(
                    sa.insert(exports_table).values(request_id=record.request_id, **values)
                )
        return audited

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

    # --- export packages (a shared store's outbox) -------------------------------------

    def put_package(self, request_id: str, data: bytes, *, now: datetime) -> bool:
        """Keeps a package; False, changing nothing, if the request already has one."""
        values = {
            "request_id": request_id,
            "data": data,
            "sha256": hashlib.sha256(data).hexdigest(),
            "stored_at": format_time(now),
        }
        try:
            with self._write() as conn:
                conn.execute(sa.insert(export_packages_table).values(**values))
        except IntegrityError:
            return False
        return True

    def record_export_intent(self, request_id: str, manifest_sha256: str, *, now: datetime) -> None:
        values = {"manifest_sha256": manifest_sha256, "at": format_time(now)}
        self._upsert(export_intents_table, export_intents_table.c.request_id, request_id, values)

    def export_intent(self, request_id: str) -> str | None:
        with self._read() as conn:
            value = conn.execute(
                sa.select(export_intents_table.c.manifest_sha256).where(
                    export_intents_table.c.request_id == request_id
                )
            ).scalar_one_or_none()
        return None if value is None else str(value)

    def package(self, request_id: str) -> bytes | None:
        with self._read() as conn:
            data = conn.execute(
                sa.select(export_packages_table.c.data).where(
                    export_packages_table.c.request_id == request_id
                )
            ).scalar_one_or_none()
        return None if data is None else bytes(data)

    def delete_package(self, request_id: str) -> bool:
        with self._write() as conn:
            done = conn.execute(
                sa.delete(export_packages_table).where(
                    export_packages_table.c.request_id == request_id
                )
            )
        return bool(done.rowcount)


def _record_facts(conn: Connection, request_id: str, facts: list[Fact], now: datetime) -> None:
    t = request_facts_table
    for f in facts:
        where = sa.and_(
            t.c.request_id == request_id,
            t.c.kind == f.kind.value,
            t.c.system == f.system,
            t.c.table_name == f.table,
        )
        conn.execute(sa.delete(t).where(where))
        conn.execute(
            sa.insert(t).values(
                request_id=request_id,
                kind=f.kind.value,
                system=f.system,
                table_name=f.table,
                rows=f.rows,
                reason=f.reason,
                masked=f.masked,
                at=format_time(now),
            )
        )


def _run_info(row: Any) -> RunInfo:
    return RunInfo(
        run_id=row.id,
        plan_id=row.plan_id,
        started_at=parse_time(row.started_at),
        ended_at=None if row.ended_at is None else parse_time(row.ended_at),
        outcome=row.outcome,
    )


def _share_sqlite_file(engine: Engine) -> None:
    """Let several processes share one SQLite file safely (on top of `engine.create_engine`'s
    busy timeout and foreign keys).

    WAL lets readers run while one process writes. pysqlite's own transaction handling (which
    never begins a transaction for SELECT and cannot say IMMEDIATE) is switched off and
    SQLAlchemy emits BEGIN itself: the recipe in SQLAlchemy's SQLite docs, "Enabling
    Non-Legacy SQLite Transactional Modes", for Python < 3.12.
    """

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            # FULL: a journal row is on disk before the action it announces runs.
            cursor.execute("PRAGMA synchronous = FULL")
        finally:
            cursor.close()

    def on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(conn.get_execution_options().get(_BEGIN_OPTION, "BEGIN"))

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", on_begin)


def _export_values(record: ExportRecord) -> dict[str, Any]:
    return {
        "path": record.path,
        "manifest_sha256": record.manifest_sha256,
        "rows": record.rows,
        "built_at": format_time(record.built_at),
        "expires_at": format_time(record.expires_at),
        "expired_at": None if record.expired_at is None else format_time(record.expired_at),
    }
