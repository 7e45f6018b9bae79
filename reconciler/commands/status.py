"""`dsr status`: every request with its state and deadline, and every system with its last
observation and refresh. Reads the workspace and the state store only; it does not
connect to any system."""

from __future__ import annotations

from datetime import datetime

import click

from reconciler.commands import workspace
from reconciler.desired.approvals import approval_status
from reconciler.desired.deadlines import days_left
from reconciler.desired.model import RequestType
from reconciler.workspace import utcnow


def _when(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC"


@click.command("status")
@click.pass_context
def command(ctx: click.Context) -> None:
    """Show requests (state, due date, days left) and systems (last observation, refresh)."""
    ws = workspace(ctx)
    with ws.store() as store:
        seen = store.observations()
        refreshed = store.last_refreshes()
        states = store.request_states()
        tombstones = store.tombstones()
        exports = store.exports()
        last = store.last_run()
    today = utcnow().date()
    click.echo(f"workspace {ws.desired.settings.workspace}")
    click.echo("")
    click.echo("Requests")
    ids = sorted(set(ws.desired.requests) | set(tombstones))
    if not ids:
        click.echo("  none")
    for rid in ids:
        req = ws.desired.requests.get(rid)
        st = states.get(rid)
        detail: str | None
        if req is not None and req.legal_hold:
            state, detail = "held", req.legal_hold
        elif req is not None and req.cancelled and rid not in tombstones:
            state, detail = "cancelled", req.cancelled
        elif st is not None:
            state, detail = st.state, st.detail
        elif rid in tombstones:
            state, detail = "completed", None
        else:
            state, detail = "pending", "not applied yet"
        if req is None:
            due = "request file removed; tombstone keeps the erasure in force"
            kind = "erasure"
        else:
            kind = req.type.value
            left = days_left(req.due, today)
            due = f"due {req.due} ({left} days left)" if left >= 0 else f"due {req.due}"
            if left < 0 and state not in ("completed", "cancelled", "expired"):
                state = f"overdue, {state}"
                due = f"due {req.due} (OVERDUE by {-left} days)"
        if rid in tombstones and state.endswith("completed"):
            detail = f"completed {_when(tombstones[rid].completed_at)}"
        built = exports.get(rid)
        if built is not None and built.expired_at is not None:
            state, detail = "expired", f"package deleted {_when(built.expired_at)}"
        elif built is not None:
            state, detail = "ready", f"{built.path} (expires {_when(built.expires_at)})"
        elif req is not None and req.type is RequestType.EXPORT and not req.cancelled:
            approved, why = approval_status(req, ws.desired.access)
            if not approved:
                state, detail = "awaiting approval", why
        line = f"  {rid:<22} {kind:<8} {state:<18} {due}"
        click.echo(line + (f"  {detail}" if detail else ""))
    click.echo("")
    click.echo("Systems")
    width = max((len(n) for n in ws.desired.systems), default=0)
    for name, system in sorted(ws.desired.systems.items()):
        obs = seen.get(name)
        if obs is None:
            state = "never observed"
        elif obs.error:
            state = f"observed {_when(obs.at)}: ERROR {obs.error}"
        else:
            state = f"observed {_when(obs.at)}: ok"
        r = refreshed.get(name)
        if r is not None:
            state += f"; last refresh {_when(r.at)}: {r.status}"
            if r.message:
                state += f" ({r.message})"
        click.echo(f"  {name:<{width}}  {system.role.value:<10}  {state}")
    click.echo("")
    if last is None:
        click.echo("Last run: none")
    else:
        click.echo(
            f"Last run: {last.run_id} started {_when(last.started_at)}, "
            f"{last.outcome or 'unfinished'}"
        )
