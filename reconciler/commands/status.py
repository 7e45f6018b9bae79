"""`dsr status`: each system's last observation and the last run."""

from __future__ import annotations

import click

from reconciler.commands import workspace


@click.command("status")
@click.pass_context
def command(ctx: click.Context) -> None:
    """Show systems, their last observation, and the last apply run."""
    ws = workspace(ctx)
    with ws.store() as store:
        seen = store.observations()
        last = store.last_run()
    click.echo(f"workspace {ws.desired.settings.workspace}")
    click.echo("")
    click.echo("Systems")
    width = max((len(n) for n in ws.desired.systems), default=0)
    for name, system in sorted(ws.desired.systems.items()):
        obs = seen.get(name)
        if obs is None:
            state = "never observed"
        elif obs.error:
            state = f"observed {obs.at:%Y-%m-%d %H:%M} UTC: ERROR {obs.error}"
        else:
            state = f"observed {obs.at:%Y-%m-%d %H:%M} UTC: ok"
        click.echo(f"  {name:<{width}}  {system.role.value:<10}  {state}")
    click.echo("")
    if last is None:
        click.echo("Last run: none")
    else:
        click.echo(
            f"Last run: {last.run_id} started {last.started_at:%Y-%m-%d %H:%M} UTC, "
            f"{last.outcome or 'unfinished'}"
        )
