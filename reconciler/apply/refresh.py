"""Refreshing a platform or downstream system: its SQL on its own connection, or its command
(a dbt or ingestion job) run in the workspace. Each refresh is recorded in the state store's
refresh history, succeeded or failed with its message (values withheld)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from reconciler.apply.context import Context
from reconciler.connectors import Connector
from reconciler.desired.model import System
from reconciler.errors import DsrError
from reconciler.privacy.withhold import withhold_values
from reconciler.store import Outcome

REFRESH_TIMEOUT = 3600  # seconds a refresh command may run


def run_refresh(system: System, conn: Connector, ctx: Context) -> None:
    spec = system.refresh
    if spec is None:
        raise DsrError(f"system {system.name} no longer declares a refresh")
    try:
        if spec.sql:
            conn.run_sql(list(spec.sql))
        else:
            run_command(list(spec.command), ctx.workspace)
    except DsrError as exc:
        ctx.store.record_refresh(
            system.name, now=ctx.clock(), status=Outcome.FAILED, message=str(exc)
        )
        raise
    ctx.store.record_refresh(system.name, now=ctx.clock(), status=Outcome.SUCCEEDED)


def run_command(argv: list[str], cwd: Path) -> None:
    """Runs a refresh command in the workspace. `python` means the Python running dsr, so
    a workspace's own jobs run in dsr's environment wherever it is installed."""
    if argv and argv[0] in ("python", "python3"):
        argv = [sys.executable, *argv[1:]]
    try:
        done = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=REFRESH_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DsrError(f"refresh command {argv[0]!r} could not run: {exc}") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        last = withhold_values(lines[-1][:300]) if lines else "no output"
        raise DsrError(f"refresh command exited with {done.returncode}: {last}")
