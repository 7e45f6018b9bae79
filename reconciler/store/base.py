"""The state store's contract: the `StateStore` protocol and the values it takes and returns.

The reconciler's runtime state (the one-writer lock, runs and their journal, the hash-chained
audit log, the last observation of each system) lives behind this protocol so that callers
never see SQL, engines or dialects. This module must not do I/O, import SQLAlchemy or read the
clock; implementations live next to it (`sql.py`).
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

    def close(self) -> None: ...
