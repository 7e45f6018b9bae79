"""Planning erasures: a pure function from the desired requests and the observed matches
to the ordered graph of actions that erases each subject and proves it.

Order, per request: delete or mask at writable sources (children before parents, each
table one action), or wait for the owner of a source dsr may not write; refresh each
platform that ingests a changed source (once per run, however many requests touched it),
then each downstream system; verify the subject is absent from every mapped table; purge
system-generated logs; record completion. A completed erasure stays desired: a subject that
comes back is erased again and marked re-ingested. No I/O here (see planner.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

from reconciler.connectors.reflection import SchemaInfo
from reconciler.desired.deadlines import days_left
from reconciler.desired.files import ACCESS_FILE, SYSTEMS_FILE
from reconciler.desired.model import (
    Desired,
    ErasureStrategy,
    Request,
    RequestType,
    SubjectKind,
    System,
    SystemRole,
    Table,
    TableKind,
)
from reconciler.desired.order import children_first, ingestion_order, upstream_of
from reconciler.observe.model import Match, Observed
from reconciler.plan.actions import Action, Reason
from reconciler.plan.constraints import check_masks, foreign_key_problems
from reconciler.plan.model import Change, Params, PlanPart, RequestView, Retained, TableCount
from reconciler.plan.permissions import user_id
from reconciler.store.records import Outcome, RequestState, Tombstone


@dataclass(slots=True)
class _Req:
    """One request while it is being planned."""

    id: str
    request: Request | None
    systems: list[str]
    completed_on: date | None
    erase: list[Change] = field(default_factory=list)
    awaits: list[Change] = field(default_factory=list)
    retained: list[Retained] = field(default_factory=list)
    blocked: str | None = None


def plan_erasures(
    desired: Desired, observed: Observed, today: date, removals: tuple[str, ...] = ()
) -> PlanPart:
    """`removals`: ids of the permission plan's remove_user changes, which a user erasure's
    verification waits for."""
    out = PlanPart()
    for system, obs in sorted(observed.systems.items()):
        if obs.schema is not None and system in desired.systems:
            out.errors += [str(d) for d in check_masks(desired.systems[system], obs.schema)]
    for name, status in sorted(observed.refreshes.items()):
        if status.status is Outcome.FAILED:
            out.warnings.append(
                f"the last refresh of {name} failed at {status.at:%Y-%m-%d %H:%M} UTC: "
                f"{status.message}; dsr retries it when it is needed"
            )

    # What is the same for every request, worked out once (not once per request).
    deletion_order = {
        n: children_first(
            s.tables, _foreign_keys(o.schema if (o := observed.systems.get(n)) else None)
        )
        for n, s in desired.systems.items()
    }
    systems_order = ingestion_order(desired.systems)
    found_in = _systems_with_rows(observed)
    active: list[_Req] = []
    for rid in sorted(_request_ids(desired, observed)):
        req = desired.requests.get(rid)
        done = observed.completed.get(rid)
        view = _closed_view(rid, req, done is not None, today)
        if view is not None:
            out.views.append(view)
            continue
        if req is None:
            assert done is not None
            out.warnings.append(
                f"{rid}: the request file is gone, but the erasure completed on "
                f"{done.completed_at:%Y-%m-%d} stays in force (its tombstone is in the state store)"
            )
        kind = req.subject_kind if req else done.subject_kind if done else SubjectKind.CUSTOMER
        if kind is SubjectKind.USER:
            _plan_user(desired, observed, rid, req, done, today, removals, out)
            continue
        wanted = req.systems if req else done.systems if done else None
        scope = sorted(n for n in desired.systems if not wanted or n in wanted)
        r = _Req(rid, req, scope, done.completed_at.date() if done else None)
        unreadable = [
            f"{n}: {observed.systems[n].error}"
            for n in scope
            if n in observed.systems and observed.systems[n].error
        ]
        if unreadable:
            r.blocked = "cannot read " + "; ".join(unreadable)
        else:
            _plan_sources(desired, observed, r, deletion_order, out)
        active.append(r)

    refreshes = _plan_refreshes(desired, observed, active, out)
    for r in active:
        _plan_rest(desired, observed, r, refreshes, systems_order, found_in, today, out)
    return out


def _request_ids(desired: Desired, observed: Observed) -> set[str]:
    ids = {r.id for r in desired.requests.values() if r.type is RequestType.ERASURE}
    return ids | set(observed.completed)


def _view(
    rid: str,
    req: Request | None,
    today: date,
    state: RequestState,
    note: str | None = None,
    *,
    reingested: bool = False,
    retained: Iterable[Retained] = (),
    kind: SubjectKind = SubjectKind.CUSTOMER,
) -> RequestView:
    return RequestView(
        id=rid,
        type=RequestType.ERASURE,
        subject_kind=req.subject_kind if req else kind,
        state=state,
        due=req.due.isoformat() if req else None,
        days_left=days_left(req.due, today) if req else None,
        note=note,
        reingested=reingested,
        retained=tuple(retained),
    )


def _closed_view(rid: str, req: Request | None, completed: bool, today: date) -> RequestView | None:
    """A view for a request that gets no actions (cancelled, held, a user erasure), else None."""
    if req is None:
        return None
    if req.legal_hold:
        return _view(rid, req, today, RequestState.HELD, f"legal hold: {req.legal_hold}")
    if req.cancelled and not completed:
        return _view(rid, req, today, RequestState.CANCELLED, f"cancelled: {req.cancelled}")
    return None


def _plan_user(
    desired: Desired,
    observed: Observed,
    rid: str,
    req: Request | None,
    done: Tombstone | None,
    today: date,
    removals: tuple[str, ...],
    out: PlanPart,
) -> None:
    """A platform user: their roles go (remove_user, from the permission plan) and their user
    data is deleted or masked in the platform; the audit log stays."""
    system = desired.permissions_system()
    completed_on = done.completed_at.date() if done else None

    def view(
        state: RequestState, note: str | None = None, retained: Iterable[Retained] = ()
    ) -> None:
        out.views.append(
            _view(
                rid,
                req,
                today,
                state,
                note,
                retained=retained,
                kind=SubjectKind.USER,
                reingested=completed_on is not None and state in _OPEN,
            )
        )

    if system is None or system.permissions is None:
        view(RequestState.BLOCKED, f"no system in {SYSTEMS_FILE} declares permissions")
        return
    if rid in observed.users_in_access:
        out.warnings.append(
            f"{rid} erases a platform user who is still in {ACCESS_FILE}: the two "
            f"disagree; remove the user from {ACCESS_FILE} too"
        )
        view(RequestState.BLOCKED, f"the user is still in {ACCESS_FILE}")
        return
    obs = observed.systems.get(system.name)
    if obs is None or obs.error:
        view(
            RequestState.BLOCKED,
            f"cannot read {system.name}: {obs.error if obs else 'not observed'}",
        )
        return
    r = _Req(rid, req, [system.name], completed_on)
    for table in children_first(system.user_data, _foreign_keys(obs.schema)):
        spec = system.user_data[table]
        m = obs.matches.get((rid, table))
        if m is None or not m.keys:
            continue
        _keep_retained(r, system.name, table, spec, m)
        if not m.pending:
            continue
        action = Action.DELETE_ROWS if spec.erasure is ErasureStrategy.DELETE else Action.MASK_ROWS
        reason, detail = _why(r, Reason.USER_DATA, "user data created by the platform")
        r.erase.append(
            Change(
                id=f"{action.value}:{system.name}:{rid}:{table}",
                action=action,
                system=system.name,
                target=table,
                reason=reason,
                detail=detail,
                params=Params(table=table, user_data=True),
                request=rid,
                rows=len(m.pending),
                depends_on=tuple(c.id for c in r.erase),
            )
        )
    roles = obs.matches.get((rid, system.permissions.table))
    # Verification waits for this user's removal only: another user's failing removal must
    # not hold it back. The user's names are in the roles observed for them, (user, role).
    names = {user for user, _role in (roles.keys if roles else ())}
    own_removals = tuple(
        rid_
        for u in sorted(names)
        if (rid_ := f"remove_user:{system.name}:{user_id(u)}") in removals
    )
    if completed_on and not r.erase and not (roles and roles.pending):
        view(RequestState.COMPLETED, f"completed {completed_on}", r.retained)
        return
    tables = [
        t
        for t, spec in sorted(system.user_data.items())
        if spec.erasure in (ErasureStrategy.DELETE, ErasureStrategy.MASK)
    ] + [system.permissions.table]
    verify = Change(
        id=f"verify:{system.name}:{rid}",
        action=Action.VERIFY,
        system=system.name,
        target=", ".join(tables),
        reason=Reason.PROVE_ABSENT,
        detail="no roles left; user data deleted or masked",
        params=Params(tables=tuple(tables), user_data=True),
        request=rid,
        depends_on=tuple(c.id for c in r.erase) + own_removals,
    )
    complete = _complete(r, (verify.id,))
    out.changes += [*r.erase, verify, complete]
    view(RequestState.PENDING, None, r.retained)


def _keep_retained(r: _Req, system: str, table: str, spec: Table, m: Match) -> None:
    """A table the erasure keeps rows of (retained, or masked in place): for the receipt."""
    if spec.erasure is not ErasureStrategy.DELETE:
        masked = spec.erasure is ErasureStrategy.MASK
        r.retained.append(Retained(system, table, len(m.keys), spec.reason or "", masked=masked))


def _match(observed: Observed, system: str, rid: str, table: str) -> Match | None:
    obs = observed.systems.get(system)
    return obs.matches.get((rid, table)) if obs else None


def _plan_sources(
    desired: Desired,
    observed: Observed,
    r: _Req,
    deletion_order: Mapping[str, list[str]],
    out: PlanPart,
) -> None:
    """`deletion_order`: each system's tables, children first."""
    for name in r.systems:
        system = desired.systems[name]
        if system.role is not SystemRole.SOURCE:
            continue
        schema = observed.systems[name].schema if name in observed.systems else None
        waiting: list[tuple[str, int]] = []
        for table in deletion_order[name]:
            spec = system.tables[table]
            m = _match(observed, name, r.id, table)
            if spec.kind is not TableKind.DATA or spec.erasure is None or m is None or not m.keys:
                continue
            _keep_retained(r, name, table, spec, m)
            if not m.pending:
                continue
            if not system.erase_at_source:
                waiting.append((table, len(m.pending)))
                continue
            action = (
                Action.DELETE_ROWS if spec.erasure is ErasureStrategy.DELETE else Action.MASK_ROWS
            )
            reason, detail = (
                _why(r, Reason.ERASE_AT_SOURCE, "erased at the source")
                if action is Action.DELETE_ROWS
                else _why(
                    r,
                    Reason.MASK_RETAINED,
                    f"masked: {', '.join(sorted(spec.mask))}; retained: {spec.reason}",
                )
            )
            change = Change(
                id=f"{action.value}:{name}:{r.id}:{table}",
                action=action,
                system=name,
                target=table,
                reason=reason,
                detail=detail,
                params=Params(table=table),
                request=r.id,
                rows=len(m.pending),
                depends_on=tuple(c.id for c in r.erase if c.system == name),
            )
            if action is Action.DELETE_ROWS:
                matches = {
                    t: found for t in system.tables if (found := _match(observed, name, r.id, t))
                }
                out.errors += foreign_key_problems(system, schema, r.id, table, m, matches)
            r.erase.append(change)
        if waiting:
            r.awaits.append(
                Change(
                    id=f"await_source:{name}:{r.id}",
                    action=Action.AWAIT_SOURCE,
                    system=name,
                    target=", ".join(f"{t} {_rows(n)}" for t, n in waiting),
                    reason=Reason.SOURCE_NOT_WRITABLE,
                    detail=f"{name} is not writable by dsr: its owner must delete it",
                    params=Params(
                        tables=tuple(t for t, _ in waiting),
                        awaited=tuple(TableCount(name, t, n) for t, n in waiting),
                    ),
                    request=r.id,
                    rows=sum(n for _, n in waiting),
                )
            )


def _plan_refreshes(
    desired: Desired, observed: Observed, active: list[_Req], out: PlanPart
) -> dict[str, Change]:
    """One refresh per platform or downstream system that needs it, in ingestion order."""
    erased_at: dict[str, list[str]] = defaultdict(list)
    waiting: set[tuple[str, str]] = set()
    for r in active:
        for c in r.erase:
            erased_at[c.system].append(c.id)
        waiting |= {(r.id, c.system) for c in r.awaits}
    refreshes: dict[str, Change] = {}
    for name in ingestion_order(desired.systems):
        system = desired.systems[name]
        if system.role is SystemRole.SOURCE:
            continue
        changed = [u for u in system.ingests if erased_at.get(u) or u in refreshes]
        upstream = upstream_of(desired.systems, name)
        stale = [
            r.id
            for r in active
            if not r.blocked
            and name in r.systems
            and _holds(desired.systems[name], observed, r.id)
            and not any((r.id, u) in waiting for u in upstream)
        ]
        if not changed and not stale:
            continue
        if system.refresh is None:
            out.warnings.append(
                f"{name} must be refreshed but declares no refresh in {SYSTEMS_FILE}"
            )
            continue
        detail = (
            f"after {', '.join(changed)}"
            if changed
            else (
                f"still holds {len(stale)} erased subject{'s' if len(stale) > 1 else ''} "
                "whose sources are clean"
            )
        )
        if system.role is SystemRole.DOWNSTREAM and changed:
            detail += " (downstream)"
        refreshes[name] = Change(
            id=f"refresh:{name}",
            action=Action.REFRESH,
            system=name,
            target=detail,
            reason=Reason.UPSTREAM_CHANGED if changed else Reason.HOLDS_ERASED,
            detail=detail,
            # Its place in the plan puts it after every source change; it does not need them
            # to succeed (one failed erasure must not hold back every other request's).
            depends_on=tuple(refreshes[u].id for u in changed if u in refreshes),
        )
    out.changes += [c for r in active for c in r.erase + r.awaits]
    out.changes += refreshes.values()
    return refreshes


def _plan_rest(
    desired: Desired,
    observed: Observed,
    r: _Req,
    refreshes: Mapping[str, Change],
    systems_order: list[str],
    found_in: Mapping[str, set[str]],
    today: date,
    out: PlanPart,
) -> None:
    """`systems_order`: every system after those it ingests; `found_in`: per request, the
    systems where some of its rows were found (`_systems_with_rows`)."""

    def view(state: RequestState, note: str | None = None) -> RequestView:
        return _view(
            r.id,
            r.request,
            today,
            state,
            note,
            reingested=r.completed_on is not None and state in _OPEN,
            retained=r.retained,
        )

    if r.blocked:
        out.views.append(view(RequestState.BLOCKED, r.blocked))
        return
    logs = [
        (name, table, m)
        for name in r.systems
        for table, spec in sorted(desired.systems[name].tables.items())
        if spec.kind is TableKind.SYSTEM_LOG
        and (m := _match(observed, name, r.id, table)) is not None
        and m.pending
    ]
    holds = [n for n in r.systems if _holds(desired.systems[n], observed, r.id)]
    if r.completed_on and not (r.erase or r.awaits or logs or holds):
        out.views.append(view(RequestState.COMPLETED, f"completed {r.completed_on}"))
        return
    needs_refresh = [
        n
        for n in holds
        if desired.systems[n].role is not SystemRole.SOURCE and n not in refreshes and not r.awaits
    ]
    if needs_refresh and any(desired.systems[n].refresh is None for n in needs_refresh):
        out.views.append(
            view(RequestState.BLOCKED, f"{', '.join(needs_refresh)} cannot be refreshed")
        )
        return
    before = [c.id for c in r.erase + r.awaits] + [
        refreshes[n].id for n in r.systems if n in refreshes
    ]
    verifies = []
    for name in [n for n in systems_order if n in r.systems]:
        tables = [
            t
            for t, spec in sorted(desired.systems[name].tables.items())
            if spec.kind is TableKind.DATA
            and spec.erasure in (ErasureStrategy.DELETE, ErasureStrategy.MASK)
        ]
        if not tables:
            continue
        verifies.append(
            Change(
                id=f"verify:{name}:{r.id}",
                action=Action.VERIFY,
                system=name,
                target=", ".join(tables),
                reason=Reason.PROVE_ABSENT,
                detail="absent (deleted) or masked in every mapped table",
                params=Params(tables=tuple(tables)),
                request=r.id,
                depends_on=tuple(before),
            )
        )
    purges = [
        Change(
            id=f"purge_logs:{name}:{r.id}:{table}",
            action=Action.PURGE_LOGS,
            system=name,
            target=table,
            reason=Reason.SYSTEM_LOGS,
            detail="system-generated logs that mention the subject",
            params=Params(table=table),
            request=r.id,
            rows=len(m.pending),
            depends_on=tuple(v.id for v in verifies),
        )
        for name, table, m in logs
    ]
    nothing = r.completed_on is None and not _found_anywhere(observed, r, found_in)
    if nothing:
        out.warnings.append(
            f"{r.id}: its identities match no row in any mapped system; completing it records "
            "'no data found' (that is the answer to the data subject): check the identifier "
            "for a typo first"
        )
    complete = _complete(r, tuple(c.id for c in verifies + purges), no_data_found=nothing)
    out.changes += verifies + purges + [complete]
    if r.awaits:
        waiting_on = ", ".join(c.system for c in r.awaits)
        out.views.append(view(RequestState.WAITING, f"waiting on {waiting_on}"))
    else:
        out.views.append(view(RequestState.PENDING))


def _found_anywhere(observed: Observed, r: _Req, found_in: Mapping[str, set[str]]) -> bool:
    """Any row of the subject, in any table of any system the request covers, now or in an
    earlier run (retained, masked or already deleted ones count: they were found)."""
    return bool(r.erase or r.awaits or r.retained or observed.facts.get(r.id)) or any(
        name in found_in.get(r.id, ()) for name in r.systems
    )


def _systems_with_rows(observed: Observed) -> dict[str, set[str]]:
    """Per request, the systems where some of its rows were found: one pass over every
    match, instead of one per request."""
    found: dict[str, set[str]] = defaultdict(set)
    for name, obs in observed.systems.items():
        for (rid, _table), m in obs.matches.items():
            if m.keys:
                found[rid].add(name)
    return found


def _complete(r: _Req, depends_on: tuple[str, ...], *, no_data_found: bool = False) -> Change:
    """Recording completion: the receipt (with what was retained, and why) and the tombstone."""
    reason, detail = _why(r, Reason.ALL_STEPS_DONE, "all steps done")
    return Change(
        id=f"complete:dsr:{r.id}",
        action=Action.COMPLETE,
        system="dsr",
        target="receipt in the audit log",
        reason=reason,
        detail=detail,
        params=Params(
            systems=tuple(r.systems),
            retained=tuple(r.retained),
            reingested=r.completed_on is not None,
            due=r.request.due.isoformat() if r.request else None,
            no_data_found=no_data_found,
        ),
        request=r.id,
        depends_on=depends_on,
    )


def _holds(system: System, observed: Observed, rid: str) -> bool:
    """The system still holds rows of the subject that erasure must remove or mask."""
    return any(
        (m := _match(observed, system.name, rid, t)) is not None and m.pending
        for t, spec in system.tables.items()
        if spec.kind is TableKind.DATA
        and spec.erasure in (ErasureStrategy.DELETE, ErasureStrategy.MASK)
    )


def _why(r: _Req, reason: Reason, detail: str) -> tuple[Reason, str]:
    """The reason for one of a request's changes, and its words: a subject that came back is
    erased again as re-ingested, whatever the step."""
    if r.completed_on is None:
        return reason, detail
    came_back = f"re-ingested: the erasure completed on {r.completed_on}, the subject came back"
    return Reason.REINGESTED, came_back


def _foreign_keys(schema: SchemaInfo | None) -> list[tuple[str, str]]:
    return [(fk.table, fk.referred_table) for fk in schema.foreign_keys] if schema else []


_OPEN = (RequestState.PENDING, RequestState.WAITING)


def _rows(n: int) -> str:
    return f"{n} row{'s' if n != 1 else ''}"
