"""One module per subcommand: parse options, wire the workspace, call the core, render.

What the subcommands share lives here: the global options, loading the workspace, the identity
key's warning, observing with progress, and the `--format` option.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from reconciler.connectors import Connector
from reconciler.desired.load import find_workspace
from reconciler.errors import DsrError
from reconciler.observe.collect import observe_all
from reconciler.observe.model import Observed, ObservedSystem
from reconciler.outbox.boxes import Outbox, outbox_for
from reconciler.privacy.identity import IdentityKey
from reconciler.render.events import EventLog
from reconciler.store import StateStore
from reconciler.workspace import ENV_PREFIX, Workspace, utcnow


@dataclass(frozen=True, slots=True)
class Options:
    """The group's options, as every subcommand sees them (`ctx.obj`)."""

    workspace: Path | None = None
    log: EventLog = EventLog()


def options(ctx: click.Context) -> Options:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Options) else Options()


def log(ctx: click.Context) -> EventLog:
    return options(ctx).log


def workspace(ctx: click.Context) -> Workspace:
    root = options(ctx).workspace
    return Workspace.load(find_workspace(Path(root) if root else Path.cwd()))


def workspace_root(ctx: click.Context) -> Path:
    """The workspace's folder, without loading its policies (`new`, `approve` load them
    themselves, with the file they are about to write)."""
    root = options(ctx).workspace
    return find_workspace(Path(root) if root else Path.cwd())


def identity_key(ctx: click.Context, ws: Workspace) -> IdentityKey:
    """The identity key, with a warning when it is the demo's published development key."""
    key = ws.identity_key()
    if key.development:
        ref = ws.desired.settings.identity_key or f"{ENV_PREFIX}DSR_IDENTITY_KEY"
        log(ctx).warning(
            "using the development identity key from dsr.yaml; set "
            f"{ref.removeprefix(ENV_PREFIX)} for real data"
        )
    return key


def observe(
    ctx: click.Context,
    ws: Workspace,
    connectors: Mapping[str, Connector],
    store: StateStore,
    key: IdentityKey,
    *,
    record: bool,
) -> tuple[Observed, float]:
    """Observes every system, one progress line each; with `record` (apply: a writer), each
    system's observation (digest or error) is kept in the store for `dsr status`."""
    events = log(ctx)
    started = time.monotonic()

    def progress(obs: ObservedSystem, seconds: float) -> None:
        how = f"ERROR {obs.error}" if obs.error else "ok"
        events.event(
            "observed",
            f"observed {obs.name} in {seconds:.1f} s: {how}",
            system=obs.name,
            seconds=round(seconds, 3),
            error=obs.error,
        )

    observed = observe_all(
        ws.desired, connectors, store, key, progress=progress, outbox=outbox_of(ws, store)
    )
    if record:
        now = utcnow()
        for name, obs in observed.systems.items():
            store.record_observation(name, now=now, digest=obs.digest, error=obs.error)
    return observed, time.monotonic() - started


def outbox_of(ws: Workspace, store: StateStore) -> Callable[[], Outbox]:
    """The workspace's outbox, made when first needed (a misplaced one is an error then)."""
    return lambda: outbox_for(ws.desired.settings, ws.root, store, utcnow)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=False, default=str))


# A day on the command line (--on, --received): YYYY-MM-DD.
DAY = click.DateTime(formats=["%Y-%m-%d"])


def day_or_today(value: datetime | None, flag: str) -> date:
    """The day given as `flag`, or today (UTC). Ahead of UTC it is already tomorrow somewhere;
    a later day is a typo."""
    today = utcnow().date()
    day = value.date() if value is not None else today
    if day > today + timedelta(days=1):
        raise DsrError(f"{flag} {day} is in the future")
    return day


format_option = click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for people, json for programs.",
)

max_revocations_option = click.option(
    "--max-revocations",
    type=click.IntRange(min=0),
    help="Refuse a plan revoking more roles than this (default: dsr.yaml safety.max_revocations).",
)
