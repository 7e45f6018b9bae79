"""The audit trail for people: one line per record, and a readable receipt per completed
erasure. Pure string building; counts, names, dates and hashes only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from reconciler.plan.actions import Action
from reconciler.store import AuditRecord

_COUNTS = ("deleted", "masked", "purged", "retained", "deleted_by_owner")
_WORDS = {"deleted_by_owner": "deleted by the source's owner"}


def record_line(r: AuditRecord) -> str:
    """One audit record: when, which request, what, where, how it ended, and its details."""
    if r.action == Action.COMPLETE and "receipt" in r.details:
        return render_receipt(r.seq, r.at, r.request or "", r.hash, r.details["receipt"])
    shown = {k: v for k, v in r.details.items() if k not in ("change", "reason")}
    extra = " ".join(f"{k}={text}" for k, v in sorted(shown.items()) if (text := _value(v)))
    return (
        f"{r.seq:>5}  {r.at:%Y-%m-%d %H:%M:%S}  {r.request or '-':<16} {r.action:<13} "
        f"{r.system:<10} {r.outcome:<11} {r.target}  {extra}".rstrip()
    )


def _value(v: Any) -> str:
    """A detail as words: lists joined, mappings as `key n`, nothing for an empty one."""
    if isinstance(v, dict):
        return ",".join(f"{k}:{_value(x)}" for k, x in sorted(v.items()))
    if isinstance(v, list | tuple):
        return ",".join(_value(x) for x in v)
    if v is None:
        return ""
    return str(v).lower() if isinstance(v, bool) else str(v)


def render_receipt(
    seq: int, at: datetime, request: str, digest: str, receipt: dict[str, Any]
) -> str:
    """The evidence of one completed erasure, for a DPO to read."""
    outcome = receipt.get("outcome", "erased")
    head = f"{seq:>5}  {at:%Y-%m-%d %H:%M:%S}  RECEIPT {request}: {outcome.upper()}"
    if receipt.get("due"):
        late = int(receipt.get("late_by_days", 0))
        head += (
            f", LATE by {late} day{'s' if late != 1 else ''} (due {receipt['due']})"
            if late
            else f", on time (due {receipt['due']})"
        )
    if receipt.get("reingested"):
        head += "  (re-ingested subject erased again)"
    lines = [head + f"  record {digest[:12]}"]
    if outcome == "no data found":
        lines.append("         the subject's identities matched no row in any mapped system")
    tables = receipt.get("tables", {})
    width = max((len(t) for t in tables), default=0)
    for table, counts in tables.items():
        done = ", ".join(
            f"{_WORDS.get(verb, verb)} {counts[verb]}" for verb in _COUNTS if verb in counts
        )
        reason = f"   {counts['reason']}" if counts.get("reason") else ""
        lines.append(f"         {table:<{width}}  {done}{reason}")
    refreshes = receipt.get("refreshes") or {}
    if refreshes:
        lines.append(
            "         refreshed: "
            + ", ".join(
                f"{s} {o['status']} {o['at']}" if isinstance(o, dict) else f"{s} {o}"
                for s, o in sorted(refreshes.items())
            )
        )
    lines.append(
        "         verified absent or masked in: " + (", ".join(receipt.get("verified", [])) or "-")
    )
    if receipt.get("interrupted"):
        lines.append(
            "         interrupted steps (covered by verification): "
            + ", ".join(receipt["interrupted"])
        )
    return "\n".join(lines)
