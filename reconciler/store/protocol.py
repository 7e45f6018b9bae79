"""The state store's contract: the `StateStore` protocol.

The reconciler's runtime state (the one-writer lock, runs and their journal, the hash-chained
audit log, the last observation of each system, the tombstones of completed erasures, the state
of each request, the refresh history of each system and the export packages built) lives behind
this protocol so that callers never see SQL, engines or dialects. The values it takes and
returns are in `records.py`. This module must not do I/O, import SQLAlchemy or read the clock;
the implementation is `sql.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Protocol

from reconciler.store.records import (
    AuditEvent,
    AuditRecord,
    ExportRecord,
    Fact,
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
)


class StateStore(Protocol):
    """Runtime state of the reconciler. All datetimes passed in must be timezone-aware."""

    # --- the one-writer lock ---
    def lock(
        self,
        holder: str,
        *,
        timeout: float,
        on_wait: Callable[[LockInfo], None] | None = None,
    ) -> AbstractContextManager[LockInfo]:
        """Hold the one-writer lock for the `with` block; released on exit, even on errors.

        Waits up to `timeout` seconds, calling `on_wait(current_holder)` once when it starts
        waiting, then raises `LockTimeout` naming the holder. The lock dies with its holder;
        the record a dead holder left is taken over (`LockInfo.took_over_stale`).
        """
        ...

    def lock_holder(self) -> LockInfo | None:
        """Who holds the lock right now, or None when it is free."""
        ...

    def force_unlock(self) -> str:
        """Release the lock of a stuck or dead holder; says what was released."""
        ...

    # --- runs and the journal ---
    def begin_run(self, plan_id: str, *, now: datetime) -> str: ...

    def journal(
        self,
        run_id: str,
        change_id: str,
        status: JournalStatus,
        *,
        now: datetime,
        message: str | None = None,
    ) -> None:
        """Record one step; committed (durable) when this returns, before the action runs."""
        ...

    def record_batch(
        self,
        run_id: str,
        *,
        now: datetime,
        journal: Sequence[tuple[str, JournalStatus, str | None]] = (),
        audit: Sequence[AuditEvent] = (),
        completions: Sequence[tuple[AuditEvent, Tombstone]] = (),
    ) -> list[AuditRecord]:
        """In one transaction, committed when this returns: the audit records (in order),
        then each completion (a receipt and its tombstone, as `record_completion`), then the
        journal entries (change id, status, message). Returns the records appended."""
        ...

    def journal_entries(self, run_id: str) -> list[JournalEntry]: ...

    def end_run(self, run_id: str, outcome: str, *, now: datetime) -> None: ...

    def last_run(self) -> RunInfo | None: ...

    def unfinished_runs(self) -> list[RunInfo]:
        """Runs begun but never ended (killed), oldest first."""
        ...

    # --- the audit log: append-only, hash-chained ---
    def append_audit(self, event: AuditEvent) -> AuditRecord: ...

    def record_completion(self, event: AuditEvent, tombstone: Tombstone) -> AuditRecord:
        """An erasure's receipt and its tombstone (pointing at it), in one transaction."""
        ...

    def audit_records(self, request: str | None = None) -> list[AuditRecord]: ...

    def audit_records_of(self, requests: Sequence[str]) -> dict[str, list[AuditRecord]]:
        """`audit_records(r)` for each of `requests`, read at once."""
        ...

    def audit_head(self) -> tuple[int, str]:
        """(seq, hash) of the last audit record, for a CI log to witness."""
        ...

    def verify_audit(self, witness: tuple[int, str] | None = None) -> list[str]:
        """Problems found in the audit chain and in the state it vouches for (tombstones,
        export records), one line each; [] means it is intact. `witness`: a head seen
        earlier (in a CI log), which must still be in the chain."""
        ...

    # --- observations ---
    def record_observation(
        self, system: str, *, now: datetime, digest: str, error: str | None
    ) -> None: ...

    def observations(self) -> dict[str, Observation]:
        """The last observation of each system, by system name."""
        ...

    # --- tombstones of completed erasures ---
    def record_tombstone(self, tombstone: Tombstone) -> None:
        """Insert or replace the tombstone of `tombstone.request_id` (a re-erasure updates it).

        Raises ValueError for an identity that is not a keyed hash.
        """
        ...

    def record_facts(self, request_id: str, facts: list[Fact], *, now: datetime) -> None:
        """What an open request's receipt will need (see `FactKind`); cleared with it."""
        ...

    def request_facts(self) -> dict[str, tuple[Fact, ...]]: ...

    def tombstones(self) -> dict[str, Tombstone]:
        """Every tombstone, by request id."""
        ...

    # --- request states ---
    def set_request_state(
        self, request_id: str, state: RequestState, *, now: datetime, detail: str | None = None
    ) -> None:
        """Insert or replace the state of a request."""
        ...

    def record_requests(
        self,
        states: Mapping[str, tuple[RequestState, str | None]],
        facts: Mapping[str, list[Fact]],
        *,
        now: datetime,
    ) -> None:
        """In one transaction: the state (and detail) of each request, as `set_request_state`,
        and the facts of each, as `record_facts`."""
        ...

    def request_states(self) -> dict[str, RequestRecord]:
        """The current state of every request, by request id."""
        ...

    # --- refreshes ---
    def record_refresh(
        self, system: str, *, now: datetime, status: Outcome, message: str | None = None
    ) -> None:
        """Append one refresh (succeeded or failed) to the system's history (kept, never
        replaced)."""
        ...

    def last_refreshes(self) -> dict[str, RefreshRecord]:
        """The latest refresh of each system (latest `at`; the later record on a tie)."""
        ...

    # --- exports ---
    def record_export(self, record: ExportRecord) -> None:
        """Upsert by request id (expiry sets `expired_at`)."""
        ...

    def record_export_change(self, event: AuditEvent, record: ExportRecord) -> AuditRecord:
        """`record_export` and the audit record of that build or expiry, in one transaction."""
        ...

    def exports(self) -> dict[str, ExportRecord]: ...

    # --- export packages (the outbox of a shared store) ---
    def put_package(self, request_id: str, data: bytes, *, now: datetime) -> bool:
        """Keep a package until it expires; False, changing nothing, if one is kept already."""
        ...

    def package(self, request_id: str) -> bytes | None: ...

    def record_export_intent(self, request_id: str, manifest_sha256: str, *, now: datetime) -> None:
        """Before a package is published: the digest of the manifest it will have."""
        ...

    def export_intent(self, request_id: str) -> str | None: ...

    def delete_package(self, request_id: str) -> bool: ...

    def close(self) -> None: ...
