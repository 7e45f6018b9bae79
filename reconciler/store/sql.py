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
import hashlib
import json
import re
import secrets
import time
from collections.abc import Callable, Iterator
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
from reconciler.store.chain import (
    Head,
    StoredRecord,
    audit_hash,
    chain_problems,
    cross_problems,
    head_mac,
    witness_problems,
)
from reconciler.store.locks import StoreLock
from reconciler.store.records import (
    GENESIS_HASH,
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
    HEAD_ID,
    SCHEMA_VERSION,
    audit_head_table,
    audit_table,
    canonical_json,
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


# Rows of store_meta that keep the audit chain's keying (the key itself never is here).
META_KEY_ID = "audit_key_id"
META_KEYED_FROM = "audit_keyed_from"
META_HEAD_MAC = "audit_head_mac"


def _meta(conn: Connection, key: str) -> str | None:
    value = conn.execute(
        sa.select(meta_table.c.value).where(meta_table.c.key == key)
    ).scalar_one_or_none()
    return None if value is None else str(value)


def _set_meta(conn: Connection, key: str, value: str) -> None:
    done = conn.execute(sa.update(meta_table).where(meta_table.c.key == key).values(value=value))
    if done.rowcount == 0:
        conn.execute(sa.insert(meta_table).values(key=key, value=value))


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

    # --- the audit log -------------------------------------------------------------------

    def append_audit(self, event: AuditEvent) -> AuditRecord:
        with self._write() as conn:
            return self._append(conn, event)

    def record_completion(self, event: AuditEvent, tombstone: Tombstone) -> AuditRecord:
        """The receipt of an erasure and its tombstone, in one transaction: a run killed in
        between leaves both or neither, so the next run never writes a second receipt."""
        values = self._tombstone_values(tombstone)
        with self._write() as conn:
            record = self._append(conn, event)
            values["receipt_hash"] = record.hash
            key = tombstones_table.c.request_id
            done = conn.execute(
                sa.update(tombstones_table).where(key == tombstone.request_id).values(**values)
            )
            if done.rowcount == 0:
                conn.execute(
                    sa.insert(tombstones_table).values(request_id=tombstone.request_id, **values)
                )
            # The receipt holds the request's facts now; the next cycle starts afresh.
            conn.execute(
                sa.delete(request_facts_table).where(
                    request_facts_table.c.request_id == tombstone.request_id
                )
            )
        return record

    def record_facts(self, request_id: str, facts: list[Fact], *, now: datetime) -> None:
        """Keeps each fact (one per kind, system and table; a later one replaces it)."""
        if not facts:
            return
        t = request_facts_table
        with self._write() as conn:
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

    def _append(self, conn: Connection, event: AuditEvent) -> AuditRecord:
        details_json = canonical_json(event.details)
        details: dict[str, Any] = json.loads(details_json)  # a private copy, as stored
        at = format_time(event.at)
        head = conn.execute(
            sa.select(audit_head_table.c.seq, audit_head_table.c.hash)
            .where(audit_head_table.c.id == HEAD_ID)
            .with_for_update()
        ).first()
        if head is None:
            raise DsrError("the audit log has no head row: run `dsr audit verify`")
        key = self._audit_secret(conn, int(head.seq) + 1)
        seq = int(head.seq) + 1
        prev_hash = str(head.hash)
        fields: dict[str, Any] = {
            "seq": seq,
            "at": at,
            "run_id": event.run_id,
            "action": event.action,
            "system": event.system,
            "target": event.target,
            "outcome": Outcome(event.outcome),
            "request": event.request,
            "details": details,
            "prev_hash": prev_hash,
        }
        digest = audit_hash(fields, key)
        conn.execute(
            sa.insert(audit_table).values(**{**fields, "details": details_json, "hash": digest})
        )
        conn.execute(
            sa.update(audit_head_table)
            .where(audit_head_table.c.id == HEAD_ID)
            .values(seq=seq, hash=digest)
        )
        if key is not None:
            _set_meta(conn, META_HEAD_MAC, head_mac(seq, digest, key))
        return AuditRecord(
            seq=seq,
            at=parse_time(at),
            run_id=event.run_id,
            action=event.action,
            system=event.system,
            target=event.target,
            outcome=Outcome(event.outcome),
            request=event.request,
            details=details,
            prev_hash=prev_hash,
            hash=digest,
        )

    def _audit_secret(self, conn: Connection, next_seq: int) -> bytes | None:
        """The key the next record is hashed with: the store's audit key, once the chain is
        keyed (it becomes keyed with the first record appended while a key is given); a
        keyed chain refuses a record without its key, or with another one."""
        key_id = _meta(conn, META_KEY_ID)
        if self._audit_key is None:
            if key_id is not None:
                raise DsrError(
                    f"the audit chain is keyed (key id {key_id}); dsr needs the audit key "
                    "(dsr.yaml audit.key) to append to it"
                )
            return None
        if key_id is None:
            _set_meta(conn, META_KEY_ID, self._audit_key.key_id)
            _set_meta(conn, META_KEYED_FROM, str(next_seq))
        elif key_id != self._audit_key.key_id:
            raise DsrError(
                f"the audit chain is keyed with key id {key_id}, but dsr.yaml audit.key_id is "
                f"{self._audit_key.key_id}"
            )
        return self._audit_key.secret

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
                outcome=Outcome(row.outcome),
                request=row.request,
                details=json.loads(row.details),
                prev_hash=row.prev_hash,
                hash=row.hash,
            )
            for row in rows
        ]

    def audit_head(self) -> tuple[int, str]:
        """(seq, hash) of the last record: what a CI log should witness after each apply."""
        with self._read() as conn:
            head = conn.execute(
                sa.select(audit_head_table.c.seq, audit_head_table.c.hash).where(
                    audit_head_table.c.id == HEAD_ID
                )
            ).first()
        return (int(head.seq), str(head.hash)) if head is not None else (0, GENESIS_HASH)

    def verify_audit(self, witness: tuple[int, str] | None = None) -> list[str]:
        with self._snapshot() as conn:
            # One snapshot for the head, the records and the state they vouch for, so they
            # match even while another run appends; no row lock, so a read-only role (and
            # transaction) may verify.
            row = conn.execute(
                sa.select(audit_head_table.c.seq, audit_head_table.c.hash).where(
                    audit_head_table.c.id == HEAD_ID
                )
            ).first()
            keyed_from = _meta(conn, META_KEYED_FROM)
            key_id = _meta(conn, META_KEY_ID)
            head = (
                None
                if row is None
                else Head(
                    int(row.seq),
                    str(row.hash),
                    _meta(conn, META_HEAD_MAC),
                    int(keyed_from) if keyed_from is not None else None,
                )
            )
            rows = conn.execute(sa.select(audit_table).order_by(audit_table.c.seq)).all()
            receipts = {
                r.request_id: r.receipt_hash
                for r in conn.execute(
                    sa.select(tombstones_table.c.request_id, tombstones_table.c.receipt_hash)
                )
            }
            built = {
                r.request_id: r.manifest_sha256
                for r in conn.execute(
                    sa.select(exports_table.c.request_id, exports_table.c.manifest_sha256)
                )
            }
        records = [
            StoredRecord(
                int(r.seq),
                r.at,
                r.run_id,
                r.action,
                r.system,
                r.target,
                r.outcome,
                r.request,
                r.details,
                r.prev_hash,
                r.hash,
            )
            for r in rows
        ]
        key = None
        problems: list[str] = []
        if key_id is not None and self._audit_key is not None:
            if key_id != self._audit_key.key_id:
                problems.append(
                    f"the audit chain is keyed with key id {key_id}, but dsr.yaml audit.key_id "
                    f"is {self._audit_key.key_id}"
                )
            else:
                key = self._audit_key.secret
        problems += chain_problems(records, head, key)
        problems += cross_problems(records, receipts, built)
        if witness is not None:
            problems += witness_problems(records, witness)
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
        for n, (kind, digest) in enumerate(tombstone.identities, start=1):
            # The value is never echoed: if it is not a hash it may be the raw identifier.
            if not _IDENTITY_HASH.fullmatch(digest):
                raise ValueError(
                    f"tombstone {tombstone.request_id}: identity {n} ({kind}) is not an "
                    "hmac-sha256:<key id>:<hex> hash"
                )
        values = self._tombstone_values(tombstone)
        self._upsert(tombstones_table, tombstones_table.c.request_id, tombstone.request_id, values)

    @staticmethod
    def _tombstone_values(tombstone: Tombstone) -> dict[str, Any]:
        return {
            "subject_kind": member(
                SubjectKind,
                tombstone.subject_kind,
                f"tombstone {tombstone.request_id}: subject kind",
            ).value,
            "identities": canonical_json([list(pair) for pair in tombstone.identities]),
            "systems": None if tombstone.systems is None else canonical_json(tombstone.systems),
            "completed_at": format_time(tombstone.completed_at),
            "receipt_hash": tombstone.receipt_hash,
        }

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
            audited = self._append(conn, event)
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
