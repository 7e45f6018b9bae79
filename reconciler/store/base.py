"""The state store's contract: the `StateStore` protocol and the values it takes and returns.

The reconciler's runtime state (the one-writer lock, runs and their journal, the hash-chained
audit log, the last observation of each system, the tombstones of completed erasures, the state
of each request and the refresh history of each system) lives behind this protocol so that
callers never see SQL, engines or dialects. This module must not do I/O, import SQLAlchemy or
read the clock; implementations live next to it (`sql.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

# The journal's closed set of statuses for one change of one run.
JOURNAL_STATUSES = frozenset({"started", "succeeded", "failed", "skipped"})

# prev_hash of the first audit record.
GENESIS_HASH = "0" * 64

# The closed set of states a request can be in, as `set_request_state` accepts them.
REQUEST_STATES = frozenset(
    {
        "pending",
        "waiting",
        "blocked",
        "held",
        "completed",
        "cancelled",
        "awaiting_approval",
        "ready",
        "expired",
    }
)

# How a refresh of a system ended.
REFRESH_STATUSES = frozenset({"succeeded", "failed"})

# Who a tombstone is about: a customer, or a user of the platform.
SUBJECT_KINDS = frozenset({"customer", "user"})

# The only form in which a tombstone may hold an identity: `hmac-sha256:<key id>:<hex>`.
IDENTITY_HASH_PATTERN = r"hmac-sha256:[A-Za-z0-9_-]+:[0-9a-f]{64}"


@dataclass(frozen=True, slots=True)
class LockInfo:
    """Who holds (or now holds) the one-writer lock.

    `took_over_stale` is true when the lock was left behind by a dead process on this host and
    was taken over; `replaced` then says who that was, so the CLI can tell the operator.
    """

    holder: str
    pid: int
    host: str
    acquired_at: datetime
    took_over_stale: bool = False
    replaced: LockInfo | None = None

    def describe(self) -> str:
        """`apply (pid 123 on host h) since 2026-11-29T11:30:00+00:00`, for messages."""
        since = self.acquired_at.isoformat(timespec="seconds")
        return f"{self.holder} (pid {self.pid} on host {self.host}) since {since}"


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One run of `apply`; `ended_at` and `outcome` stay None for a run that was killed."""

    run_id: str
    plan_id: str
    started_at: datetime
    ended_at: datetime | None = None
    outcome: str | None = None


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """One committed step of a run: a change started, succeeded, failed or was skipped."""

    run_id: str
    change_id: str
    status: str
    at: datetime
    message: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """What happened, to be appended to the audit log.

    `details` holds JSON-serialisable counts and digests only; callers guarantee that no raw
    personal data ends up here, because audit records are never erased.
    """

    at: datetime
    run_id: str
    action: str
    system: str
    target: str
    outcome: str
    request: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """An `AuditEvent` as stored: its place in the chain and the hashes that link it.

    `hash` is the SHA-256 hex of the canonical JSON (sorted keys, no spaces) of every other
    field, `at` as stored (ISO 8601 UTC); `prev_hash` is the previous record's `hash`, or 64
    zeros for the first record.
    """

    seq: int
    at: datetime
    run_id: str
    action: str
    system: str
    target: str
    outcome: str
    request: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str

    @property
    def event(self) -> AuditEvent:
        return AuditEvent(
            at=self.at,
            run_id=self.run_id,
            action=self.action,
            system=self.system,
            target=self.target,
            outcome=self.outcome,
            request=self.request,
            details=dict(self.details),
        )


@dataclass(frozen=True, slots=True)
class Observation:
    """The last time a system was observed: the digest of what was seen, or the error."""

    system: str
    at: datetime
    digest: str
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Tombstone:
    """A completed erasure. It stays desired: every plan re-checks that the subject is still
    absent, so a subject who comes back (a re-sync, a restored backup) is erased again.

    `identities` are (type, `hmac-sha256:<key id>:<hex>`) pairs, never raw values; `systems`
    None means all systems. `receipt_hash` is the hash of the audit record holding the receipt.
    """

    request_id: str
    subject_kind: str
    identities: tuple[tuple[str, str], ...]
    systems: tuple[str, ...] | None
    completed_at: datetime
    receipt_hash: str


@dataclass(frozen=True, slots=True)
class RequestState:
    """Where a request stands (one of `REQUEST_STATES`), as last set at `at`.

    `detail` holds counts and reasons only, never a value read from a system.
    """

    request_id: str
    state: str
    detail: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class RefreshRecord:
    """One refresh of a system: `succeeded`, or `failed` with its message."""

    system: str
    at: datetime
    status: str
    message: str | None = None


@dataclass(frozen=True, slots=True)
class ExportRecord:
    """An export package built once for a request: where, its manifest's digest, when it
    expires, and when it was deleted (None while it is still in the outbox)."""

    request_id: str
    path: str
    manifest_sha256: str
    rows: int
    built_at: datetime
    expires_at: datetime
    expired_at: datetime | None = None


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
        waiting, then raises `LockTimeout` naming the holder. A lock left by a dead process on
        this host is taken over (`LockInfo.took_over_stale`).
        """
        ...

    # --- runs and the journal ---
    def begin_run(self, plan_id: str, *, now: datetime) -> str: ...

    def journal(
        self,
        run_id: str,
        change_id: str,
        status: str,
        *,
        now: datetime,
        message: str | None = None,
    ) -> None:
        """Record one step; committed (durable) when this returns, before the action runs."""
        ...

    def journal_entries(self, run_id: str) -> list[JournalEntry]: ...

    def end_run(self, run_id: str, outcome: str, *, now: datetime) -> None: ...

    def last_run(self) -> RunInfo | None: ...

    def unfinished_runs(self) -> list[RunInfo]:
        """Runs begun but never ended (killed), oldest first."""
        ...

    # --- the audit log: append-only, hash-chained ---
    def append_audit(self, event: AuditEvent) -> AuditRecord: ...

    def audit_records(self, request: str | None = None) -> list[AuditRecord]: ...

    def verify_audit(self) -> list[str]:
        """Problems found in the audit chain, one line each; [] means it is intact."""
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

        Raises ValueError for an unknown subject kind or an identity that is not a keyed hash.
        """
        ...

    def tombstones(self) -> dict[str, Tombstone]:
        """Every tombstone, by request id."""
        ...

    # --- request states ---
    def set_request_state(
        self, request_id: str, state: str, *, now: datetime, detail: str | None = None
    ) -> None:
        """Insert or replace the state of a request; ValueError if not one of REQUEST_STATES."""
        ...

    def request_states(self) -> dict[str, RequestState]:
        """The current state of every request, by request id."""
        ...

    # --- refreshes ---
    def record_refresh(
        self, system: str, *, now: datetime, status: str, message: str | None = None
    ) -> None:
        """Append one refresh to the system's history (kept, never replaced).

        Raises ValueError if `status` is not one of REFRESH_STATUSES.
        """
        ...

    def last_refreshes(self) -> dict[str, RefreshRecord]:
        """The latest refresh of each system (latest `at`; the later record on a tie)."""
        ...

    # --- exports ---
    def record_export(self, record: ExportRecord) -> None:
        """Upsert by request id (expiry sets `expired_at`)."""
        ...

    def exports(self) -> dict[str, ExportRecord]: ...

    def close(self) -> None: ...
