"""The executor: carries out a plan's changes, in batches, journalled and audited.

The plan is cut into batches (`batches.py`): the row changes, verifications and completions
of every request run together, one batch per dependency level and action, and each batch
costs two commits to the state store whatever its size. A batch is journalled as started
(one transaction) before any of it runs; its effects follow (one statement per table per
chunk for row changes, see `batched.py`); then its audit records (counts and hashes only),
receipts and tombstones and its journal entries are committed together. A failed change does
not stop independent ones; the changes that depend on it are skipped, and say why. Every
change is idempotent, so a run killed at any point converges when planned and applied again
(`recovery.py` closes the killed run).

This module is the loop only: what each action does is in `handlers.py` (a registry from
`Action` to handler) and `batched.py`. It must not decide what to change (the planner does)
nor print (it reports progress through a callback).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reconciler.apply.batched import run_rows
from reconciler.apply.batches import ROW_ACTIONS, batches
from reconciler.apply.context import ChangeResult, Context, Handled
from reconciler.apply.handlers import HANDLERS
from reconciler.errors import DsrError
from reconciler.faults import kill_point
from reconciler.plan.actions import Action
from reconciler.plan.model import Change, Plan
from reconciler.store import Fact, FactKind, JournalStatus, Outcome
from reconciler.store.records import RequestState


@dataclass(slots=True)
class ApplyResult:
    run_id: str
    results: list[ChangeResult] = field(default_factory=list)
    interrupted: bool = False  # stopped at an action boundary when asked to

    @property
    def failed(self) -> list[ChangeResult]:
        return [o for o in self.results if o.status in (Outcome.FAILED, Outcome.SKIPPED)]

    @property
    def waiting(self) -> list[ChangeResult]:
        return [o for o in self.results if o.status is Outcome.WAITING]

    @property
    def ok(self) -> bool:
        return not self.failed


def apply(
    plan: Plan,
    ctx: Context,
    *,
    progress: Callable[[ChangeResult], None] = lambda _r: None,
) -> ApplyResult:
    if not plan.can_apply:
        raise DsrError("the plan is refused: " + "; ".join(plan.errors))
    store, clock = ctx.store, ctx.clock
    ctx.run_id = store.begin_run(plan.id, now=clock())
    kill_point("run_started")
    result = ApplyResult(ctx.run_id)
    ctx.done = result.results
    # change id -> (why its dependents cannot run, whether that is a failure or a wait)
    blockers: dict[str, tuple[str, bool]] = {}
    for batch in batches(plan.changes):
        if ctx.should_stop():
            result.interrupted = True
            break
        for outcome in _run_batch(batch, ctx, blockers):
            if outcome.status is not Outcome.SUCCEEDED:
                blockers[outcome.change.id] = (
                    _why(outcome),
                    outcome.status is not Outcome.WAITING,
                )
            result.results.append(outcome)
            progress(outcome)
    if result.interrupted:
        # The next run re-plans from what it observes; nothing here is half-done.
        store.end_run(ctx.run_id, "interrupted", now=clock())
        return result
    _record_request_states(plan, result, ctx)
    store.end_run(ctx.run_id, "succeeded" if result.ok else "failed", now=clock())
    kill_point("run_ended")
    return result


def _run_batch(
    batch: list[Change], ctx: Context, blockers: dict[str, tuple[str, bool]]
) -> list[ChangeResult]:
    """Carries out one batch (changes of one action, none depending on another); returns
    their results in plan order."""
    store, clock = ctx.store, ctx.clock
    skipped: dict[str, ChangeResult] = {}
    for change in batch:
        blocked = [blockers[d] for d in change.depends_on if d in blockers]
        if blocked:
            failures = [why for why, failure in blocked if failure]
            status = Outcome.SKIPPED if failures else Outcome.WAITING
            skipped[change.id] = ChangeResult(
                change, status, message=(failures or [blocked[0][0]])[0]
            )
    runnable = [c for c in batch if c.id not in skipped]
    store.record_batch(
        ctx.run_id,
        now=clock(),
        journal=[
            (c.id, JournalStatus.SKIPPED, skipped[c.id].message)
            if c.id in skipped
            else (c.id, JournalStatus.STARTED, None)
            for c in batch
        ],
    )
    if not runnable:
        return [skipped[c.id] for c in batch]
    kill_point("journal_started")
    done = _carry_out(runnable, ctx)
    kill_point("change_done")
    outcomes: dict[str, ChangeResult] = {}
    audit = []
    for change in runnable:
        got = done[change.id]
        details: dict[str, Any] | None = {}
        if isinstance(got, DsrError):
            outcome = ChangeResult(change, Outcome.FAILED, message=str(got))
        else:
            outcome, details = got
        if change.action.writes and outcome.status is Outcome.SUCCEEDED:
            ctx.changed()
        if outcome.status in (Outcome.SUCCEEDED, Outcome.FAILED) and details is not None:
            audit.append(ctx.audit_event(change, outcome, details))
        outcomes[change.id] = outcome
    completions, ctx.completions = ctx.completions, []
    # The audit records, receipts and journal entries of the batch in one transaction: a
    # run killed before it leaves the batch "started", which recovery closes as interrupted.
    store.record_batch(
        ctx.run_id,
        now=clock(),
        audit=audit,
        completions=completions,
        journal=[(c.id, _JOURNAL[outcomes[c.id].status], outcomes[c.id].message) for c in runnable],
    )
    kill_point("audited")
    if completions:
        kill_point("receipt")
    return [skipped.get(c.id) or outcomes[c.id] for c in batch]


def _carry_out(changes: list[Change], ctx: Context) -> dict[str, Handled | DsrError]:
    action = changes[0].action
    if action in ROW_ACTIONS:
        return run_rows(action, changes, ctx)
    if action is Action.COMPLETE:  # each receipt counts its request's audit records
        ctx.records = ctx.store.audit_records_of([c.request for c in changes if c.request])
    done: dict[str, Handled | DsrError] = {}
    try:
        for change in changes:
            try:
                done[change.id] = HANDLERS[change.action](change, ctx)
            except DsrError as exc:
                done[change.id] = exc
    finally:
        ctx.records = {}
    return done


_JOURNAL = {
    Outcome.SUCCEEDED: JournalStatus.SUCCEEDED,
    Outcome.FAILED: JournalStatus.FAILED,
    Outcome.WAITING: JournalStatus.SKIPPED,
}


def _why(result: ChangeResult) -> str:
    c = result.change
    if c.action is Action.AWAIT_SOURCE:
        return f"waiting on {c.system}"
    if result.status is Outcome.FAILED:
        return f"{c.action.verb} {c.system} failed: {result.message}"
    return result.message or f"{c.id} did not run"


def _record_request_states(plan: Plan, result: ApplyResult, ctx: Context) -> None:
    by_request: dict[str, list[ChangeResult]] = defaultdict(list)
    for o in result.results:
        if o.change.request:
            by_request[o.change.request].append(o)
    now = ctx.clock()
    states: dict[str, tuple[RequestState, str | None]] = {}
    facts: dict[str, list[Fact]] = {}
    for view in plan.requests:
        outcomes = by_request.get(view.id, [])
        if not outcomes and view.state is RequestState.COMPLETED:
            continue  # re-checked, nothing to do: the store keeps how it ended (no data found?)
        done = {o.change.action: o for o in outcomes if o.status is Outcome.SUCCEEDED}
        bad = [o for o in outcomes if o.status in (Outcome.FAILED, Outcome.SKIPPED)]
        waiting = [
            o
            for o in outcomes
            if o.status is Outcome.WAITING and o.change.action is Action.AWAIT_SOURCE
        ]
        detail: str | None = None
        if Action.EXPIRE_EXPORT in done:
            delivered = done[Action.EXPIRE_EXPORT].change.params.delivered
            state = RequestState.DELIVERED if delivered else RequestState.EXPIRED
        elif Action.BUILD_EXPORT in done:
            empty = done[Action.BUILD_EXPORT].rows == 0
            state = RequestState.NO_DATA_FOUND if empty else RequestState.READY
        elif Action.COMPLETE in done:
            nothing = done[Action.COMPLETE].change.params.no_data_found
            state = RequestState.NO_DATA_FOUND if nothing else RequestState.COMPLETED
        elif waiting:
            state = RequestState.WAITING
            detail = "; ".join(f"{o.change.system}: {o.change.target}" for o in waiting)
        elif bad:
            state, detail = RequestState.BLOCKED, bad[0].message
        else:
            state, detail = view.state, view.note
        states[view.id] = (state, detail)
        if Action.COMPLETE not in done and (found := _facts(outcomes)):
            facts[view.id] = found
    # One transaction for every request's state: a thousand requests, one commit.
    ctx.store.record_requests(states, facts, now=now)


def _facts(outcomes: list[ChangeResult]) -> list[Fact]:
    """What this run saw or did for a request that is still open, for its receipt later:
    rows deleted, masked or purged; rows its sources' owners must delete; rows retained."""
    facts: list[Fact] = []
    for o in outcomes:
        c = o.change
        if c.action in _ACTED and o.status is Outcome.SUCCEEDED and o.rows:
            facts.append(Fact(FactKind.ACTED, c.system, c.params.table or "", o.rows))
        elif c.action is Action.AWAIT_SOURCE:
            facts += [Fact(FactKind.AWAITED, t.system, t.table, t.rows) for t in c.params.awaited]
        elif c.action is Action.COMPLETE:
            facts += [
                Fact(FactKind.RETAINED, r.system, r.table, r.rows, r.reason, r.masked)
                for r in c.params.retained
            ]
    return facts


_ACTED = (Action.DELETE_ROWS, Action.MASK_ROWS, Action.PURGE_LOGS)
