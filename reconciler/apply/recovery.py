"""Closing runs that were killed: the next run's first step, under the lock.

A change journalled as started but never finished gets an audit record saying it was
interrupted (its effect, if any, is seen by the next observation, which plans what is left);
the run is ended as interrupted. A batch is journalled as started all at once and finished
all at once (`executor.py`), so a batch killed midway leaves every change of it started,
its effects in the sources or not, per chunk: each gets its record. Nothing is redone here:
re-planning converges, and deleting or masking again what is already done changes nothing.

A killed run never reached its end, where it keeps what it did for each open request (the
facts a receipt and the planner read); recovery keeps that the subject's rows were found and
acted on, so that an erasure whose rows the killed run deleted is not answered "no data found".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime

from reconciler.plan.actions import Action
from reconciler.store import (
    AuditEvent,
    Fact,
    FactKind,
    JournalEntry,
    JournalStatus,
    Outcome,
    StateStore,
)

_SHARED: frozenset[str] = frozenset(a for a in Action if not a.per_request)
_ACTING: frozenset[str] = frozenset({Action.DELETE_ROWS, Action.MASK_ROWS, Action.PURGE_LOGS})


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
        _keep_facts(store, run.run_id, entries, audited, clock=clock)
        store.end_run(run.run_id, "interrupted", now=clock())
        closed.append(run.run_id)
    return closed


def _keep_facts(
    store: StateStore,
    run_id: str,
    entries: list[JournalEntry],
    audited: set[tuple[str, object]],
    *,
    clock: Callable[[], datetime],
) -> None:
    """An ACTED fact for each deletion, masking or purge the killed run started for a request
    it did not complete (planned only because the subject's rows were there)."""
    ids = {e.change_id for e in entries if e.status is not JournalStatus.SKIPPED}
    # A receipt written in that run holds its request's story already.
    completed = {
        c.split(":")[2] for c in ids if (run_id, c) in audited and c.startswith("complete:")
    }
    facts: dict[str, list[Fact]] = defaultdict(list)
    for change_id in sorted(ids):
        action, system, *rest = change_id.split(":") + ["", ""]
        if action in _ACTING and rest[0] and rest[0] not in completed:
            facts[rest[0]].append(Fact(FactKind.ACTED, system, rest[1], 0))
    for rid, found in facts.items():
        store.record_facts(rid, found, now=clock())
