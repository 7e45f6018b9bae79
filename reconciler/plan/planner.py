"""The planner: a pure function from (desired, observed, now) to a Plan.

No I/O, no clock, no globals, no SQLAlchemy, no click. Every decision the reconciler makes
is made here, so that it can be tested with plain data (see tests/planner/cases).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from datetime import datetime

from reconciler.desired.model import Access, Desired, Observed
from reconciler.plan.actions import Action
from reconciler.plan.erasures import plan_erasures
from reconciler.plan.exports import plan_exports
from reconciler.plan.model import Change, Plan

ACCESS_FILE = "policies/access.yaml"


def _uid(user: str) -> str:
    """A short, stable stand-in for a user name in action ids (ids land in the journal)."""
    return hashlib.sha256(user.encode()).hexdigest()[:12]


def plan(
    desired: Desired,
    observed: Observed,
    *,
    now: datetime,
    max_revocations: int | None = None,
) -> Plan:
    changes: list[Change] = []
    warnings: list[str] = []
    errors: list[str] = []

    system = desired.permissions_system()
    if system is not None and desired.access is not None:
        obs = observed.systems.get(system.name)
        if obs is None or obs.permissions is None:
            reason = obs.error if obs and obs.error else "not observed"
            errors.append(f"cannot plan permissions: {system.name} could not be read ({reason})")
        else:
            limit = desired.settings.max_revocations if max_revocations is None else max_revocations
            _plan_permissions(
                system.name, desired.access, obs.permissions, limit, changes, warnings, errors
            )

    removals = tuple(c.id for c in changes if c.action is Action.REMOVE_USER)
    erasures = plan_erasures(desired, observed, now.date(), removals)
    exports = plan_exports(desired, observed, now)
    return Plan(
        workspace=desired.settings.workspace,
        created_at=now.isoformat(timespec="seconds"),
        desired_digest=desired.digest,
        observed_digests=observed.digests(),
        # Exports first: a package holds the subject's data as it was before this run erased
        # anything (an export and an erasure of the same person may be applied together).
        changes=tuple(exports.changes + changes + erasures.changes),
        warnings=tuple(warnings + erasures.warnings + exports.warnings),
        errors=tuple(errors + erasures.errors + exports.errors),
        requests=tuple(sorted(erasures.views + exports.views, key=lambda v: v.id)),
    )


def _plan_permissions(
    system: str,
    access: Access,
    actual: frozenset[tuple[str, str]],
    max_revocations: int,
    changes: list[Change],
    warnings: list[str],
    errors: list[str],
) -> None:
    held: dict[str, set[str]] = defaultdict(set)
    for user, role in actual:
        held[user].add(role)

    grants: list[Change] = []
    revokes: list[Change] = []
    removals: list[Change] = []
    for name, want in sorted(access.users.items()):
        have = held.get(name, set())
        for role in sorted(want.roles - have):
            grants.append(
                Change(
                    id=f"grant_role:{system}:{_uid(name)}:{role}",
                    action=Action.GRANT_ROLE,
                    system=system,
                    target=f"{role} to {name}",
                    reason=f"in {ACCESS_FILE}",
                    params={"user": name, "role": role},
                    rows=1,
                )
            )
        for role in sorted(have - want.roles):
            if want.protected:
                warnings.append(
                    f"{name} holds {role} on {system}, which {ACCESS_FILE} does not give them; "
                    "the user is protected, so dsr leaves it"
                )
                continue
            revokes.append(
                Change(
                    id=f"revoke_role:{system}:{_uid(name)}:{role}",
                    action=Action.REVOKE_ROLE,
                    system=system,
                    target=f"{role} from {name}",
                    reason=f"not in {ACCESS_FILE} (manual grant)",
                    params={"user": name, "role": role},
                    rows=1,
                )
            )
    for name in sorted(set(held) - set(access.users)):
        roles = sorted(held[name])
        removals.append(
            Change(
                id=f"remove_user:{system}:{_uid(name)}",
                action=Action.REMOVE_USER,
                system=system,
                target=f"{name} (roles: {', '.join(roles)})",
                reason=f"user not in {ACCESS_FILE}",
                params={"user": name},
                rows=len(roles),
            )
        )

    # Grants first, so that no moment of the apply leaves fewer roles than the end state.
    changes.extend(grants + revokes + removals)

    revoked = sum(c.rows for c in revokes + removals)
    if revoked > max_revocations:
        errors.append(
            f"refusing to revoke {revoked} roles on {system}: more than --max-revocations "
            f"{max_revocations} (dsr.yaml safety.max_revocations); check {ACCESS_FILE}, "
            "then raise the limit for this run if it is intended"
        )

    admins_before = {u for u, roles in held.items() if access.admin_role in roles}
    admins_after = {u for u, want in access.users.items() if access.admin_role in want.roles}
    admins_after |= {
        u
        for u in admins_before
        if u in access.users and access.users[u].protected  # protected users keep what they hold
    }
    if admins_before and not admins_after:
        errors.append(
            f"refusing to remove the last holder of the {access.admin_role} role on {system}: "
            f"{ACCESS_FILE} must give {access.admin_role} to at least one user"
        )
