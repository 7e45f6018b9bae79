"""`dsr validate`: schemas and cross-references of the whole workspace, every problem at once."""

from __future__ import annotations

import click

from reconciler.commands import workspace


@click.command("validate")
@click.pass_context
def command(ctx: click.Context) -> None:
    """Check dsr.yaml and policies/ against their schemas and each other."""
    ws = workspace(ctx)
    d = ws.desired
    users = len(d.access.users) if d.access else 0
    click.echo(f"{ws.root}: valid ({len(d.systems)} systems, {users} users)")
