"""All rendering of plans, results and status for people: text and markdown.

Pure string building; the CLI decides where it goes. Nothing here may print a raw
identifier of a data subject: changes already carry only counts and hashes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from reconciler.actions import Action
from reconciler.plan import Change, Plan

PERMISSION_ACTIONS = (Action.GRANT_ROLE, Action.REVOKE_ROLE, Action.REMOVE_USER)
_SIGN = {Action.GRANT_ROLE: "+", Action.REVOKE_ROLE: "-", Action.REMOVE_USER: "-"}


def header(plan: Plan, systems: int, seconds: float) -> str:
    return (
        f"dsr plan · workspace {plan.workspace} · {systems} "
        f"system{'s' if systems != 1 else ''} observed in {seconds:.1f} s"
    )


def summary(plan: Plan) -> str:
    if plan.errors:
        return f"Plan refused: {len(plan.errors)} problem{'s' if len(plan.errors) > 1 else ''}."
    if not plan.has_changes:
        return "No changes. The actual state matches the desired state."
    counts = Counter(c.action for c in plan.changes)
    role_changes = sum(counts[a] for a in PERMISSION_ACTIONS)
    parts = []
    if role_changes:
        parts.append(f"{role_changes} role change{'s' if role_changes != 1 else ''}")
    return "Plan: " + ", ".join(parts) + "."


def _groups(plan: Plan) -> Iterable[tuple[str, list[Change]]]:
    by_system: dict[str, list[Change]] = {}
    for c in plan.changes:
        if c.action in PERMISSION_ACTIONS:
            by_system.setdefault(c.system, []).append(c)
    for system, changes in by_system.items():
        yield f"Permissions ({system})", changes


def render_text(plan: Plan, head: str | None = None) -> str:
    lines = [head, ""] if head else []
    for title, changes in _groups(plan):
        lines.append(title)
        width = max(len(c.target) for c in changes)
        for c in changes:
            lines.append(f"  {_SIGN[c.action]} {c.action.verb:<8} {c.target:<{width}}   {c.reason}")
        lines.append("")
    lines += [f"warning: {w}" for w in plan.warnings]
    lines += [f"error: {e}" for e in plan.errors]
    if plan.warnings or plan.errors:
        lines.append("")
    lines.append(summary(plan))
    return "\n".join(lines) + "\n"


def render_markdown(plan: Plan, head: str | None = None) -> str:
    lines = [f"### {head or 'dsr plan · workspace ' + plan.workspace}", ""]
    for title, changes in _groups(plan):
        lines += [f"#### {title}", "", "| | action | target | why |", "|---|---|---|---|"]
        for c in changes:
            lines.append(
                f"| {_SIGN[c.action]} | {c.action.verb} | {_md(c.target)} | {_md(c.reason)} |"
            )
        lines.append("")
    if plan.warnings:
        lines += [f"> **warning:** {_md(w)}" for w in plan.warnings] + [""]
    if plan.errors:
        lines += [f"> **error:** {_md(e)}" for e in plan.errors] + [""]
    lines.append(f"**{summary(plan)}**")
    lines.append("")
    lines.append(f"<sub>plan {plan.id} · made {plan.created_at}</sub>")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")
