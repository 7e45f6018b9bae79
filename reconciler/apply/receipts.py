"""Completing an erasure: its receipt in the audit log and its tombstone, in one transaction.

The receipt is the evidence a DPO shows, whatever path the request took: the outcome
(erased, or no data found), the due date and how late it was, per table the rows deleted,
masked, purged, retained (with the reason) and deleted by a source's owner, the refreshes,
and where the subject was verified absent (schemas/receipt.schema.json). Counts come from the
audit records since the request's last receipt; what an earlier run saw and a later one
cannot (rows behind a parent deleted since, rows an owner deleted) from the request's facts.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import Any

from reconciler.apply.context import ChangeResult, Context, Handled
from reconciler.errors import DsrError
from reconciler.plan.actions import Action
from reconciler.plan.model import Change
from reconciler.store import FactKind, Outcome, Tombstone

RECEIPT_FORMAT = 2  # schemas/receipt.schema.json

# audit action -> the receipt's count it adds to
_COUNTED: dict[str, str] = {
    Action.DELETE_ROWS: "deleted",
    Action.MASK_ROWS: "masked",
    Action.PURGE_LOGS: "purged",
}


def complete(change: Change, ctx: Context) -> Handled:
    """Makes the receipt and the tombstone, for the executor to write (`ctx.completions`);
    returns no details (the receipt is its own audit record)."""
    rid = change.request or ""
    records = ctx.records_of(rid)
    # Since the last completion the tombstone points at: if a run died between writing a
    # receipt and its tombstone, the next receipt covers that run's work again.
    previous = ctx.observed.completed.get(rid)
    receipt_hash = previous.receipt_hash if previous else None
    last = max((i for i, r in enumerate(records) if r.hash == receipt_hash), default=-1)
    since = [r for r in records[last + 1 :] if r.outcome is Outcome.SUCCEEDED]
    tables: dict[str, dict[str, Any]] = defaultdict(dict)
    for r in since:
        counted = _COUNTED.get(r.action)  # a StrEnum key matches its text
        if counted:
            entry = tables[f"{r.system}.{r.details.get('table')}"]
            entry[counted] = entry.get(counted, 0) + int(r.details.get("rows", 0))
    # Rows kept, as seen in this run or (behind a parent deleted earlier) in an earlier one.
    facts = ctx.observed.facts.get(rid, ())
    kept = {(f.system, f.table): (f.rows, f.reason) for f in facts if f.kind is FactKind.RETAINED}
    kept |= {(k.system, k.table): (k.rows, k.reason) for k in change.params.retained}
    for (system, table), (rows, why) in sorted(kept.items()):
        entry = tables[f"{system}.{table}"]
        entry["retained"] = rows
        entry["reason"] = why
    for f in facts:
        if f.kind is FactKind.AWAITED:  # gone now: verification below proves it
            tables[f"{f.system}.{f.table}"]["deleted_by_owner"] = f.rows
    scope = set(change.params.systems)
    # The last refresh of each system the request covers: the one its data went with.
    refreshes = {
        name: {"status": r.status.value, "at": r.at.isoformat(timespec="seconds")}
        for name, r in sorted(ctx.observed.refreshes.items())
        if name in scope
    }
    refreshes |= {
        name: {"status": o.status.value, "at": ctx.clock().isoformat(timespec="seconds")}
        for name, o in ctx.refreshed().items()
        if name in scope
    }
    verified = sorted(r.system for r in since if r.action == Action.VERIFY)
    completed_on = ctx.clock().date()
    due = date.fromisoformat(change.params.due) if change.params.due else None
    late = (completed_on - due).days if due is not None and completed_on > due else 0
    receipt = {
        "format_version": RECEIPT_FORMAT,
        "request": rid,
        "outcome": "no data found" if change.params.no_data_found else "erased",
        "due": due.isoformat() if due else None,
        "completed_on": completed_on.isoformat(),
        "late_by_days": late,
        "tables": dict(sorted(tables.items())),
        "refreshes": refreshes,
        "verified": verified,
        "reingested": change.params.reingested,
        # Steps a killed run may or may not have carried out; verification covered them.
        "interrupted": [r.target for r in records[last + 1 :] if r.outcome is Outcome.INTERRUPTED],
    }
    result = ChangeResult(change, Outcome.SUCCEEDED)
    request = ctx.desired.requests.get(rid)
    if request is not None:
        identities = tuple((i.type, i.hash) for i in request.identities)
        kind, systems = request.subject_kind, request.systems
    elif previous is not None:
        identities, kind, systems = previous.identities, previous.subject_kind, previous.systems
    else:
        raise DsrError(f"{rid}: neither a request file nor a tombstone")
    # The receipt and the tombstone, committed by the executor in one transaction with the
    # batch's journal: never one without the other.
    tombstone = Tombstone(rid, kind, identities, systems, ctx.clock())
    ctx.completions.append((ctx.audit_event(change, result, {"receipt": receipt}), tombstone))
    return result, None
