"""`dsr apply [PLANFILE]`: carry out a saved plan (refused if stale) or plan and confirm.

Everything from observing to the last change happens under the state store's lock, so the
plan applied is the plan made from the state it changes.
"""

from __future__ import annotations

import getpass
import socket
import sys
from pathlib import Path

import click

from reconciler.apply import executor
from reconciler.apply.context import Context
from reconciler.apply.recovery import recover_interrupted
from reconciler.commands import identity_key, max_revocations_option, observe, workspace
from reconciler.errors import DsrError, StalePlan
from reconciler.observe.collect import observe_all
from reconciler.observe.model import Observed
from reconciler.plan import planfile, planner
from reconciler.plan.model import Plan
from reconciler.render import plan as output
from reconciler.render.progress import change_line
from reconciler.store import LockInfo, Outcome
from reconciler.workspace import utcnow


@click.command("apply")
@click.argument(
    "planfile_path",
    metavar="[PLANFILE]",
    required=False,
    type=click.Path(dir_okay=False, path_type=Path),
)
@click.option("--auto-approve", is_flag=True, help="Apply without asking (for scheduled jobs).")
@click.option(
    "--lock-timeout",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds to wait for another run's lock before failing.",
)
@max_revocations_option
@click.pass_context
def command(
    ctx: click.Context,
    planfile_path: Path | None,
    auto_approve: bool,
    lock_timeout: float,
    max_revocations: int | None,
) -> None:
    """Carry out the plan, idempotently, under the state lock."""
    ws = workspace(ctx)
    saved = planfile.read_plan(planfile_path) if planfile_path else None
    key = identity_key(ws)
    holder = f"{getpass.getuser()}@{socket.gethostname()}: dsr apply"

    def waiting(info: LockInfo) -> None:
        click.echo(
            f"waiting up to {lock_timeout:g} s for the state lock held by {info.holder} "
            f"(pid {info.pid} on {info.host}) since {info.acquired_at}",
            err=True,
        )

    with ws.store() as store, store.lock(holder, timeout=lock_timeout, on_wait=waiting) as lock:
        if lock.took_over_stale:
            click.echo("note: took over a stale lock left by a process that died", err=True)
        for run_id in recover_interrupted(store, clock=utcnow):
            click.echo(f"note: run {run_id} was interrupted; recorded in the audit log", err=True)
        with ws.connectors() as connectors:
            observed, seconds = observe(ws, connectors, store, key)
            current = planner.plan(
                ws.desired, observed, now=utcnow(), max_revocations=max_revocations
            )
            if saved is not None:
                check_fresh(saved, current, ws.desired.digest, observed, planfile_path)
            plan = saved or current
            if not plan.can_apply:
                click.echo(output.render_text(plan), nl=False)
                raise DsrError("the plan is refused; nothing was changed")
            if not plan.has_changes and not plan.blocked:
                click.echo("No changes. The actual state matches the desired state; nothing to do.")
                return
            unreadable = sum(1 for o in observed.systems.values() if o.error)
            click.echo(
                output.render_text(
                    plan, output.header(plan, len(observed.systems), seconds, unreadable)
                )
            )
            if not plan.has_changes:
                raise DsrError(blocked_message(plan))
            if not auto_approve:
                confirm(len(plan.changes))
            context = Context(
                desired=ws.desired,
                observed=observed,
                connectors=connectors,
                store=store,
                key=key,
                workspace=ws.root,
                reobserve=lambda: observe_all(ws.desired, connectors, store, key),
                clock=utcnow,
            )
            result = executor.apply(plan, context, progress=lambda r: click.echo(change_line(r)))
    done = sum(1 for o in result.results if o.status is Outcome.SUCCEEDED)
    pending = sorted({o.change.request or "" for o in result.waiting})
    if result.ok:
        click.echo(
            f"Apply complete: {done} change{'s' if done != 1 else ''} carried out "
            f"(run {result.run_id})."
            + (f" Waiting on a source owner: {', '.join(pending)}." if pending else "")
        )
        if plan.blocked:
            raise DsrError(blocked_message(plan))
        return
    failed = [o for o in result.results if o.status is Outcome.FAILED]
    skipped = [o for o in result.results if o.status is Outcome.SKIPPED]
    raise DsrError(
        f"apply finished with {len(failed)} failed and {len(skipped)} skipped of "
        f"{len(result.results)} changes (run {result.run_id}); {done} carried out. "
        "Fix the cause and run dsr apply again"
    )


def blocked_message(plan: Plan) -> str:
    return "; ".join(f"{v.id} is blocked: {v.note}" for v in plan.blocked)


def confirm(n: int) -> None:
    if not sys.stdin.isatty():
        raise DsrError("apply needs a confirmation: run it in a terminal, or pass --auto-approve")
    if not click.confirm(f"Apply these {n} changes?", default=False):
        raise DsrError("apply cancelled; nothing was changed")


def check_fresh(
    saved: Plan, current: Plan, desired_digest: str, observed: Observed, path: Path | None
) -> None:
    """A saved plan applies only to the desired and actual state it was made from; when it
    does not, say what planning now would do differently."""
    drift = "".join(f"\n  {line}" for line in output.plan_drift(saved, current))
    drift = f"; planning now would differ:{drift}" if drift else ""
    if saved.desired_digest != desired_digest:
        raise StalePlan(
            f"{path}: the policies changed since this plan was made; nothing was applied; "
            f"run dsr plan again{drift}"
        )
    now = observed.digests()
    changed = sorted(
        name
        for name in set(now) | set(saved.observed_digests)
        if now.get(name) != saved.observed_digests.get(name)
    )
    if changed:
        raise StalePlan(
            f"{path}: the actual state of {', '.join(changed)} changed since this plan was made "
            f"at {saved.created_at}; nothing was applied; run dsr plan again{drift}"
        )
