"""Planning exports: a pure function from export requests, their approvals and what the
state store says was built, to build and expire actions.

An export is built once its approval counts (an admin in policies/access.yaml, not the
requester, on or after the request was received), exactly once, and expired after
`exports.expire_after_days` (or at once when the request is cancelled). No I/O here.
"""

from __future__ import annotations

from datetime import datetime

from reconciler.desired.approvals import approval_status
from reconciler.desired.deadlines import days_left
from reconciler.desired.model import Desired, Request, RequestType, SubjectKind, TableKind
from reconciler.observe.model import Observed
from reconciler.plan.actions import Action, Reason
from reconciler.plan.model import Change, Params, PlanPart, RequestView, TableCount
from reconciler.store.records import ExportRecord, RequestState


def plan_exports(desired: Desired, observed: Observed, now: datetime) -> PlanPart:
    out = PlanPart()
    today = now.date()
    exports = {r.id for r in desired.requests.values() if r.type is RequestType.EXPORT}
    for rid in sorted(exports | set(observed.exports)):
        req = desired.requests.get(rid)

        def view(
            state: RequestState, note: str | None, req: Request | None = req, rid: str = rid
        ) -> None:
            out.views.append(
                RequestView(
                    id=rid,
                    type=RequestType.EXPORT,
                    subject_kind=req.subject_kind if req else None,
                    state=state,
                    due=req.due.isoformat() if req else None,
                    days_left=days_left(req.due, today) if req else None,
                    note=note,
                )
            )

        built = observed.exports.get(rid)
        if built is not None and built.expired_at is not None:
            if req is not None and req.delivered is not None:
                view(RequestState.DELIVERED, _delivered(req))
            elif req is not None:  # a finished export whose file is gone needs no line
                view(
                    RequestState.EXPIRED,
                    f"expired {built.expired_at:%Y-%m-%d}; the audit record stays",
                )
            continue
        problem = observed.package_problems.get(rid) if built is not None else None
        rebuild: str | None = None
        if built is not None and problem is not None:
            # A package that is missing, replaced or damaged never counts as delivered data:
            # built again while the request still stands, else recorded as lost.
            why_not = _why_not_rebuilt(req, built, desired, now)
            if why_not is None:
                rebuild = f"the package {problem}: built again"
                built = None
            else:
                lost = f"the package {problem}; {why_not}: recorded as lost"
                out.changes.append(_expire(rid, built.path, Reason.PACKAGE_DAMAGED, lost))
                view(RequestState.READY if req else RequestState.EXPIRED, lost, req, rid)
                continue
        if req is None:
            # The request file is gone, but the package is still in the outbox: it expires
            # on time all the same (it holds the subject's data).
            assert built is not None
            note = f"the request file is gone; the package expires {built.expires_at:%Y-%m-%d}"
            if now >= built.expires_at:
                out.changes.append(
                    _expire(rid, built.path, Reason.EXPIRED, _expired(built, desired))
                )
            view(RequestState.READY, note)
            continue
        if built is not None:
            if req.delivered is not None:
                # It reached the subject: the package goes, the audit keeps the record.
                gone = f"{_delivered(req)}: the package is deleted, the audit record stays"
                out.changes.append(_expire(rid, built.path, Reason.DELIVERED, gone, delivered=True))
                view(RequestState.DELIVERED, _delivered(req))
                continue
            if req.cancelled:
                out.changes.append(
                    _expire(rid, built.path, Reason.CANCELLED, "the request was cancelled")
                )
            elif now >= built.expires_at:
                out.changes.append(
                    _expire(rid, built.path, Reason.EXPIRED, _expired(built, desired))
                )
            ready = f"{built.path} (expires {built.expires_at:%Y-%m-%d}), not yet delivered"
            if built.rows == 0:
                view(RequestState.NO_DATA_FOUND, f"no data found: the package says so; {ready}")
            else:
                view(RequestState.READY, f"ready: {ready}")
            continue
        if req.delivered is not None:
            view(RequestState.DELIVERED, f"{_delivered(req)}; dsr built no package for it")
            continue
        if req.cancelled:
            view(RequestState.CANCELLED, f"cancelled: {req.cancelled}")
            continue
        approved, why = approval_status(req, desired.access, today)
        if not approved:
            view(RequestState.AWAITING_APPROVAL, why)
            continue
        tables, unreadable = _tables(desired, observed, req)
        if unreadable:
            view(RequestState.BLOCKED, unreadable)
            continue
        if not tables:
            out.warnings.append(
                f"{rid}: its identities match no row in any mapped system; the package will "
                "say that no personal data was found (the answer to the data subject): check "
                "the identifier for a typo first"
            )
        out.changes.append(
            Change(
                id=f"build_export:dsr:{rid}",
                action=Action.BUILD_EXPORT,
                system="dsr",
                # A shared state store keeps packages itself: a runner's disk does not last.
                target=(
                    f"{desired.settings.outbox}/{rid}.zip"
                    if desired.settings.state_url is None
                    else f"{rid}.zip in the state store"
                ),
                reason=Reason.PACKAGE_DAMAGED if rebuild else Reason.APPROVED,
                detail=rebuild or f"{why}; {len(tables)} table{'s' if len(tables) != 1 else ''}",
                params=Params(exports=tuple(tables)),
                request=rid,
                rows=sum(t.rows for t in tables),
            )
        )
        view(RequestState.PENDING, rebuild or why)
    return out


def _why_not_rebuilt(
    req: Request | None, built: ExportRecord, desired: Desired, now: datetime
) -> str | None:
    """Why a damaged package is not built again, or None when it is."""
    if req is None:
        return "its request file is gone"
    if req.cancelled:
        return "the request was cancelled"
    if now >= built.expires_at:
        return f"it expired {built.expires_at:%Y-%m-%d}"
    approved, why = approval_status(req, desired.access, now.date())
    return None if approved else why


def _expire(rid: str, path: str, reason: Reason, detail: str, *, delivered: bool = False) -> Change:
    return Change(
        id=f"expire_export:dsr:{rid}",
        action=Action.EXPIRE_EXPORT,
        system="dsr",
        target=path,
        reason=reason,
        detail=detail,
        params=Params(delivered=delivered),
        request=rid,
    )


def _delivered(req: Request) -> str:
    assert req.delivered is not None
    return f"delivered by {req.delivered.by} on {req.delivered.at}"


def _expired(built: ExportRecord, desired: Desired) -> str:
    days = desired.settings.expire_after_days
    return f"expired {built.expires_at:%Y-%m-%d} (exports.expire_after_days {days})"


def _tables(
    desired: Desired, observed: Observed, req: Request
) -> tuple[list[TableCount], str | None]:
    """The subject's rows in every table an export includes."""
    found: list[TableCount] = []
    user = req.subject_kind is SubjectKind.USER
    for name, system in sorted(desired.systems.items()):
        if req.systems and name not in req.systems:
            continue
        if user and system.permissions is None:
            continue
        obs = observed.systems.get(name)
        if obs is not None and obs.error:
            return [], f"cannot read {name}: {obs.error}"
        if obs is None:
            continue
        mapped = system.user_data if user else system.tables
        names = [t for t, spec in sorted(mapped.items()) if spec.kind is not TableKind.AUDIT_LOG]
        if user and system.permissions is not None:
            names.append(system.permissions.table)
        for t in names:
            m = obs.matches.get((req.id, t))
            if m is not None and m.keys:
                found.append(TableCount(name, t, len(m.keys)))
    return found, None
