"""`dsr plan`: observe, diff, print the plan; optionally save it for `dsr apply PLANFILE`.

A dry run: it reads the systems and the state store and writes to neither (a pull request's
job may hold a role that can only read). Exit codes: 0 nothing to do, 1 an error, a refused
plan or a blocked request, 2 (with `--detailed-exitcode`) changes apply would make. Waiting on
a source's owner is reported, not counted as a change.
"""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.commands import identity_key, max_revocations_option, observe, workspace
from reconciler.plan import planfile, planner
from reconciler.render import plan as output
from reconciler.workspace import utcnow

EXIT_CHANGES = 2


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
    help="Also save the plan (JSON) to FILE, for review and `dsr apply FILE`.",
)
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when there is nothing to do, 2 when apply would change something, 1 on error.",
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
    """Show what apply would change, and why. Writes nothing."""
    ws = workspace(ctx)
    key = identity_key(ctx, ws)
    with ws.store(readonly=True) as store, ws.connectors() as connectors:
        observed, seconds = observe(ctx, ws, connectors, store, key, record=False)
    result = planner.plan(ws.desired, observed, now=utcnow(), max_revocations=max_revocations)
    unreadable = sum(1 for o in observed.systems.values() if o.error)
    matched_by = {name: o.matched_by for name, o in observed.systems.items()}
    head = output.header(result, len(observed.systems), seconds, unreadable, matched_by)
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
        ctx.exit(EXIT_CHANGES)
