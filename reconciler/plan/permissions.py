"""Planning permissions: the roles `policies/access.yaml` gives, against the roles the platform
holds. Pure: no I/O, no clock.

A role the platform lacks is granted; a role it holds that access.yaml does not give is
revoked; a user it holds that access.yaml does not list is removed. Grants come first, so that
no moment of the apply leaves fewer roles than the end state. Protected users are never
revoked; the plan is refused when it would revoke more than the limit, or remove the last
holder of the admin role.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict

from reconciler.desired.files import ACCESS_FILE
from reconciler.desired.model import Access
from reconciler.plan.actions import Action, Reason
from reconciler.plan.model import Change, Params, PlanPart


def user_id(user: str) -> str:
    """A short, stable stand-in for a user name in action ids (ids land in the journal)."""
    return hashlib.sha256(user.encode()).hexdigest()[:12]


def plan_permissions(
    system: str, access: Access, actual: frozenset[tuple[str, str]], max_revocations: int
) -> PlanPart:
    out = PlanPart()
    held: dict[str, set[str]] = defaultdict(set)
    for user, role in actual:
        held[user].add(role)

    grants: list[Change] = []
    revokes: list[Change] = []
    removals: list[Change] = []
    nothing: frozenset[str] = frozenset()
    for name, want in sorted(access.users.items()):
        have = held.get(name, nothing)
        if have == want.roles:
            continue  # most users: nothing to grant or revoke
        for role in sorted(want.roles - have):
            grants.append(
                Change(
                    id=f"grant_role:{system}:{user_id(name)}:{role}",
                    action=Action.GRANT_ROLE,
                    system=system,
                    target=f"{role} to {name}",
                    reason=Reason.IN_ACCESS,
                    detail=f"in {ACCESS_FILE}",
                    params=Params(user=name, role=role),
                    rows=1,
                )
            )
        for role in sorted(have - want.roles):
            if want.protected:
                out.warnings.append(
                    f"{name} holds {role} on {system}, which {ACCESS_FILE} does not give them; "
                    "the user is protected, so dsr leaves it"
                )
                continue
            revokes.append(
                Change(
                    id=f"revoke_role:{system}:{user_id(name)}:{role}",
                    action=Action.REVOKE_ROLE,
                    system=system,
                    target=f"{role} from {name}",
                    reason=Reason.MANUAL_GRANT,
                    detail=f"not in {ACCESS_FILE} (manual grant)",
                    params=Params(user=name, role=role),
                    rows=1,
                )
            )
    for name in sorted(set(held) - set(access.users)):
        roles = sorted(held[name])
        removals.append(
            Change(
                id=f"remove_user:{system}:{user_id(name)}",
                action=Action.REMOVE_USER,
                system=system,
                target=f"{name} (roles: {', '.join(roles)})",
                reason=Reason.NOT_IN_ACCESS,
                detail=f"user not in {ACCESS_FILE}",
                params=Params(user=name),
                rows=len(roles),
            )
        )
    out.changes = grants + revokes + removals

    revoked = sum(c.rows for c in revokes + removals)
    if revoked > max_revocations:
        out.errors.append(
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
        out.errors.append(
            f"refusing to remove the last holder of the {access.admin_role} role on {system}: "
            f"{ACCESS_FILE} must give {access.admin_role} to at least one user"
        )
    return out
