"""The `dsr` command line: the click group and the error boundary.

Exit codes, as schedulers read them: 0 success (nothing left to do), 1 an error (one `error:`
line per problem, usage errors included: click's own 2 would read as "changes pending"),
2 changes pending (`plan --detailed-exitcode` only), 130 interrupted (Ctrl-C, SIGTERM).
Expected errors (`DsrError`) become one line each; anything else is a bug and is printed with
its traceback. Subcommands live in `reconciler/commands/`, one module each, imported only
when run or listed (click's lazy-loading group): `dsr plan` does not import `apply`'s drivers.
"""

from __future__ import annotations

import importlib
import signal
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import click

from reconciler import __version__
from reconciler.commands import Options
from reconciler.errors import DsrError, Interrupted
from reconciler.render.events import EventLog

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130

# Each subcommand's name and the module under reconciler.commands whose `command` it is.
COMMANDS = {
    "init": "init",
    "validate": "validate",
    "plan": "plan",
    "apply": "apply",
    "status": "status",
    "audit": "audit",
    "new": "new",
    "approve": "approve",
    "deliver": "deliver",
    "outbox": "outbox",
    "force-unlock": "unlock",
    "keygen": "keygen",
    "report": "report",
}


class Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The subcommand, its module imported now: running one loads only its own."""
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module = importlib.import_module(f"reconciler.commands.{COMMANDS[cmd_name]}")
            self.add_command(module.command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DsrError as exc:
            log = ctx.obj.log if isinstance(ctx.obj, Options) else EventLog()
            if isinstance(exc, Interrupted):
                log.error(str(exc) or "interrupted")
                ctx.exit(EXIT_INTERRUPTED)
            for line in str(exc).splitlines() or [type(exc).__name__]:
                log.error(line)
            ctx.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception:
            click.echo("dsr: unexpected error (this is a bug; please report it):", err=True)
            traceback.print_exc()
            ctx.exit(EXIT_ERROR)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """As click's, but a usage error exits 1 and an interrupt 130."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.UsageError as exc:
            exc.show()
            sys.exit(EXIT_ERROR)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except (click.Abort, KeyboardInterrupt, EOFError):
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=Group)
@click.version_option(__version__, prog_name="dsr")
@click.option(
    "-C",
    "--workspace",
    type=click.Path(file_okay=False, path_type=Path),
    help="Workspace directory (default: the nearest parent holding dsr.yaml).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="How progress, warnings and errors are written to stderr: json is one event per line.",
)
@click.pass_context
def cli(ctx: click.Context, workspace: Path | None, log_format: str) -> None:
    """dsr: GDPR data subject requests as code."""
    ctx.obj = Options(workspace, EventLog(json=log_format == "json"))


def _terminate(signum: int, _frame: FrameType | None) -> NoReturn:
    """SIGTERM as Ctrl-C: a scheduler's stop ends the run the way an operator's does."""
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    cli.main(prog_name="dsr")
