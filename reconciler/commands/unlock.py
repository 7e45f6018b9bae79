"""`dsr force-unlock`: release the state lock of a run that is stuck or gone, naming it.

The lock dies with its holder (a `flock` on SQLite, a session advisory lock on PostgreSQL),
so this is for a holder that is still alive but will not finish: on PostgreSQL its session is
terminated. It asks first, unless `--yes`.
"""

from __future__ import annotations

import click

from reconciler.commands import workspace
from reconciler.errors import DsrError


@click.command("force-unlock")
@click.option("--yes", is_flag=True, help="Release without asking.")
@click.pass_context
def command(ctx: click.Context, yes: bool) -> None:
    """Release the state lock of a stuck run, and say whose it was."""
    ws = workspace(ctx)
    with ws.store() as store:
        holder = store.lock_holder()
        if holder is not None and not yes:
            click.echo(f"The state lock is held by {holder.describe()}.")
            if not click.confirm("Release it? Its run is stopped", default=False):
                raise DsrError("nothing was released")
        click.echo(store.force_unlock())
