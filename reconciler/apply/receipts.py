"""Completing an erasure: the receipt in the audit log, then the tombstone in the state store.

The receipt is the evidence a DPO shows: per table the rows deleted, masked, purged and
retained (with the reason), the refreshes of this run, and where the subject was verified
absent. It is built from the audit records written since the last completion, so a run that
was killed between a receipt and its tombstone is covered again by the next receipt.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from reconciler.apply.context import ChangeResult, Context, Handled
from reconciler.errors import DsrError
from reconciler.faults import kill_point
from reconciler.plan.actions import Action
from reconciler.plan.model import Change
from reconciler.store import Outcome, Tombstone

# audit action -> the receipt's count it adds to
_COUNTED: dict[str, str] = {
    Action.DELETE_ROWS: "deleted",
    Action.MASK_ROWS: "masked",
    Action.PURGE_LOGS: "purged",
}


def complete(change: Change, ctx: Context) -> Handled:
    """Writes the receipt and the tombstone; returns no details (the receipt is its own
    audit record)."""
    rid = change.request or ""
    records = ctx.store.audit_records(rid)
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
    for kept in change.params.retained:
        entry = tables[f"{kept.system}.{kept.table}"]
        entry["retained"] = kept.rows
        entry["reason"] = kept.reason
    scope = set(change.params.systems)
    refreshes = {
        o.change.system: o.status.value
        for o in ctx.done
        if o.change.action is Action.REFRESH and o.change.system in scope
    }
    verified = sorted(r.system for r in since if r.action == Action.VERIFY)
    receipt = {
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
    # The receipt and the tombstone in one transaction: never one without the other.
    tombstone = Tombstone(rid, kind, identities, systems, ctx.clock())
    ctx.store.record_completion(ctx.audit_event(change, result, {"receipt": receipt}), tombstone)
    kill_point("receipt")
    return result, None
