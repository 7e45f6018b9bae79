"""`dsr report`: one self-contained HTML page for the privacy team, that a CI job can publish.

No external assets (styles and the chart's script are inline) and no raw personal data: request
ids, states, dates and counts only, the same facts `dsr status` shows. The deadline chart is
drawn in the browser from the JSON embedded in the page (one bar per open request: days left,
or overdue, coloured by urgency), so a browser test proves the page works as people see it.
Pure string building: the command reads the store and writes the file.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from datetime import date
from typing import Any

from reconciler.desired.model import Desired, RequestType, SystemRole
from reconciler.render.status import RequestStatus, Snapshot, request_statuses, when
from reconciler.store import RequestState


def report_data(
    desired: Desired, snap: Snapshot, today: date, head: tuple[int, str]
) -> dict[str, Any]:
    """The facts the page shows, as JSON-ready data (embedded in the page, and testable)."""
    statuses = request_statuses(desired, snap, today)
    open_ = [s for s in statuses if not s.state.finished and s.days_left is not None]
    waiting = [
        {"request": s.id, "detail": s.detail or ""}
        for s in statuses
        if s.state is RequestState.WAITING
    ]
    exports = [  # no detail: it names approvers, and the page holds ids and counts only
        {"request": s.id, "state": s.state.value, "due": _iso(s.due)}
        for s in statuses
        if s.type is RequestType.EXPORT
        and s.state in (RequestState.AWAITING_APPROVAL, RequestState.READY)
    ]
    systems = []
    for name, system in sorted(desired.systems.items()):
        refresh = snap.refreshes.get(name)
        seen = snap.observations.get(name)
        systems.append(
            {
                "name": name,
                "role": system.role.value,
                "observed": when(seen.at) if seen else None,
                "error": bool(seen and seen.error),
                "refresh": (
                    {"status": refresh.status.value, "at": when(refresh.at)} if refresh else None
                ),
                "writable": system.role is not SystemRole.SOURCE or system.erase_at_source,
            }
        )
    return {
        "workspace": desired.settings.workspace,
        "today": today.isoformat(),
        "by_state": dict(sorted(Counter(s.state.value for s in statuses).items())),
        "deadlines": [_bar(s) for s in sorted(open_, key=lambda s: s.urgency)],
        "late": [{"request": s.id, "late_by_days": s.late_days} for s in statuses if s.late_days],
        # nothing matched anywhere: worth a second look at the identifiers the request gave
        "no_data_found": [
            {"request": s.id, "on": _iso(s.finished_on)}
            for s in statuses
            if s.state is RequestState.NO_DATA_FOUND
        ],
        "waiting": waiting,
        "exports": exports,
        "systems": systems,
        "audit_head": {"seq": head[0], "hash": head[1]},
    }


def _bar(s: RequestStatus) -> dict[str, Any]:
    assert s.days_left is not None
    urgency = "overdue" if s.days_left < 0 else "soon" if s.days_left <= 7 else "ok"
    return {
        "request": s.id,
        "type": s.type.value,
        "state": s.state.value,
        "due": _iso(s.due),
        "days_left": s.days_left,
        "urgency": urgency,
    }


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day else None


def render_report(data: dict[str, Any]) -> str:
    """The page. Every text from the data is escaped; the data is embedded as JSON."""
    e = html.escape
    states = (
        "".join(
            f"<tr><td>{e(state.replace('_', ' '))}</td><td class=n>{n}</td></tr>"
            for state, n in data["by_state"].items()
        )
        or "<tr><td colspan=2>no requests</td></tr>"
    )
    systems = "".join(
        "<tr>"
        f"<td>{e(s['name'])}</td><td>{e(s['role'])}</td>"
        f"<td>{e(s['observed'] or 'never')}{' — ERROR' if s['error'] else ''}</td>"
        f"<td>{e(_refresh(s['refresh']))}</td>"
        f"<td>{'dsr erases' if s['writable'] else 'its owner erases'}</td>"
        "</tr>"
        for s in data["systems"]
    )
    waiting = (
        "".join(f"<li><b>{e(w['request'])}</b> {e(w['detail'])}</li>" for w in data["waiting"])
        or "<li>none</li>"
    )
    exports = (
        "".join(
            f"<li><b>{e(x['request'])}</b> {e(x['state'].replace('_', ' '))}"
            f" (due {e(x['due'] or '-')})</li>"
            for x in data["exports"]
        )
        or "<li>none</li>"
    )
    late = (
        "".join(
            f"<li><b>{e(x['request'])}</b> late by {x['late_by_days']} days</li>"
            for x in data["late"]
        )
        or "<li>none</li>"
    )
    nodata = (
        "".join(
            f"<li><b>{e(x['request'])}</b> on {e(x['on'] or '-')}</li>"
            for x in data["no_data_found"]
        )
        or "<li>none</li>"
    )
    head = data["audit_head"]
    payload = json.dumps(data, sort_keys=True).replace("</", "<\\/")
    return _PAGE.format(
        workspace=e(data["workspace"]),
        today=e(data["today"]),
        states=states,
        systems=systems,
        waiting=waiting,
        exports=exports,
        late=late,
        nodata=nodata,
        head=f"{head['seq']}:{e(head['hash'])}",
        payload=payload,
        script=_SCRIPT,
    )


def _refresh(r: dict[str, str] | None) -> str:
    return f"{r['status']} {r['at']}" if r else "-"


_SCRIPT = """
(function () {
  var data = JSON.parse(document.getElementById("dsr-data").textContent);
  var bars = data.deadlines, svg = document.getElementById("deadlines");
  var ns = "http://www.w3.org/2000/svg", row = 26, left = 160, mid = 470, scale = 8;
  svg.setAttribute("height", Math.max(1, bars.length) * row + 30);
  function el(name, attrs, text) {
    var n = document.createElementNS(ns, name);
    for (var k in attrs) { n.setAttribute(k, attrs[k]); }
    if (text !== undefined) { n.textContent = text; }
    svg.appendChild(n);
    return n;
  }
  el("line", {x1: mid, x2: mid, y1: 0, y2: bars.length * row + 8, "class": "axis"});
  el("text", {x: mid + 4, y: bars.length * row + 24, "class": "note"}, "due date");
  if (!bars.length) { el("text", {x: 10, y: 18}, "no open requests"); }
  bars.forEach(function (b, i) {
    var days = Math.max(-40, Math.min(40, b.days_left)), w = Math.abs(days) * scale;
    var x = days < 0 ? mid - w : mid, y = i * row + 4;
    el("text", {x: 8, y: y + 15}, b.request);
    el("rect", {x: x, y: y, width: Math.max(w, 2), height: row - 8, "class": "bar " + b.urgency,
                "data-request": b.request, "data-days": b.days_left});
    el("text", {x: days < 0 ? x - 6 : x + w + 6, y: y + 15,
                "text-anchor": days < 0 ? "end" : "start", "class": "note"},
       b.days_left < 0 ? (-b.days_left) + " days overdue" : b.days_left + " days left");
  });
})();
"""

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dsr report · {workspace}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 24px; color: #1d232a; max-width: 1000px; }}
h1 {{ font-size: 22px; margin: 0 0 4px; }} h2 {{ font-size: 16px; margin: 28px 0 8px; }}
.sub {{ color: #5b6672; }} table {{ border-collapse: collapse; }}
td, th {{ border-bottom: 1px solid #e3e7eb; padding: 4px 12px 4px 0; text-align: left; }}
td.n {{ text-align: right; }} .axis {{ stroke: #5b6672; stroke-dasharray: 3 3; }}
.bar.overdue {{ fill: #c62828; }} .bar.soon {{ fill: #ef8f00; }} .bar.ok {{ fill: #2e7d32; }}
.note {{ fill: #5b6672; font-size: 12px; }} svg {{ width: 100%; max-width: 940px; }}
code {{ font-size: 12px; }}
</style></head>
<body>
<h1>Data subject requests · {workspace}</h1>
<div class="sub">as of {today} · ids, states, dates and counts only: no personal data</div>
<h2>Requests by state</h2>
<table id="by-state"><tr><th>state</th><th>requests</th></tr>{states}</table>
<h2>Deadlines of open requests</h2>
<svg id="deadlines" role="img" aria-label="days left or overdue per open request"></svg>
<h2>Late completions</h2><ul id="late">{late}</ul>
<h2>No data found (check the identifiers the subject gave)</h2><ul id="nodata">{nodata}</ul>
<h2>Waiting on a source's owner</h2><ul id="waiting">{waiting}</ul>
<h2>Exports awaiting approval or delivery</h2><ul id="exports">{exports}</ul>
<h2>Systems</h2>
<table id="systems"><tr><th>system</th><th>role</th><th>last observed</th>
<th>last refresh</th><th>erasure</th></tr>{systems}</table>
<h2>Audit chain</h2>
<p>head <code id="audit-head">{head}</code>: <code>dsr audit verify --head {head}</code></p>
<script type="application/json" id="dsr-data">{payload}</script>
<script>{script}</script>
</body></html>
"""
