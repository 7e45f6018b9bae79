"""`dsr status`: every request with its state and deadline, every system with its last
observation and refresh, the lock and the last run. Pure: it judges and renders a `Snapshot`
read from the state store by the command, as text for people or as JSON for programs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from reconciler.desired.approvals import approval_status
from reconciler.desired.deadlines import days_left
from reconciler.desired.model import Desired, RequestType
from reconciler.store import (
    ExportRecord,
    LockInfo,
    Observation,
    RefreshRecord,
    RequestRecord,
    RequestState,
    RunInfo,
    Tombstone,
)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the state store says, as `dsr status` reads it."""

    observations: dict[str, Observation]
    refreshes: dict[str, RefreshRecord]
    states: dict[str, RequestRecord]
    tombstones: dict[str, Tombstone]
    exports: dict[str, ExportRecord]
    last_run: RunInfo | None
    lock: LockInfo | None = None
    package_problems: dict[str, str] = field(default_factory=dict)  # by request id


@dataclass(frozen=True, slots=True)
class RequestStatus:
    """One request as status shows it."""

    id: str
    type: RequestType
    state: RequestState
    due: date | None  # None: a tombstone whose request file is gone
    days_left: int | None
    detail: str | None
    finished_on: date | None = None  # completed or delivered
    late_days: int = 0  # finished after its due date by so many days

    @property
    def overdue(self) -> bool:
        return self.days_left is not None and self.days_left < 0 and not self.state.finished

    @property
    def urgency(self) -> tuple[int, int, str]:
        """Overdue first (the most overdue first), then open requests by due date, then the
        finished ones."""
        if self.state.finished or self.days_left is None:
            return (2, 0, self.id)
        return (0 if self.overdue else 1, self.days_left, self.id)


def when(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC"


def request_statuses(desired: Desired, snap: Snapshot, today: date) -> list[RequestStatus]:
    """Every request, the most urgent first."""
    ids = set(desired.requests) | set(snap.tombstones)
    return sorted((_request_status(desired, snap, rid, today) for rid in ids), key=_urgency)


def _urgency(s: RequestStatus) -> tuple[int, int, str]:
    return s.urgency


def _request_status(desired: Desired, snap: Snapshot, rid: str, today: date) -> RequestStatus:
    req = desired.requests.get(rid)
    recorded = snap.states.get(rid)
    detail: str | None
    if req is not None and req.legal_hold:
        state, detail = RequestState.HELD, req.legal_hold
    elif req is not None and req.cancelled and rid not in snap.tombstones:
        state, detail = RequestState.CANCELLED, req.cancelled
    elif recorded is not None:
        state, detail = recorded.state, recorded.detail
    elif rid in snap.tombstones:
        state, detail = RequestState.COMPLETED, None
    else:
        state, detail = RequestState.PENDING, "not applied yet"
    finished_on = None
    if rid in snap.tombstones and state in (RequestState.COMPLETED, RequestState.NO_DATA_FOUND):
        finished_on = snap.tombstones[rid].completed_at.date()
        detail = f"{state.value.replace('_', ' ')} {when(snap.tombstones[rid].completed_at)}"
    built = snap.exports.get(rid)
    if req is not None and req.delivered is not None and built is not None:
        state, finished_on = RequestState.DELIVERED, req.delivered.at
        detail = f"delivered by {req.delivered.by} on {req.delivered.at}"
    elif built is not None and built.expired_at is not None:
        state, detail = RequestState.EXPIRED, f"package deleted {when(built.expired_at)}"
    elif built is not None and rid in snap.package_problems:
        state = RequestState.PENDING  # not ready: as the plan says, it is to be built again
        detail = f"PROBLEM: the package {snap.package_problems[rid]}; dsr apply builds it again"
    elif built is not None:
        state, detail = RequestState.READY, f"{built.path} (expires {when(built.expires_at)})"
    elif req is not None and req.type is RequestType.EXPORT and not req.cancelled:
        approved, why = approval_status(req, desired.access, today)
        if not approved:
            state, detail = RequestState.AWAITING_APPROVAL, why
    late = (finished_on - req.due).days if req is not None and finished_on else 0
    return RequestStatus(
        id=rid,
        type=req.type if req is not None else RequestType.ERASURE,
        state=state,
        due=req.due if req is not None else None,
        days_left=days_left(req.due, today) if req is not None else None,
        detail=detail,
        finished_on=finished_on,
        late_days=max(late, 0),
    )


def render_status(desired: Desired, snap: Snapshot, today: date) -> str:
    lines = [f"workspace {desired.settings.workspace}", "", "Requests"]
    statuses = request_statuses(desired, snap, today)
    if not statuses:
        lines.append("  none")
    lines += [_request_line(s) for s in statuses]
    lines += ["", "Systems"]
    width = max((len(n) for n in desired.systems), default=0)
    for name, system in sorted(desired.systems.items()):
        lines.append(f"  {name:<{width}}  {system.role.value:<10}  {_system_state(snap, name)}")
    lines.append("")
    lines.append(f"Lock: {snap.lock.describe() if snap.lock else 'free'}")
    last = snap.last_run
    if last is None:
        lines.append("Last run: none")
    else:
        lines.append(
            f"Last run: {last.run_id} started {when(last.started_at)}, "
            f"{last.outcome or 'unfinished'}"
        )
    return "\n".join(lines) + "\n"


def _request_line(s: RequestStatus) -> str:
    state = s.state.value.replace("_", " ")
    if s.due is None:
        due = "request file removed; tombstone keeps the erasure in force"
    elif s.overdue:
        assert s.days_left is not None
        state = f"overdue, {state}"
        due = f"due {s.due} (OVERDUE by {_days(-s.days_left)})"
    elif s.late_days:
        state = f"{state}, late"
        due = f"due {s.due} (LATE by {_days(s.late_days)})"
    elif s.state.finished:
        due = f"due {s.due}"  # answered: no days are left to count
    elif s.days_left is not None:
        due = f"due {s.due} ({_days(s.days_left)} left)"
    else:
        due = f"due {s.due}"
    line = f"  {s.id:<22} {s.type.value:<8} {state:<18} {due}"
    return line + (f"  {s.detail}" if s.detail else "")


def _days(n: int) -> str:
    return f"{n} day{'s' if n != 1 else ''}"


def _system_state(snap: Snapshot, name: str) -> str:
    obs = snap.observations.get(name)
    if obs is None:
        state = "never observed"
    elif obs.error:
        state = f"observed {when(obs.at)}: ERROR {obs.error}"
    else:
        state = f"observed {when(obs.at)}: ok"
    r = snap.refreshes.get(name)
    if r is not None:
        state += f"; last refresh {when(r.at)}: {r.status}"
        if r.message:
            state += f" ({r.message})"
    return state


def status_json(desired: Desired, snap: Snapshot, today: date) -> dict[str, Any]:
    """The same facts for programs: ids, states, dates and counts only."""
    return {
        "workspace": desired.settings.workspace,
        "requests": [
            {
                "id": s.id,
                "type": s.type.value,
                "state": s.state.value,
                "due": s.due.isoformat() if s.due else None,
                # a finished request has no days left to count; late_by_days says how it ended
                "days_left": None if s.state.finished else s.days_left,
                "overdue": s.overdue,
                "finished_on": s.finished_on.isoformat() if s.finished_on else None,
                "late_by_days": s.late_days,
                "detail": s.detail,
            }
            for s in request_statuses(desired, snap, today)
        ],
        "systems": [
            {
                "name": name,
                "role": system.role.value,
                "observed_at": _iso(snap.observations[name].at)
                if name in snap.observations
                else None,
                "error": snap.observations[name].error if name in snap.observations else None,
                "last_refresh": {
                    "at": _iso(snap.refreshes[name].at),
                    "status": snap.refreshes[name].status.value,
                    "message": snap.refreshes[name].message,
                }
                if name in snap.refreshes
                else None,
            }
            for name, system in sorted(desired.systems.items())
        ],
        "lock": {
            "holder": snap.lock.holder,
            "pid": snap.lock.pid,
            "host": snap.lock.host,
            "since": _iso(snap.lock.acquired_at),
        }
        if snap.lock
        else None,
        "last_run": {
            "run_id": snap.last_run.run_id,
            "started_at": _iso(snap.last_run.started_at),
            "outcome": snap.last_run.outcome,
        }
        if snap.last_run
        else None,
    }


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds")
