"""The planner: a pure function from (desired, observed, now) to a Plan.

No I/O, no clock, no globals, no SQLAlchemy, no click. Every decision the reconciler makes
is made here or in the modules it calls (`permissions`, `erasures`, `exports`), so that it can
be tested with plain data (see tests/plan/cases).
"""

from __future__ import annotations

from datetime import datetime

from reconciler.desired.model import Desired
from reconciler.observe.model import Observed
from reconciler.plan.actions import Action
from reconciler.plan.erasures import plan_erasures
from reconciler.plan.exports import plan_exports
from reconciler.plan.model import Plan, PlanPart
from reconciler.plan.permissions import plan_permissions


def plan(
    desired: Desired,
    observed: Observed,
    *,
    now: datetime,
    max_revocations: int | None = None,
) -> Plan:
    permissions = PlanPart()
    system = desired.permissions_system()
    if system is not None and desired.access is not None:
        obs = observed.systems.get(system.name)
        if obs is None or obs.permissions is None:
            reason = obs.error if obs and obs.error else "not observed"
            permissions.errors.append(
                f"cannot plan permissions: {system.name} could not be read ({reason})"
            )
        else:
            limit = desired.settings.max_revocations if max_revocations is None else max_revocations
            permissions = plan_permissions(system.name, desired.access, obs.permissions, limit)

    removals = tuple(c.id for c in permissions.changes if c.action is Action.REMOVE_USER)
    erasures = plan_erasures(desired, observed, now.date(), removals)
    exports = plan_exports(desired, observed, now)
    return Plan(
        workspace=desired.settings.workspace,
        created_at=now.isoformat(timespec="seconds"),
        desired_digest=desired.digest,
        observed_digests=observed.digests(),
        # Exports first: a package holds the subject's data as it was before this run erased
        # anything (an export and an erasure of the same person may be applied together).
        changes=tuple(exports.changes + permissions.changes + erasures.changes),
        warnings=tuple(permissions.warnings + erasures.warnings + exports.warnings),
        errors=tuple(permissions.errors + erasures.errors + exports.errors),
        requests=tuple(sorted(erasures.views + exports.views, key=lambda v: v.id)),
    )
