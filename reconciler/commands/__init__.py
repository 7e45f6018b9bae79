"""One module per subcommand: parse options, wire the workspace, call the core."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import click

from reconciler.connectors import Connector
from reconciler.desired.load import find_workspace
from reconciler.observe.collect import observe_timed
from reconciler.observe.model import Observed
from reconciler.privacy.identity import IdentityKey
from reconciler.store import StateStore
from reconciler.workspace import Workspace, utcnow


def workspace(ctx: click.Context) -> Workspace:
    root = ctx.find_root().obj
    return Workspace.load(find_workspace(Path(root) if root else Path.cwd()))


def identity_key(ws: Workspace) -> IdentityKey:
    """The identity key, with a warning when it is the demo's published development key."""
    key = ws.identity_key()
    if key.development:
        click.echo(
            "warning: using the development identity key from dsr.yaml; set "
            f"{(ws.desired.settings.identity_key or 'env:DSR_IDENTITY_KEY')[4:]} for real data",
            err=True,
        )
    return key


def observe(
    ws: Workspace, connectors: Mapping[str, Connector], store: StateStore, key: IdentityKey
) -> tuple[Observed, float]:
    """Observes every system and records each one's observation (digest or error) in the
    store, for `dsr status`; returns the observation and the seconds it took."""
    observed, seconds = observe_timed(ws.desired, connectors, store, key)
    now = utcnow()
    for name, obs in observed.systems.items():
        store.record_observation(name, now=now, digest=obs.digest, error=obs.error)
    return observed, seconds


max_revocations_option = click.option(
    "--max-revocations",
    type=click.IntRange(min=0),
    help="Refuse a plan revoking more roles than this (default: dsr.yaml safety.max_revocations).",
)
