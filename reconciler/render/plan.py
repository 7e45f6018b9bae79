"""All rendering of plans for people: text and markdown.

Pure string building; the CLI decides where it goes. Nothing here may print a raw
identifier of a data subject: changes already carry only counts, table names and hashes.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

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


def header(
    plan: Plan,
    systems: int,
    seconds: float,
    unreadable: int = 0,
    matched_by: Mapping[str, Mapping[str, str]] | None = None,
) -> str:
    """The plan's first line; with `matched_by`, a second: how identity tables were matched."""
    failed = f" ({unreadable} could not be read)" if unreadable else ""
    head = (
        f"dsr plan · workspace {plan.workspace} · {systems} "
        f"system{'s' if systems != 1 else ''} observed in {seconds:.1f} s{failed}"
    )
    matching = matching_line(matched_by or {})
    return f"{head}\n{matching}" if matching else head


def matching_line(matched_by: Mapping[str, Mapping[str, str]]) -> str | None:
    """One line: each identity table (`system.table`) grouped by how it was matched, e.g.
    `Matched by pushdown: crm.customers; by stream (SQLite cannot ...): shop.customers`."""
    groups: dict[str, list[str]] = {}
    for system, tables in sorted(matched_by.items()):
        for table, how in sorted(tables.items()):
            groups.setdefault(how, []).append(f"{system}.{table}")
    if not groups:
        return None
    parts = [f"by {how}: {', '.join(names)}" for how, names in sorted(groups.items())]
    return "Matched " + "; ".join(parts)


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
    kind = f"  {v.subject_kind}" if v.subject_kind else ""
    return f"{v.id}  {v.type}{kind}{due}  [{v.state}]{flags}"


def request_rows(plan: Plan, view: RequestView) -> list[Row]:
    """The steps of one request, in the order they run, with the shared refreshes it needs."""
    rows: list[Row] = []
    sources_done = False
    for c in _request_changes(plan, view):
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
    # The package's rows are in the state store, not in the change: no count to show.
    Action.EXPIRE_EXPORT: lambda c: Row(c.system, c.target, c.action.verb, "", c.detail),
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


def shared_steps(plan: Plan) -> list[Change]:
    """Changes that no request's section shows and that are not role changes: a refresh no
    request's steps wait for (the platform of a blocked request, say). A reviewer must see
    every change, so they get a section of their own."""
    shown = {c.id for v in _shown(plan) for c in _request_changes(plan, v)}
    return [
        c
        for c in plan.changes
        if c.id not in shown and c.action not in PERMISSION_ACTIONS and c.request is None
    ]


def _request_changes(plan: Plan, view: RequestView) -> list[Change]:
    by_id = {c.id: c for c in plan.changes}
    needed: set[str] = set()
    for c in plan.changes:
        if c.request == view.id:
            needed |= {d for d in c.depends_on if d in by_id and by_id[d].action is Action.REFRESH}
    return [c for c in plan.changes if c.request == view.id or c.id in needed]


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
    shared = shared_steps(plan)
    if shared:
        lines.append("Shared steps")
        lines += _table([ROWS[c.action](c) for c in shared])
        lines.append("")
    lines += [f"warning: {w}" for w in plan.warnings]
    lines += [f"error: {e}" for e in plan.errors]
    if plan.warnings or plan.errors:
        lines.append("")
    lines.append(summary(plan))
    return "\n".join(lines) + "\n"


# A pull-request comment must stay under GitHub's 65,536 characters (GitLab's notes allow
# more); the markdown plan is cut well below that, and says so.
MARKDOWN_LIMIT = 60_000


def render_markdown(plan: Plan, head: str | None = None, limit: int = MARKDOWN_LIMIT) -> str:
    """The plan for a review: the one-line summary first, a table of the requests and their
    due dates, then each section folded in `<details>`. Under `limit` characters whatever the
    plan's size: what does not fit is summarised, and the comment says so."""
    top = [
        f"### {head or 'dsr plan · workspace ' + plan.workspace}",
        "",
        f"**{summary(plan)}**",
        "",
    ]
    top += [f"> **error:** {_md(e)}" for e in plan.errors]
    top += [f"> **warning:** {_md(w)}" for w in plan.warnings]
    if plan.errors or plan.warnings:
        top.append("")
    foot = ["", f"<sub>plan {plan.id} · made {plan.created_at}</sub>"]
    budget = limit - len("\n".join(top + foot)) - 400  # room for the lines saying what was cut

    shown = sorted(_shown(plan), key=_urgency)
    table = ["| request | kind | state | due | steps |", "|---|---|---|---|---|"]
    rows_left = 0
    for i, v in enumerate(shown):
        line = (
            f"| {v.id} | {v.type} {v.subject_kind or ''} | {v.state.value.replace('_', ' ')} | "
            f"{_md(_due(v))} | {len(request_rows(plan, v))} |"
        )
        if len("\n".join(table)) + len(line) > budget // 3:
            rows_left = len(shown) - i
            break
        table.append(line)
    body = table if shown else []
    if rows_left:
        body.append(f"| … | {rows_left} more requests | | | |")
    body.append("")

    sections: list[list[str]] = []
    for title, changes in _permission_groups(plan):
        section = [f"<details><summary>{title}: {_n(len(changes), 'change')}</summary>", ""]
        section += ["| | action | target | why |", "|---|---|---|---|"]
        section += [
            f"| {_SIGN[c.action]} | {c.action.verb} | {_md(c.target)} | {_md(c.detail)} |"
            for c in changes
        ]
        sections.append([*section, "", "</details>", ""])
    for view in shown:
        rows = request_rows(plan, view)
        section = [f"<details><summary>{_md(request_title(view))}</summary>", ""]
        if view.note:
            section += [f"_{_md(view.note)}_", ""]
        if rows:
            section += ["| system | table / step | action | rows | why |", "|---|---|---|---|---|"]
            section += [
                f"| {r.system} | {_md(r.what)} | {r.verb} | {r.count} | {_md(r.note)} |"
                for r in rows
            ]
        sections.append([*section, "", "</details>", ""])
    shared = shared_steps(plan)
    if shared:
        section = ["<details><summary>Shared steps</summary>", ""]
        section += ["| system | step | action | rows | why |", "|---|---|---|---|---|"]
        section += [
            f"| {r.system} | {_md(r.what)} | {r.verb} | {r.count} | {_md(r.note)} |"
            for r in (ROWS[c.action](c) for c in shared)
        ]
        sections.append([*section, "", "</details>", ""])

    used = len("\n".join(body))
    kept: list[str] = []
    left_out = 0
    for section in sections:
        size = len("\n".join(section)) + 1
        if left_out or used + size > budget:
            left_out += 1
            continue
        kept += section
        used += size
    if left_out:
        kept += [
            f"_{_n(left_out, 'section')} left out to keep this comment under {limit:,} "
            "characters: the full plan is in plan.json, or run `dsr plan`._",
            "",
        ]
    return "\n".join(top + body + kept + foot) + "\n"


def _urgency(v: RequestView) -> tuple[int, int, str]:
    """Overdue first, then by days left, then by id; finished requests last."""
    if v.days_left is None:
        return (2, 0, v.id)
    return (0 if v.overdue else 1, v.days_left, v.id)


def _due(v: RequestView) -> str:
    if v.due is None or v.days_left is None:
        return "-"
    if v.days_left < 0:
        return f"{v.due} (OVERDUE by {_n(-v.days_left, 'day')})"
    return f"{v.due} ({_n(v.days_left, 'day')} left)"


def _md(text: str) -> str:
    """Text for a markdown table cell: pipes escaped, line breaks as spaces, HTML inert."""
    flat = " ".join(text.split("\n"))
    return flat.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def plan_drift(saved: Plan, current: Plan) -> list[str]:
    """What planning now would do differently from a saved plan, one line per change:
    `+` a change it would add, `-` one it would drop, `~` one whose row count moved or whose
    target, parameters or dependencies differ (an edited plan file shows here too)."""

    # Dependencies on a change that only one plan has follow from that change's line.
    both = {c.id for c in saved.changes} & {c.id for c in current.changes}

    def changes(plan: Plan) -> dict[str, dict[str, Any]]:
        return {
            c.id: {
                "what": f"{c.action.verb} {c.system} {c.target}",
                "rows": c.rows,
                "target": c.target,
                "params": dataclasses.asdict(c.params),
                "depends_on": [d for d in c.depends_on if d in both],
                "action": c.action.value,
                "system": c.system,
            }
            for c in plan.changes
        }

    from deepdiff import DeepDiff  # here: its import is slow, and only a stale plan needs it

    before, after = changes(saved), changes(current)
    # threshold 0: compare key by key even when the two share few changes (DeepDiff would
    # otherwise report the whole root as one changed value, which has no path).
    diff = DeepDiff(before, after, view="tree", threshold_to_diff_deeper=0)
    lines = set()
    for item in diff.get("dictionary_item_added", []):
        lines.add(f"+ {after[item.path(output_format='list')[0]]['what']}")
    for item in diff.get("dictionary_item_removed", []):
        lines.add(f"- {before[item.path(output_format='list')[0]]['what']}")
    for kind in ("values_changed", "type_changes", "iterable_item_added", "iterable_item_removed"):
        for item in diff.get(kind, []):
            key, field = item.path(output_format="list")[:2]
            if key not in after or key not in before:
                continue
            if field == "rows":
                lines.add(f"~ {after[key]['what']}: rows {item.t1} -> {item.t2}")
            elif field != "what":
                lines.add(f"~ {after[key]['what']}: its {field} differ in the saved plan")
    return sorted(lines)
