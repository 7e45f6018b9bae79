"""Progress of an apply, one line per change as it ends. Pure string building."""

from __future__ import annotations

from reconciler.apply.context import ChangeResult
from reconciler.plan.actions import Action
from reconciler.store import Outcome

_MARK = {
    Outcome.SUCCEEDED: "ok",
    Outcome.FAILED: "FAILED",
    Outcome.SKIPPED: "skipped",
    Outcome.WAITING: "waiting",
    Outcome.INTERRUPTED: "interrupted",
}


def change_line(result: ChangeResult) -> str:
    """`  ok       DSR-1 delete crm customers (1 row)`"""
    c = result.change
    line = f"  {_MARK[result.status]:<8} {c.request + ' ' if c.request else ''}"
    line += f"{c.action.verb} {c.system} {c.target}"
    if result.status is Outcome.SUCCEEDED and c.action.writes and c.action is not Action.REFRESH:
        line += f" ({result.rows} row{'s' if result.rows != 1 else ''})"
    if result.message:
        line += f": {result.message}"
    return line
