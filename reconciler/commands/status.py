"""`dsr status`: every request with its state and deadline, and every system with its last
observation and refresh. Reads the workspace and the state store only; it does not connect
to any system."""

from __future__ import annotations

import click

from reconciler.commands import workspace
from reconciler.render.status import Snapshot, render_status
from reconciler.workspace import utcnow


@click.command("status")
@click.pass_context
def command(ctx: click.Context) -> None:
    """Show requests (state, due date, days left) and systems (last observation, refresh)."""
    ws = workspace(ctx)
    with ws.store() as store:
        snap = Snapshot(
            observations=store.observations(),
            refreshes=store.last_refreshes(),
            states=store.request_states(),
            tombstones=store.tombstones(),
            exports=store.exports(),
            last_run=store.last_run(),
        )
    click.echo(render_status(ws.desired, snap, utcnow().date()), nl=False)
