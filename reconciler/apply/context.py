"""What the executor and its handlers share: the context changes run against, and the result
of one change.

No action is carried out here; `handlers.py` does that, `executor.py` runs the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from reconciler.connectors import Connector
from reconciler.desired.model import Desired
from reconciler.observe.model import Observed
from reconciler.plan.actions import Action
from reconciler.plan.model import Change
from reconciler.privacy.identity import IdentityKey, hash_identity
from reconciler.store import AuditEvent, AuditRecord, Outcome, StateStore, Tombstone


@dataclass(frozen=True, slots=True)
class ChangeResult:
    """How one change of the plan ended: `rows` it touched, and a message when it did not
    succeed (never a value read from a system)."""

    change: Change
    status: Outcome
    rows: int = 0
    message: str | None = None


@dataclass(slots=True)
class Context:
    """What the changes run against. `reobserve` looks at the systems again (after
    refreshes, to verify); the executor calls it lazily, once per batch of writes."""

    desired: Desired
    observed: Observed
    connectors: Mapping[str, Connector]
    store: StateStore
    key: IdentityKey
    workspace: Path
    reobserve: Callable[[], Observed]
    clock: Callable[[], datetime]
    should_stop: Callable[[], bool] = lambda: False  # asked to stop at the next boundary
    run_id: str = ""
    done: list[ChangeResult] = field(default_factory=list)  # this run's results so far
    # Receipts and tombstones made in this batch, written by the executor with its journal.
    completions: list[tuple[AuditEvent, Tombstone]] = field(default_factory=list)
    # The audit records of the requests in this batch, read at once (see `records_of`).
    records: dict[str, list[AuditRecord]] = field(default_factory=dict)
    _refreshed: tuple[int, dict[str, ChangeResult]] = (0, {})
    _fresh: Observed | None = None

    def __post_init__(self) -> None:
        self._fresh = self.observed  # made under the lock, just now: fresh until a write

    def fresh(self) -> Observed:
        if self._fresh is None:
            self._fresh = self.reobserve()
        return self._fresh

    def changed(self) -> None:
        self._fresh = None

    def records_of(self, request: str) -> list[AuditRecord]:
        """A request's audit records, oldest first: read with its batch's, or now."""
        found = self.records.get(request)
        return found if found is not None else self.store.audit_records(request)

    def refreshed(self) -> dict[str, ChangeResult]:
        """The refreshes this run carried out so far (or tried), by system."""
        seen, found = self._refreshed
        if seen != len(self.done):
            found = {o.change.system: o for o in self.done if o.change.action is Action.REFRESH}
            self._refreshed = (len(self.done), found)
        return found

    def audit_event(
        self, change: Change, result: ChangeResult, details: Mapping[str, Any]
    ) -> AuditEvent:
        extra = {"error": result.message} if result.message else {}
        return AuditEvent(
            at=self.clock(),
            run_id=self.run_id,
            action=change.action.value,
            system=change.system,
            target=audit_target(change, self.key),
            outcome=result.status,
            request=change.request,
            details={
                "change": change.id,
                "reason": change.reason.value,
                "rows": result.rows,
                **details,
                **extra,
            },
        )


# What a handler returns: the result, and the details its audit record carries. A handler
# whose audit record is made otherwise (complete: its receipt, in `completions`) returns None
# for the details.
Handled = tuple[ChangeResult, dict[str, Any] | None]
Handler = Callable[[Change, Context], Handled]


def audit_target(change: Change, key: IdentityKey) -> str:
    """The audit log names people only by keyed hash: it outlives their erasure."""
    user = change.params.user
    if user is not None:
        return f"user {hash_identity('email', user, key)}"
    return change.target
