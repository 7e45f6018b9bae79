"""`dsr report --out FILE`: write the privacy team's report page (one self-contained HTML file:
requests by state, a deadline chart, systems, waiting sources, exports, the audit head).
Reads the workspace and the state store only. The page holds no personal data."""

from __future__ import annotations

import os
from pathlib import Path

import click

from reconciler.commands import workspace
from reconciler.commands.status import snapshot
from reconciler.errors import DsrError
from reconciler.render.report import render_report, report_data
from reconciler.workspace import utcnow


@click.command("report")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the page (HTML).",
)
@click.pass_context
def command(ctx: click.Context, out: Path) -> None:
    """Write a self-contained HTML report of every request, deadline and system."""
    ws = workspace(ctx)
    with ws.store(readonly=True) as store:
        data = report_data(ws.desired, snapshot(ws, store), utcnow().date(), store.audit_head())
    temp = out.with_name(f".{out.name}.tmp")
    try:
        temp.write_text(render_report(data), encoding="utf-8")
        os.replace(temp, out)
    except OSError as exc:
        raise DsrError(f"cannot write {out}: {exc.strerror or exc}") from None
    click.echo(f"wrote {out} ({len(data['deadlines'])} open requests)")
