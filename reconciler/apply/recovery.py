"""Closing runs that were killed: the next run's first step, under the lock.

A change journalled as started but never finished gets an audit record saying it was
interrupted (its effect, if any, is seen by the next observation, which plans what is left);
the run is ended as interrupted. A batch is journalled as started all at once and finished
all at once (`executor.py`), so a batch killed midway leaves every change of it started,
its effects in the sources or not, per chunk: each gets its record. Nothing is redone here:
re-planning converges, and deleting or masking again what is already done changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from reconciler.plan.actions import Action
from reconciler.store import AuditEvent, JournalStatus, Outcome, StateStore

_SHARED: frozenset[str] = frozenset(a for a in Action if not a.per_request)


def recover_interrupted(store: StateStore, *, clock: Callable[[], datetime]) -> list[str]:
    """Closes every unfinished run; returns their ids."""
    closed = []
    runs = store.unfinished_runs()
    audited = (
        {(r.run_id, r.details.get("change")) for r in store.audit_records()} if runs else set()
    )
    for run in runs:
        entries = store.journal_entries(run.run_id)
        finished = {e.change_id for e in entries if e.status is not JournalStatus.STARTED}
        lost: list[AuditEvent] = []
        for entry in entries:
            if entry.status is not JournalStatus.STARTED or entry.change_id in finished:
                continue
            if (run.run_id, entry.change_id) in audited:
                continue  # carried out and audited; killed before the journal said so
            # Change ids are `action:system[:request[:table]]` (see the planner).
            action, system, *rest = entry.change_id.split(":") + ["", ""]
            per_request = action not in _SHARED  # a StrEnum member matches its text
            lost.append(
                AuditEvent(
                    at=clock(),
                    run_id=run.run_id,
                    action=action,
                    system=system,
                    target=f"change {entry.change_id}",
                    outcome=Outcome.INTERRUPTED,
                    request=rest[0] if per_request and rest[0] else None,
                    details={"change": entry.change_id, "rows": "unknown (interrupted)"},
                )
            )
        # A killed batch may leave many changes started: their records in one transaction.
        store.record_batch(run.run_id, now=clock(), audit=lost)
        store.end_run(run.run_id, "interrupted", now=clock())
        closed.append(run.run_id)
    return closed
