"""One module per subcommand: parse options, wire the workspace, call the core."""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.desired.load import find_workspace
from reconciler.privacy.identity import IdentityKey, resolve_key
from reconciler.workspace import Workspace


def workspace(ctx: click.Context) -> Workspace:
    root = ctx.find_root().obj
    return Workspace.load(find_workspace(Path(root) if root else Path.cwd()))


def identity_key(ws: Workspace) -> IdentityKey:
    """The identity key, with a warning when it is the demo's published development key."""
    key = resolve_key(ws.desired.settings)
    if key.development:
        click.echo(
            "warning: using the development identity key from dsr.yaml; set "
            f"{(ws.desired.settings.identity_key or 'env:DSR_IDENTITY_KEY')[4:]} for real data",
            err=True,
        )
    return key


max_revocations_option = click.option(
    "--max-revocations",
    type=click.IntRange(min=0),
    help="Refuse a plan revoking more roles than this (default: dsr.yaml safety.max_revocations).",
)
