"""The `dsr` command line: the click group and the error boundary.

Expected errors (`DsrError`) become one line per problem on stderr and exit 1; Ctrl-C exits
130; anything else is a bug and is printed with its traceback. Subcommands live in
`reconciler/commands/`, one module each.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any

import click

from reconciler import __version__
from reconciler.errors import DsrError


class Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DsrError as exc:
            for line in str(exc).splitlines() or [type(exc).__name__]:
                click.echo(f"error: {line}", err=True)
            ctx.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception:
            click.echo("dsr: unexpected error (this is a bug; please report it):", err=True)
            traceback.print_exc()
            ctx.exit(1)


@click.group(cls=Group)
@click.version_option(__version__, prog_name="dsr")
@click.option(
    "-C",
    "--workspace",
    type=click.Path(file_okay=False, path_type=Path),
    help="Workspace directory (default: the nearest parent holding dsr.yaml).",
)
@click.pass_context
def cli(ctx: click.Context, workspace: Path | None) -> None:
    """dsr: GDPR data subject requests as code."""
    ctx.obj = workspace


def _register() -> None:
    from reconciler.commands import apply, approve, audit, init, new, plan, status, validate

    for module in (init, validate, plan, apply, status, audit, new, approve):
        cli.add_command(module.command)


_register()


def main() -> None:
    try:
        cli.main(prog_name="dsr")
    except KeyboardInterrupt:
        sys.exit(130)
