"""`dsr status` for people: every request with its state and deadline, every system with its
last observation and refresh, and the last run. Pure: it renders a `Snapshot` read from the
state store by the command."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from reconciler.desired.approvals import approval_status
from reconciler.desired.deadlines import days_left
from reconciler.desired.model import Desired, RequestType
from reconciler.store import (
    ExportRecord,
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


def when(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC"


def render_status(desired: Desired, snap: Snapshot, today: date) -> str:
    lines = [f"workspace {desired.settings.workspace}", "", "Requests"]
    ids = sorted(set(desired.requests) | set(snap.tombstones))
    if not ids:
        lines.append("  none")
    lines += [_request_line(desired, snap, rid, today) for rid in ids]
    lines += ["", "Systems"]
    width = max((len(n) for n in desired.systems), default=0)
    for name, system in sorted(desired.systems.items()):
        lines.append(f"  {name:<{width}}  {system.role.value:<10}  {_system_state(snap, name)}")
    lines.append("")
    last = snap.last_run
    if last is None:
        lines.append("Last run: none")
    else:
        lines.append(
            f"Last run: {last.run_id} started {when(last.started_at)}, "
            f"{last.outcome or 'unfinished'}"
        )
    return "\n".join(lines) + "\n"


def _request_line(desired: Desired, snap: Snapshot, rid: str, today: date) -> str:
    req = desired.requests.get(rid)
    st = snap.states.get(rid)
    detail: str | None
    state: str
    if req is not None and req.legal_hold:
        state, detail = RequestState.HELD, req.legal_hold
    elif req is not None and req.cancelled and rid not in snap.tombstones:
        state, detail = RequestState.CANCELLED, req.cancelled
    elif st is not None:
        state, detail = st.state, st.detail
    elif rid in snap.tombstones:
        state, detail = RequestState.COMPLETED, None
    else:
        state, detail = RequestState.PENDING, "not applied yet"
    if req is None:
        due = "request file removed; tombstone keeps the erasure in force"
        kind = RequestType.ERASURE.value
    else:
        kind = req.type.value
        left = days_left(req.due, today)
        due = f"due {req.due} ({left} days left)" if left >= 0 else f"due {req.due}"
        if left < 0 and not RequestState(state).finished:
            state = f"overdue, {state}"
            due = f"due {req.due} (OVERDUE by {-left} days)"
    if rid in snap.tombstones and state.endswith(RequestState.COMPLETED):
        detail = f"completed {when(snap.tombstones[rid].completed_at)}"
    built = snap.exports.get(rid)
    if built is not None and built.expired_at is not None:
        state, detail = RequestState.EXPIRED, f"package deleted {when(built.expired_at)}"
    elif built is not None:
        state, detail = RequestState.READY, f"{built.path} (expires {when(built.expires_at)})"
    elif req is not None and req.type is RequestType.EXPORT and not req.cancelled:
        approved, why = approval_status(req, desired.access)
        if not approved:
            state, detail = "awaiting approval", why
    line = f"  {rid:<22} {kind:<8} {state:<18} {due}"
    return line + (f"  {detail}" if detail else "")


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
