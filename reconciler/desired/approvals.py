"""Whether an export request's approvals count: the tenant-admin rule, as a pure function.

An export is sent only once a tenant admin has confirmed it. An approval counts when its
approver holds the admin role (`admin_role`) in policies/access.yaml, is not the person who
requested the export, and approved on or after the day the request was received. Approvals
that do not count stay in the request file (they are a reviewed record); the plan shows why
each one does not count.

Pure: no I/O, no clock, no printing. Names are compared as the loader built them, except the
requester, who is compared case-insensitively after trimming (`requested_by` is free text).
"""

from __future__ import annotations

import difflib
from datetime import date, timedelta

from reconciler.desired.files import ACCESS_FILE
from reconciler.desired.model import Access, Approval, Request

AWAITING = "awaiting approval by a tenant admin"


def approval_problems(
    request: Request, access: Access | None, approval: Approval, today: date | None = None
) -> list[str]:
    """Why `approval` does not count for `request`, each reason a phrase; empty if it counts.
    With `today`, an approval dated later (beyond the one day `dsr approve` allows for time
    zones) does not count either."""
    reasons: list[str] = []
    user = access.users.get(approval.by) if access is not None else None
    if access is None:
        reasons.append(f"cannot hold the admin role: there is no {ACCESS_FILE}")
    elif user is None:
        reasons.append(f"is not a user in {ACCESS_FILE}{_did_you_mean(approval.by, access)}")
    elif access.admin_role not in user.roles:
        reasons.append(f"does not hold the {access.admin_role} role")
    if same_person(approval.by, request.requested_by):
        reasons.append("requested it and cannot approve it")
    if today is not None and approval.at > today + timedelta(days=1):
        reasons.append(f"is dated {approval.at}, in the future")
    if approval.at < request.received:
        reasons.append(
            f"approved on {approval.at}, before the request was received on {request.received}"
        )
    return reasons


def _did_you_mean(name: str, access: Access) -> str:
    """A user of access.yaml that `name` likely means: the same or a close name before the
    `@` (`Erin`, `erin@contoso.exmaple`), never one that only shares the domain."""
    local = name.partition("@")[0].casefold()
    by_local = {u.partition("@")[0].casefold(): u for u in sorted(access.users, reverse=True)}
    close = difflib.get_close_matches(local, list(by_local), n=1, cutoff=0.8)
    return f" (did you mean '{by_local[close[0]]}'?)" if close else ""


def counting_approval(
    request: Request, access: Access | None, today: date | None = None
) -> Approval | None:
    """The approval that counts: the earliest valid one (file order breaks ties), or None."""
    valid = [a for a in request.approvals if not approval_problems(request, access, a, today)]
    return min(valid, key=lambda a: a.at) if valid else None


def approval_status(
    request: Request, access: Access | None, today: date | None = None
) -> tuple[bool, str]:
    """(True, "approved by X on D"), or (False, why not) naming every approval that does not
    count and each of its reasons; "awaiting approval by a tenant admin" when there is none."""
    approval = counting_approval(request, access, today)
    if approval is not None:
        return True, f"approved by {approval.by} on {approval.at}"
    if not request.approvals:
        return False, AWAITING
    rejected = [
        f"{a.by} {' and '.join(approval_problems(request, access, a, today))}"
        for a in request.approvals
    ]
    return False, "awaiting approval: " + "; ".join(rejected)


def same_person(a: str, b: str) -> bool:
    """Two names of one person: compared case-insensitively, trimmed."""
    return a.strip().casefold() == b.strip().casefold()
