"""The audit trail for people: one line per record, and a readable receipt per completed
erasure. Pure string building; counts, names and hashes only."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from reconciler.plan.actions import Action
from reconciler.store import AuditRecord


def record_line(r: AuditRecord) -> str:
    """One audit record: when, what, where, how it ended, and its details."""
    if r.action == Action.COMPLETE and "receipt" in r.details:
        return render_receipt(r.seq, r.at, r.request or "", r.hash, r.details["receipt"])
    shown = {k: v for k, v in r.details.items() if k != "change"}
    extra = " ".join(f"{k}={v}" for k, v in sorted(shown.items()))
    return (
        f"{r.seq:>5}  {r.at:%Y-%m-%d %H:%M:%S}  {r.action:<13} {r.system:<10} "
        f"{r.outcome:<11} {r.target}  {extra}".rstrip()
    )


def render_receipt(
    seq: int, at: datetime, request: str, digest: str, receipt: dict[str, Any]
) -> str:
    """The evidence of one completed erasure, for a DPO to read."""
    lines = [
        f"{seq:>5}  {at:%Y-%m-%d %H:%M:%S}  RECEIPT {request}"
        + ("  (re-ingested subject erased again)" if receipt.get("reingested") else "")
        + f"  record {digest[:12]}"
    ]
    tables = receipt.get("tables", {})
    width = max((len(t) for t in tables), default=0)
    for table, counts in tables.items():
        done = ", ".join(
            f"{verb} {counts[verb]}"
            for verb in ("deleted", "masked", "purged", "retained")
            if verb in counts
        )
        reason = f"   {counts['reason']}" if counts.get("reason") else ""
        lines.append(f"         {table:<{width}}  {done}{reason}")
    refreshes = receipt.get("refreshes") or {}
    if refreshes:
        lines.append(
            "         refreshed: " + ", ".join(f"{s} {o}" for s, o in sorted(refreshes.items()))
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
