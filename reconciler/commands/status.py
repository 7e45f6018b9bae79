"""`dsr status`: every request with its state and deadline, every system with its last
observation and refresh, who holds the lock, and the last run. Reads the workspace and the
state store only (never writes; never connects to a system). `--fail-on-overdue` makes a
scheduled job fail while any request is past its due date."""

from __future__ import annotations

import click

from reconciler.commands import echo_json, format_option, log, outbox_of, workspace
from reconciler.errors import DsrError
from reconciler.observe.collect import package_problems
from reconciler.render.status import Snapshot, render_status, request_statuses, status_json
from reconciler.store import StateStore
from reconciler.workspace import Workspace, utcnow


def snapshot(ws: Workspace, store: StateStore) -> Snapshot:
    """What the state store says, each built package checked in the outbox."""
    exports = store.exports()
    return Snapshot(
        observations=store.observations(),
        refreshes=store.last_refreshes(),
        states=store.request_states(),
        tombstones=store.tombstones(),
        exports=exports,
        last_run=store.last_run(),
        lock=store.lock_holder(),
        package_problems=package_problems(exports, outbox_of(ws, store)),
    )


@click.command("status")
@click.option(
    "--fail-on-overdue",
    is_flag=True,
    help="Exit 1 when any request is past its due date (for a daily scheduled job).",
)
@format_option
@click.pass_context
def command(ctx: click.Context, fail_on_overdue: bool, fmt: str) -> None:
    """Show requests (state, due date, days left), systems, the lock and the last run."""
    ws = workspace(ctx)
    with ws.store(readonly=True) as store:
        snap = snapshot(ws, store)
    today = utcnow().date()
    if fmt == "json":
        echo_json(status_json(ws.desired, snap, today))
    else:
        click.echo(render_status(ws.desired, snap, today), nl=False)
    if fail_on_overdue:
        overdue = [s for s in request_statuses(ws.desired, snap, today) if s.overdue]
        for s in overdue:
            log(ctx).event(
                "overdue",
                f"{s.id} is overdue: due {s.due}, {s.state.value.replace('_', ' ')}",
                request=s.id,
            )
        if overdue:
            raise DsrError(
                f"{len(overdue)} request{'s are' if len(overdue) != 1 else ' is'} overdue"
            )
