"""The executor: carries out a plan's changes, in order, journalled and audited.

Each change is journalled as started before it runs and as succeeded or failed after, and
each one carried out leaves an audit record. A failed change does not stop independent
ones; the changes that depend on it are skipped. Every change is idempotent at the
connector, so a run killed at any point converges when planned and applied again. This
module must not decide what to change (the planner does) nor print (it reports progress
through a callback).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from reconciler.actions import Action
from reconciler.connectors import Connector
from reconciler.errors import DsrError
from reconciler.identity import IdentityKey, hash_identity
from reconciler.model import Desired
from reconciler.plan import Change, Plan
from reconciler.store import AuditEvent, StateStore

SUCCEEDED, FAILED, SKIPPED = "succeeded", "failed", "skipped"


@dataclass(frozen=True, slots=True)
class Outcome:
    change: Change
    status: str
    rows: int = 0
    message: str | None = None


@dataclass(slots=True)
class ApplyResult:
    run_id: str
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != SUCCEEDED]

    @property
    def ok(self) -> bool:
        return not self.failed


def apply(
    plan: Plan,
    desired: Desired,
    connectors: Mapping[str, Connector],
    store: StateStore,
    key: IdentityKey,
    *,
    clock: Callable[[], datetime],
    progress: Callable[[Outcome], None] = lambda _o: None,
) -> ApplyResult:
    if not plan.can_apply:
        raise DsrError("the plan is refused: " + "; ".join(plan.errors))
    run_id = store.begin_run(plan.id, now=clock())
    result = ApplyResult(run_id)
    not_done: set[str] = set()
    for change in plan.changes:
        blocked = [d for d in change.depends_on if d in not_done]
        if blocked:
            outcome = Outcome(change, SKIPPED, message=f"depends on {', '.join(blocked)}")
            store.journal(run_id, change.id, SKIPPED, now=clock(), message=outcome.message)
        else:
            store.journal(run_id, change.id, "started", now=clock())
            try:
                rows, details = _carry_out(change, desired, connectors)
                outcome = Outcome(change, SUCCEEDED, rows=rows)
            except DsrError as exc:
                outcome = Outcome(change, FAILED, message=str(exc))
                details = {}
            store.journal(run_id, change.id, outcome.status, now=clock(), message=outcome.message)
            store.append_audit(
                AuditEvent(
                    at=clock(),
                    run_id=run_id,
                    action=change.action.value,
                    system=change.system,
                    target=audit_target(change, key),
                    outcome=outcome.status,
                    request=change.request,
                    details={"rows": outcome.rows, **details}
                    | ({"error": outcome.message} if outcome.message else {}),
                )
            )
        if outcome.status != SUCCEEDED:
            not_done.add(change.id)
        result.outcomes.append(outcome)
        progress(outcome)
    store.end_run(run_id, "succeeded" if result.ok else "failed", now=clock())
    return result


def recover_interrupted(store: StateStore, *, clock: Callable[[], datetime]) -> list[str]:
    """Closes runs that were killed: a change journalled as started but never finished gets
    an audit record saying so (its effect, if any, is seen by the next observation)."""
    closed = []
    for run in store.unfinished_runs():
        finished = {e.change_id for e in store.journal_entries(run.run_id) if e.status != "started"}
        for entry in store.journal_entries(run.run_id):
            if entry.status == "started" and entry.change_id not in finished:
                action, system, *_ = entry.change_id.split(":") + ["", ""]
                store.append_audit(
                    AuditEvent(
                        at=clock(),
                        run_id=run.run_id,
                        action=action,
                        system=system,
                        target=f"change {entry.change_id}",
                        outcome="interrupted",
                    )
                )
        store.end_run(run.run_id, "interrupted", now=clock())
        closed.append(run.run_id)
    return closed


def _carry_out(
    change: Change, desired: Desired, connectors: Mapping[str, Connector]
) -> tuple[int, dict[str, Any]]:
    system = desired.systems.get(change.system)
    if system is None:
        raise DsrError(f"system {change.system} is no longer in policies/systems.yaml")
    conn = connectors[change.system]
    p = change.params
    if change.action in (Action.GRANT_ROLE, Action.REVOKE_ROLE, Action.REMOVE_USER):
        mapping = system.permissions
        if mapping is None:
            raise DsrError(f"system {change.system} no longer declares permissions")
        if change.action is Action.GRANT_ROLE:
            return conn.grant_role(mapping, p["user"], p["role"]), {"role": p["role"]}
        if change.action is Action.REVOKE_ROLE:
            return conn.revoke_role(mapping, p["user"], p["role"]), {"role": p["role"]}
        return conn.remove_user(mapping, p["user"]), {}
    raise AssertionError(f"unhandled action {change.action}")


def audit_target(change: Change, key: IdentityKey) -> str:
    """The audit log names people only by keyed hash: it outlives their erasure."""
    user = change.params.get("user")
    if user is not None:
        return f"user {hash_identity('email', user, key)}"
    return change.target
