"""`dsr apply [PLANFILE]`: carry out the plan, idempotently, under the state lock.

Everything from observing to the last change happens under the state store's lock, so the
plan applied is the plan made from the state it changes. SIGTERM and Ctrl-C stop it at the
next action boundary: the lock is released, the run is recorded as interrupted, exit 130.
With `CI` set, a local state file is refused (it is gone with the runner) unless
`--allow-local-state` says that is intended.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import click

from reconciler.apply import executor
from reconciler.apply.context import ChangeResult, Context
from reconciler.apply.recovery import recover_interrupted
from reconciler.commands import (
    echo_json,
    format_option,
    identity_key,
    log,
    max_revocations_option,
    observe,
    outbox_of,
    workspace,
)
from reconciler.desired.files import SETTINGS_FILE
from reconciler.errors import DsrError, Interrupted, StalePlan
from reconciler.observe.collect import observe_all
from reconciler.observe.model import Observed
from reconciler.plan import planfile, planner
from reconciler.plan.model import Plan
from reconciler.render import plan as output
from reconciler.render.progress import change_line
from reconciler.store import LockInfo, Outcome
from reconciler.workspace import Workspace, utcnow


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
@click.option(
    "--allow-local-state",
    is_flag=True,
    help="With CI set, apply with a local state file all the same (it is gone with the runner).",
)
@max_revocations_option
@format_option
@click.pass_context
def command(
    ctx: click.Context,
    planfile_path: Path | None,
    auto_approve: bool,
    lock_timeout: float,
    allow_local_state: bool,
    max_revocations: int | None,
    fmt: str,
) -> None:
    """Carry out the plan, idempotently, under the state lock."""
    ws = workspace(ctx)
    refuse_local_state_in_ci(ws, allow_local_state)
    events = log(ctx)
    saved = planfile.read_plan(planfile_path) if planfile_path else None
    key = identity_key(ctx, ws)
    holder = f"{getpass.getuser()}@{socket.gethostname()}: dsr apply"
    show = click.echo if fmt == "text" else (lambda *_a, **_k: None)

    def waiting(info: LockInfo) -> None:
        events.event(
            "lock_wait",
            f"waiting up to {lock_timeout:g} s for the state lock held by {info.describe()}",
            holder=info.holder,
        )

    with (
        stop_requests() as stop,
        ws.store() as store,
        store.lock(holder, timeout=lock_timeout, on_wait=waiting) as lock,
    ):
        if lock.took_over_stale and lock.replaced is not None:
            events.event(
                "lock_takeover",
                f"took over the state lock left by {lock.replaced.describe()}, which is gone",
            )
        recovered = recover_interrupted(store, clock=utcnow)
        for run_id in recovered:
            events.event(
                "recovered", f"run {run_id} was interrupted; recorded in the audit log", run=run_id
            )
        with ws.connectors() as connectors:
            observed, seconds = observe(ctx, ws, connectors, store, key, record=True)
            current = planner.plan(
                ws.desired, observed, now=utcnow(), max_revocations=max_revocations
            )
            if saved is not None:
                check_fresh(saved, current, ws.desired.digest, observed, planfile_path)
            # A saved plan is for review, never authority: what is applied is what the
            # current desired and observed state produce, every safety rule checked now.
            plan = current
            if not plan.can_apply:
                show(output.render_text(plan), nl=False)
                raise DsrError("the plan is refused; nothing was changed")
            # After a killed run, even a plan with nothing to do is carried out: the killed
            # run never recorded the requests' states (waiting, say), and this run does.
            if not plan.has_changes and not plan.blocked and not recovered:
                if fmt == "json":
                    echo_json(_json_result(plan, None))
                else:
                    click.echo(output.summary(plan) + " Nothing to do.")
                return
            unreadable = sum(1 for o in observed.systems.values() if o.error)
            show(
                output.render_text(
                    plan, output.header(plan, len(observed.systems), seconds, unreadable)
                )
            )
            if not plan.has_changes and plan.blocked:
                raise DsrError(blocked_message(plan))
            if not auto_approve:
                confirm(len(plan.changes))

            def progress(result: ChangeResult) -> None:
                line = change_line(result)
                show(line)
                if events.json:
                    events.event(
                        "change",
                        line.strip(),
                        change=result.change.id,
                        status=result.status.value,
                        rows=result.rows,
                    )

            context = Context(
                desired=ws.desired,
                observed=observed,
                connectors=connectors,
                store=store,
                key=key,
                workspace=ws.root,
                reobserve=lambda: observe_all(
                    ws.desired, connectors, store, key, outbox=outbox_of(ws, store)
                ),
                clock=utcnow,
                should_stop=stop,
            )
            result = executor.apply(plan, context, progress=progress)
            seq, digest = store.audit_head()
    # A witness outside the store: `dsr audit verify --head SEQ:HASH` checks against it.
    events.event("audit_head", f"audit head {seq}:{digest}", seq=seq, hash=digest)
    if fmt == "json":
        echo_json(_json_result(plan, result))
    done = sum(1 for o in result.results if o.status is Outcome.SUCCEEDED)
    if result.interrupted:
        raise Interrupted(
            f"interrupted after {done} of {len(plan.changes)} changes (run {result.run_id}); "
            "the lock is released and the next run carries on"
        )
    pending = sorted({o.change.request or "" for o in result.waiting})
    if result.ok:
        if fmt == "text":
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


def refuse_local_state_in_ci(ws: Workspace, allowed: bool) -> None:
    """On a CI runner every job starts on a fresh machine: a state file there is lost, and the
    next job would redo finished work. Refused unless the flag says it is intended."""
    if allowed or not os.environ.get("CI") or ws.desired.settings.state_url is not None:
        return
    raise DsrError(
        f"CI is set and the state store is a local file ({ws.desired.settings.state_path}), "
        f"which is gone with this runner: set state.url in {SETTINGS_FILE} to a shared "
        "database (env:DSR_STATE_URL), or pass --allow-local-state if this is intended"
    )


@contextlib.contextmanager
def stop_requests() -> Iterator[Any]:
    """While applying, SIGTERM and SIGINT ask the executor to stop at the next action
    boundary (instead of killing a write half way); a second signal stops at once."""
    asked: list[int] = []

    def ask(signum: int, _frame: FrameType | None) -> None:
        if asked:
            raise KeyboardInterrupt
        asked.append(signum)

    previous = {s: signal.signal(s, ask) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield lambda: bool(asked)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _json_result(plan: Plan, result: executor.ApplyResult | None) -> dict[str, Any]:
    outcome = "nothing_to_do"
    if result is not None:
        outcome = "interrupted" if result.interrupted else "succeeded" if result.ok else "failed"
    return {
        "plan_id": plan.id,
        "run_id": result.run_id if result else None,
        "outcome": outcome,
        "changes": [
            {
                "id": r.change.id,
                "action": r.change.action.value,
                "system": r.change.system,
                "request": r.change.request,
                "status": r.status.value,
                "rows": r.rows,
                "message": r.message,
            }
            for r in (result.results if result else [])
        ],
        "waiting": sorted({v.id for v in plan.requests if v.state == "waiting"}),
        "blocked": [{"request": v.id, "why": v.note} for v in plan.blocked],
    }


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
    """A saved plan is applied only if planning now gives exactly its changes, from the same
    desired and actual state; otherwise it is refused, saying what planning now would do
    differently. (Its id is an unkeyed digest anyone can recompute, so an edited file must be
    caught by its content, not by its id.)"""
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
    if saved.changes != current.changes or saved.errors != current.errors:
        different = drift or "; its changes are not the ones planning gives (edited?)"
        raise StalePlan(
            f"{path}: this plan is not what planning the same state gives now; nothing was "
            f"applied; run dsr plan again{different}"
        )
