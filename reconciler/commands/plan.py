"""`dsr plan`: observe, diff, print the plan; optionally save it for `dsr apply PLANFILE`."""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.commands import identity_key, max_revocations_option, observe, workspace
from reconciler.plan import planfile, planner
from reconciler.render import plan as output
from reconciler.workspace import utcnow


@click.command("plan")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "markdown", "json"]),
    default="text",
    show_default=True,
    help="How to print the plan.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also save the plan (JSON) to FILE, for `dsr apply FILE`.",
)
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when there are no changes, 2 when there are, 1 on error.",
)
@max_revocations_option
@click.pass_context
def command(
    ctx: click.Context,
    fmt: str,
    out: Path | None,
    detailed_exitcode: bool,
    max_revocations: int | None,
) -> None:
    """Show what apply would change, and why."""
    ws = workspace(ctx)
    key = identity_key(ws)
    with ws.store() as store, ws.connectors() as connectors:
        observed, seconds = observe(ws, connectors, store, key)
    result = planner.plan(ws.desired, observed, now=utcnow(), max_revocations=max_revocations)
    unreadable = sum(1 for o in observed.systems.values() if o.error)
    head = output.header(result, len(observed.systems), seconds, unreadable)
    if out is not None:  # first: a plan that cannot be saved is an error before it is shown
        planfile.write_plan(result, out)
    if fmt == "json":
        click.echo(planfile.to_json(result), nl=False)
    elif fmt == "markdown":
        click.echo(output.render_markdown(result, head), nl=False)
    else:
        click.echo(output.render_text(result, head), nl=False)
    if out is not None:
        click.echo(f"Saved plan {result.id} to {out}; apply it with: dsr apply {out}", err=True)
    if not result.can_apply or result.blocked:
        ctx.exit(1)
    if detailed_exitcode and result.has_changes:
        ctx.exit(2)
