"""What each action does: one handler per `Action`, looked up in `HANDLERS`.

A handler carries out one change against the context's connectors and store and returns its
result with the details its audit record carries (counts, table names, digests: never a row
value). It raises `DsrError` when the change fails; the executor records that and goes on
with the changes that do not depend on it. Every handler is idempotent: run again after a
crash, it changes nothing that is already done. The executor carries out the row changes
(delete, mask, purge) of a batch together through `batched.py`; their handlers here are that,
for a batch of one.
"""

from __future__ import annotations

from typing import Any

from reconciler.apply.batched import run_rows, system_of
from reconciler.apply.context import ChangeResult, Context, Handled, Handler
from reconciler.apply.exports import build_export, expire_export
from reconciler.apply.receipts import complete
from reconciler.apply.refresh import run_refresh
from reconciler.connectors import Connector
from reconciler.desired.files import ACCESS_FILE
from reconciler.desired.model import PermissionsMap
from reconciler.errors import DsrError
from reconciler.faults import kill_point
from reconciler.plan.actions import Action
from reconciler.plan.model import Change
from reconciler.store import Outcome


def _permissions(change: Change, ctx: Context) -> tuple[PermissionsMap, Connector, str]:
    system, conn = system_of(change, ctx)
    if system.permissions is None:
        raise DsrError(f"system {change.system} no longer declares permissions")
    user = change.params.user
    assert user is not None
    # The planner never asks this; checked here too, whatever a plan says.
    access = ctx.desired.access
    wanted = access.users.get(user) if access is not None else None
    if change.action is not Action.GRANT_ROLE and wanted is not None and wanted.protected:
        raise DsrError(f"refusing to {change.action.verb} a protected user in {ACCESS_FILE}")
    return system.permissions, conn, user


def grant_role(change: Change, ctx: Context) -> Handled:
    mapping, conn, user = _permissions(change, ctx)
    role = change.params.role
    assert role is not None
    rows = conn.grant_role(mapping, user, role)
    return ChangeResult(change, Outcome.SUCCEEDED, rows), {"role": role}


def revoke_role(change: Change, ctx: Context) -> Handled:
    mapping, conn, user = _permissions(change, ctx)
    role = change.params.role
    assert role is not None
    rows = conn.revoke_role(mapping, user, role)
    return ChangeResult(change, Outcome.SUCCEEDED, rows), {"role": role}


def remove_user(change: Change, ctx: Context) -> Handled:
    mapping, conn, user = _permissions(change, ctx)
    rows = conn.remove_user(mapping, user)
    return ChangeResult(change, Outcome.SUCCEEDED, rows), {}


def delete_rows(change: Change, ctx: Context) -> Handled:
    return _one(Action.DELETE_ROWS, change, ctx)


def mask_rows(change: Change, ctx: Context) -> Handled:
    return _one(Action.MASK_ROWS, change, ctx)


def purge_logs(change: Change, ctx: Context) -> Handled:
    return _one(Action.PURGE_LOGS, change, ctx)


def _one(action: Action, change: Change, ctx: Context) -> Handled:
    """One row change on its own: a batch of one (the executor batches them; see batched.py)."""
    done = run_rows(action, [change], ctx)[change.id]
    if isinstance(done, DsrError):
        raise done
    return done


def await_source(change: Change, ctx: Context) -> Handled:
    """Nothing to do but wait: the source's owner deletes; every run looks again."""
    return ChangeResult(change, Outcome.WAITING, rows=change.rows, message=change.detail), {}


def refresh(change: Change, ctx: Context) -> Handled:
    system, conn = system_of(change, ctx)
    run_refresh(system, conn, ctx)
    return ChangeResult(change, Outcome.SUCCEEDED), {}


def verify(change: Change, ctx: Context) -> Handled:
    """The subject is absent (or masked) in every table named: observed again, after the
    writes and refreshes before this step."""
    obs = ctx.fresh().systems.get(change.system)
    if obs is None or obs.error:
        raise DsrError(f"cannot verify {change.system}: {obs.error if obs else 'not observed'}")
    tables = list(change.params.tables)
    left = {
        t: len(m.pending)
        for t in tables
        if (m := obs.matches.get((change.request or "", t))) is not None and m.pending
    }
    details: dict[str, Any] = {"tables": tables, "still_present": left}
    if left:
        where = ", ".join(f"{t} {n} row{'s' if n != 1 else ''}" for t, n in left.items())
        message = f"still present in {change.system}: {where}"
        return ChangeResult(change, Outcome.FAILED, message=message), details
    kill_point("verified")
    return ChangeResult(change, Outcome.SUCCEEDED), details


HANDLERS: dict[Action, Handler] = {
    Action.GRANT_ROLE: grant_role,
    Action.REVOKE_ROLE: revoke_role,
    Action.REMOVE_USER: remove_user,
    Action.DELETE_ROWS: delete_rows,
    Action.MASK_ROWS: mask_rows,
    Action.AWAIT_SOURCE: await_source,
    Action.REFRESH: refresh,
    Action.VERIFY: verify,
    Action.PURGE_LOGS: purge_logs,
    Action.COMPLETE: complete,
    Action.BUILD_EXPORT: build_export,
    Action.EXPIRE_EXPORT: expire_export,
}
