"""What dsr records about its own work: the closed sets of states and outcomes, and the frozen
records the state store takes and returns.

Pure values, shared by every stage: observing reads tombstones, refreshes and export records
back as facts (`observe.model.Observed` holds these very types); the planner judges them; the
executor writes them; the renderers show them. Nothing here does I/O, reads the clock or
imports SQLAlchemy; `store/sql.py` is the one implementation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from reconciler.desired.model import SubjectKind

# prev_hash of the first audit record.
GENESIS_HASH = "0" * 64

# The only form in which a tombstone may hold an identity: `hmac-sha256:<key id>:<hex>`.
IDENTITY_HASH_PATTERN = r"hmac-sha256:[A-Za-z0-9_-]+:[0-9a-f]{64}"


E = TypeVar("E", bound=StrEnum)


def member(kind: type[E], value: str, what: str) -> E:
    """`value` as a member of the closed set `kind`; ValueError naming `what` otherwise."""
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(m.value for m in kind)
        raise ValueError(f"{what} {value!r} is not one of {known}") from None


class RequestState(StrEnum):
    """Where a request stands, as the plan sees it and the store keeps it."""

    PENDING = "pending"  # actions planned, not yet carried out
    WAITING = "waiting"  # on the owner of a source dsr may not write
    BLOCKED = "blocked"  # a system cannot be read, or a conflict must be resolved
    HELD = "held"  # a legal hold stops the erasure
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    AWAITING_APPROVAL = "awaiting_approval"  # an export no tenant admin has approved yet
    READY = "ready"  # an export package is in the outbox
    EXPIRED = "expired"  # the package was deleted; the audit record stays
    DELIVERED = "delivered"  # someone recorded handing the package to the subject
    NO_DATA_FOUND = "no_data_found"  # nothing of the subject was found anywhere

    @property
    def finished(self) -> bool:
        """The request has its answer: a deadline no longer applies (an erasure stays
        re-checked all the same)."""
        return self in _FINISHED


_FINISHED = frozenset(
    {
        RequestState.COMPLETED,
        RequestState.CANCELLED,
        RequestState.EXPIRED,
        RequestState.DELIVERED,
        RequestState.NO_DATA_FOUND,
    }
)


class Outcome(StrEnum):
    """How one change of a run ended; the audit log and the refresh history use it too."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # a change it depends on failed
    WAITING = "waiting"  # it waits on a source owner, or on a change that waits
    INTERRUPTED = "interrupted"  # the run was killed while it ran (recorded by the next run)


class JournalStatus(StrEnum):
    """One committed step of one change in a run's journal."""

    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


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
    status: JournalStatus
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
    outcome: Outcome
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
    outcome: Outcome
    request: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str

    @property
    def event(self) -> AuditEvent:
        """The event as it was appended."""
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
    absent, so a subject who comes back (a re-sync, a restored backup) is erased again, even
    when the request file is gone.

    `identities` are (type, `hmac-sha256:<key id>:<hex>`) pairs, never raw values; `systems`
    None means all systems. `receipt_hash` is the hash of the audit record holding the receipt.
    """

    request_id: str
    subject_kind: SubjectKind
    identities: tuple[tuple[str, str], ...]
    systems: tuple[str, ...] | None
    completed_at: datetime
    receipt_hash: str = ""


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """Where a request stood after the last apply, set at `at`.

    `detail` holds counts and reasons only, never a value read from a system.
    """

    request_id: str
    state: RequestState
    detail: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class RefreshRecord:
    """One refresh of a system: `succeeded`, or `failed` with its message."""

    system: str
    at: datetime
    status: Outcome
    message: str | None = None


@dataclass(frozen=True, slots=True)
class ExportRecord:
    """An export package built once for a request: where, its manifest's digest, when it
    expires, and when it was deleted (None while it is still in the outbox)."""

    request_id: str
    path: str  # workspace-relative
    manifest_sha256: str
    rows: int
    built_at: datetime
    expires_at: datetime
    expired_at: datetime | None = None


class FactKind(StrEnum):
    """What dsr saw or did for a request while it was open, kept until its receipt is written:
    the receipt must tell the whole story, whatever path the request took."""

    RETAINED = "retained"  # rows kept (as they are, or masked), with the reason
    AWAITED = "awaited"  # rows a source's owner had to delete
    ACTED = "acted"  # rows dsr deleted, masked or purged


@dataclass(frozen=True, slots=True)
class Fact:
    kind: FactKind
    system: str
    table: str
    rows: int
    reason: str = ""
    masked: bool = False
