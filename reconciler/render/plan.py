"""All rendering of plans for people: text and markdown.

Pure string building; the CLI decides where it goes. Nothing here may print a raw
identifier of a data subject: changes already carry only counts, table names and hashes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from deepdiff import DeepDiff

from reconciler.plan.actions import PERMISSION_ACTIONS, Action
from reconciler.plan.model import Change, Plan, RequestView
from reconciler.store.records import RequestState

_SIGN = {Action.GRANT_ROLE: "+", Action.REVOKE_ROLE: "-", Action.REMOVE_USER: "-"}


@dataclass(frozen=True, slots=True)
class Row:
    """One line of a request's section: system, what, verb, count, and a note."""

    system: str
    what: str
    verb: str
    count: str
    note: str


def header(plan: Plan, systems: int, seconds: float, unreadable: int = 0) -> str:
    failed = f" ({unreadable} could not be read)" if unreadable else ""
    return (
        f"dsr plan · workspace {plan.workspace} · {systems} "
        f"system{'s' if systems != 1 else ''} observed in {seconds:.1f} s{failed}"
    )


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'s' if count != 1 else ''}"


def summary(plan: Plan) -> str:
    if plan.errors:
        return f"Plan refused: {_n(len(plan.errors), 'problem')}; nothing will be changed."
    completed = [v for v in plan.requests if v.state is RequestState.COMPLETED]
    rechecked = (
        f" {_n(len(completed), 'completed erasure')} re-checked: nothing came back."
        if completed
        else ""
    )
    blocked = (
        f" {_n(len(plan.blocked), 'request')} blocked: "
        + ", ".join(v.id for v in plan.blocked)
        + "."
        if plan.blocked
        else ""
    )
    waiting = [v for v in plan.requests if v.state is RequestState.WAITING]
    if not plan.has_changes and plan.blocked:
        return "No changes can be made now." + blocked
    if not plan.has_changes and waiting:
        ids = ", ".join(v.id for v in waiting)
        return (
            f"No changes dsr can make now: {_n(len(waiting), 'request')} waiting on a source "
            f"owner ({ids})." + rechecked
        )
    if not plan.has_changes:
        return "No changes. The actual state matches the desired state." + rechecked
    held_back = plan.waiting
    actionable = [c for c in plan.changes if c.id not in held_back]
    rows = Counter[Action]()
    for c in actionable:
        rows[c.action] += c.rows
    kinds = Counter(c.action for c in actionable)
    parts = []
    erasing = {c.request for c in actionable if c.action is Action.COMPLETE}
    if erasing:
        counts = [
            text
            for n, text in (
                (rows[Action.DELETE_ROWS], f"{_n(rows[Action.DELETE_ROWS], 'row')} deleted"),
                (rows[Action.MASK_ROWS], f"{rows[Action.MASK_ROWS]} masked"),
                (rows[Action.PURGE_LOGS], f"{_n(rows[Action.PURGE_LOGS], 'log row')} purged"),
            )
            if n
        ] or ["verify and record"]
        parts.append(f"{_n(len(erasing), 'erasure')} ({', '.join(counts)})")
    if kinds[Action.BUILD_EXPORT]:
        parts.append(f"{_n(kinds[Action.BUILD_EXPORT], 'export')} built")
    if kinds[Action.EXPIRE_EXPORT]:
        parts.append(f"{_n(kinds[Action.EXPIRE_EXPORT], 'export')} expired")
    if kinds[Action.REFRESH]:
        parts.append(_n(kinds[Action.REFRESH], "refresh").replace("refreshs", "refreshes"))
    role_changes = sum(kinds[a] for a in PERMISSION_ACTIONS)
    if role_changes:
        parts.append(_n(role_changes, "role change"))
    text = "Plan: " + ", ".join(parts or [_n(len(actionable), "change")])
    if waiting:
        text += f"; {_n(len(waiting), 'request')} waiting on a source"
    return text + "." + blocked + rechecked


def _permission_groups(plan: Plan) -> Iterator[tuple[str, list[Change]]]:
    by_system: dict[str, list[Change]] = {}
    for c in plan.changes:
        if c.action in PERMISSION_ACTIONS:
            by_system.setdefault(c.system, []).append(c)
    for system, changes in by_system.items():
        yield f"Permissions ({system})", changes


def request_title(v: RequestView) -> str:
    due = ""
    if v.due is not None and v.days_left is not None:
        left = (
            f"{_n(v.days_left, 'day')} left"
            if v.days_left >= 0
            else f"OVERDUE by {_n(-v.days_left, 'day')}"
        )
        due = f"  due {v.due} ({left})"
    flags = "  re-ingested" if v.reingested else ""
    return f"{v.id}  {v.type}  {v.subject_kind}{due}  [{v.state}]{flags}"


def request_rows(plan: Plan, view: RequestView) -> list[Row]:
    """The steps of one request, in the order they run, with the shared refreshes it needs."""
    by_id = {c.id: c for c in plan.changes}
    own = [c for c in plan.changes if c.request == view.id]
    needed: set[str] = set()
    for c in own:
        needed |= {d for d in c.depends_on if d in by_id and by_id[d].action is Action.REFRESH}
    rows: list[Row] = []
    sources_done = False
    for c in plan.changes:
        if c.request != view.id and c.id not in needed:
            continue
        if not sources_done and c.action not in (Action.DELETE_ROWS, Action.MASK_ROWS):
            rows += _retained_rows(view)
            sources_done = True
        rows.append(ROWS[c.action](c))
    if not sources_done:
        rows += _retained_rows(view)
    return rows


def _retained_rows(view: RequestView) -> list[Row]:
    return [
        Row(r.system, r.table, "retain", _n(r.rows, "row"), r.reason)
        for r in view.retained
        if not r.masked
    ]


def _counted(c: Change) -> Row:
    return Row(c.system, c.target, c.action.verb, _n(c.rows, "row"), c.detail)


def _role(c: Change) -> Row:
    return Row(c.system, c.target, c.action.verb, "", c.detail)


# How each action is shown in a request's section (or, for roles, in the permissions section).
ROWS: dict[Action, Callable[[Change], Row]] = {
    Action.GRANT_ROLE: _role,
    Action.REVOKE_ROLE: _role,
    Action.REMOVE_USER: _role,
    Action.DELETE_ROWS: _counted,
    Action.MASK_ROWS: _counted,
    Action.AWAIT_SOURCE: lambda c: Row(c.system, c.target, "await", "", c.detail),
    Action.REFRESH: lambda c: Row(c.system, "refresh", "", "", c.detail),
    Action.VERIFY: lambda c: Row(c.system, "verify", "", "", f"{c.target}: absent or masked"),
    Action.PURGE_LOGS: _counted,
    Action.COMPLETE: lambda c: Row(
        "dsr", "complete", "", "", "receipt to the audit log; tombstone kept"
    ),
    Action.BUILD_EXPORT: _counted,
    Action.EXPIRE_EXPORT: _counted,
}


def _table(rows: list[Row], indent: str = "  ") -> list[str]:
    if not rows:
        return []
    w = [max(len(getattr(r, f)) for r in rows) for f in ("system", "what", "verb", "count")]
    return [
        f"{indent}{r.system:<{w[0]}}  {r.what:<{w[1]}}  {r.verb:<{w[2]}}  {r.count:<{w[3]}}  "
        f"{r.note}".rstrip()
        for r in rows
    ]


def _shown(plan: Plan) -> list[RequestView]:
    """Requests worth a section: those with changes or a state a reviewer must see."""
    with_changes = {c.request for c in plan.changes}
    return [
        v for v in plan.requests if v.id in with_changes or v.state is not RequestState.COMPLETED
    ]


def render_text(plan: Plan, head: str | None = None) -> str:
    lines = [head, ""] if head else []
    for title, changes in _permission_groups(plan):
        lines.append(title)
        width = max(len(c.target) for c in changes)
        for c in changes:
            row = ROWS[c.action](c)
            lines.append(f"  {_SIGN[c.action]} {row.verb:<8} {row.what:<{width}}   {row.note}")
        lines.append("")
    for view in _shown(plan):
        lines.append(request_title(view))
        if view.note:
            lines.append(f"  {view.note}")
        lines += _table(request_rows(plan, view))
        lines.append("")
    lines += [f"warning: {w}" for w in plan.warnings]
    lines += [f"error: {e}" for e in plan.errors]
    if plan.warnings or plan.errors:
        lines.append("")
    lines.append(summary(plan))
    return "\n".join(lines) + "\n"


def render_markdown(plan: Plan, head: str | None = None) -> str:
    lines = [f"### {head or 'dsr plan · workspace ' + plan.workspace}", ""]
    for title, changes in _permission_groups(plan):
        lines += [f"#### {title}", "", "| | action | target | why |", "|---|---|---|---|"]
        for c in changes:
            lines.append(
                f"| {_SIGN[c.action]} | {c.action.verb} | {_md(c.target)} | {_md(c.detail)} |"
            )
        lines.append("")
    for view in _shown(plan):
        lines += [f"#### {_md(request_title(view))}", ""]
        if view.note:
            lines += [f"_{_md(view.note)}_", ""]
        rows = request_rows(plan, view)
        if rows:
            lines += ["| system | table / step | action | rows | why |", "|---|---|---|---|---|"]
            lines += [
                f"| {r.system} | {_md(r.what)} | {r.verb} | {r.count} | {_md(r.note)} |"
                for r in rows
            ]
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


def plan_drift(saved: Plan, current: Plan) -> list[str]:
    """What planning now would do differently from a saved plan, one line per change:
    `+` a change it would add, `-` one it would drop, `~` one whose row count moved."""

    def changes(plan: Plan) -> dict[str, dict[str, object]]:
        return {
            c.id: {"what": f"{c.action.verb} {c.system} {c.target}", "rows": c.rows}
            for c in plan.changes
        }

    before, after = changes(saved), changes(current)
    diff = DeepDiff(before, after, view="tree")
    lines = []
    for item in diff.get("dictionary_item_added", []):
        lines.append(f"+ {after[item.path(output_format='list')[0]]['what']}")
    for item in diff.get("dictionary_item_removed", []):
        lines.append(f"- {before[item.path(output_format='list')[0]]['what']}")
    for item in diff.get("values_changed", []):
        key, field = item.path(output_format="list")[:2]
        lines.append(f"~ {after[key]['what']}: {field} {item.t1} -> {item.t2}")
    return sorted(lines)
