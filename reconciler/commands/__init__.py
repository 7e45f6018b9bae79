"""One module per subcommand: parse options, wire the workspace, call the core."""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.loader import find_workspace
from reconciler.runtime import Workspace


def workspace(ctx: click.Context) -> Workspace:
    root = ctx.find_root().obj
    return Workspace.load(find_workspace(Path(root) if root else Path.cwd()))
