"""The executor: carries out a plan's changes, in order, journalled and audited.

Each change is journalled as started before it runs and as finished after, and each one
carried out leaves an audit record (counts and hashes only). A failed change does not stop
independent ones; the changes that depend on it are skipped, and say why. Every change is
idempotent at the connector, so a run killed at any point converges when planned and
applied again. This module must not decide what to change (the planner does) nor print
(it reports progress through a callback).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from reconciler.apply.package import (
    TableRows,
    build_package,
    expire_package,
    read_manifest,
    resolve_outbox,
)
from reconciler.connectors import Connector
from reconciler.desired.model import Desired, Match, Observed, SubjectKind, System
from reconciler.errors import DsrError
from reconciler.plan.actions import PERMISSION_ACTIONS, Action
from reconciler.plan.model import Change, Plan
from reconciler.privacy.identity import IdentityKey, hash_identity
from reconciler.privacy.masking import mask_value
from reconciler.privacy.withhold import withhold_values
from reconciler.store import AuditEvent, AuditRecord, ExportRecord, StateStore, Tombstone

SUCCEEDED, FAILED, SKIPPED, WAITING = "succeeded", "failed", "skipped", "waiting"
REFRESH_TIMEOUT = 3600  # seconds a refresh command may run


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
        return [o for o in self.outcomes if o.status in (FAILED, SKIPPED)]

    @property
    def waiting(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == WAITING]

    @property
    def ok(self) -> bool:
        return not self.failed


@dataclass(slots=True)
class Context:
    """What the changes run against. `reobserve` looks at the systems again (after
    refreshes, to verify); the executor calls it lazily, once per batch of writes."""

    desired: Desired
    observed: Observed
    connectors: Mapping[str, Connector]
    store: StateStore
    key: IdentityKey
    workspace: Path
    reobserve: Callable[[], Observed]
    clock: Callable[[], datetime]
    _fresh: Observed | None = None

    def __post_init__(self) -> None:
        self._fresh = self.observed  # made under the lock, just now: fresh until a write

    def fresh(self) -> Observed:
        if self._fresh is None:
            self._fresh = self.reobserve()
        return self._fresh

    def changed(self) -> None:
        self._fresh = None


def apply(
    plan: Plan,
    ctx: Context,
    *,
    progress: Callable[[Outcome], None] = lambda _o: None,
) -> ApplyResult:
    if not plan.can_apply:
        raise DsrError("the plan is refused: " + "; ".join(plan.errors))
    store, clock = ctx.store, ctx.clock
    run_id = store.begin_run(plan.id, now=clock())
    result = ApplyResult(run_id)
    # change id -> (why its dependents cannot run, whether that is a failure or a wait)
    blockers: dict[str, tuple[str, bool]] = {}
    for change in plan.changes:
        blocked = [blockers[d] for d in change.depends_on if d in blockers]
        if blocked:
            failures = [why for why, failure in blocked if failure]
            status = SKIPPED if failures else WAITING
            outcome = Outcome(change, status, message=(failures or [blocked[0][0]])[0])
            store.journal(run_id, change.id, "skipped", now=clock(), message=outcome.message)
        else:
            store.journal(run_id, change.id, "started", now=clock())
            details: dict[str, Any] = {}
            try:
                outcome, details = _carry_out(change, ctx, run_id, result)
            except DsrError as exc:
                outcome = Outcome(change, FAILED, message=str(exc))
            if change.action.writes and outcome.status == SUCCEEDED:
                ctx.changed()
            # The audit record first: a run killed between the two leaves a journal entry
            # still "started", which recovery closes unless this record already exists.
            if outcome.status in (SUCCEEDED, FAILED) and change.action is not Action.COMPLETE:
                _audit(ctx, run_id, change, outcome, details)
            journal_status = "skipped" if outcome.status == WAITING else outcome.status
            store.journal(run_id, change.id, journal_status, now=clock(), message=outcome.message)
        if outcome.status != SUCCEEDED:
            blockers[change.id] = (_why(outcome), outcome.status in (FAILED, SKIPPED))
        result.outcomes.append(outcome)
        progress(outcome)
    _record_request_states(plan, result, ctx)
    store.end_run(run_id, "succeeded" if result.ok else "failed", now=clock())
    return result


def _why(outcome: Outcome) -> str:
    c = outcome.change
    if c.action is Action.AWAIT_SOURCE:
        return f"waiting on {c.system}"
    if outcome.status == FAILED:
        return f"{c.action.verb} {c.system} failed: {outcome.message}"
    return outcome.message or f"{c.id} did not run"


def _audit(
    ctx: Context, run_id: str, change: Change, outcome: Outcome, details: dict[str, Any]
) -> AuditRecord:
    extra = {"error": outcome.message} if outcome.message else {}
    return ctx.store.append_audit(
        AuditEvent(
            at=ctx.clock(),
            run_id=run_id,
            action=change.action.value,
            system=change.system,
            target=audit_target(change, ctx.key),
            outcome=outcome.status,
            request=change.request,
            details={"change": change.id, "rows": outcome.rows, **details, **extra},
        )
    )


def _carry_out(
    change: Change, ctx: Context, run_id: str, result: ApplyResult
) -> tuple[Outcome, dict[str, Any]]:
    action, p = change.action, change.params
    if action is Action.COMPLETE:
        return _complete(change, ctx, run_id, result), {}
    if action is Action.AWAIT_SOURCE:
        return Outcome(change, WAITING, rows=change.rows, message=change.reason), {}
    if action is Action.BUILD_EXPORT:
        return _build_export(change, ctx)
    if action is Action.EXPIRE_EXPORT:
        return _expire_export(change, ctx)
    system = ctx.desired.systems.get(change.system)
    if system is None:
        raise DsrError(f"system {change.system} is no longer in policies/systems.yaml")
    conn = ctx.connectors[change.system]
    if action in (Action.GRANT_ROLE, Action.REVOKE_ROLE, Action.REMOVE_USER):
        mapping = system.permissions
        if mapping is None:
            raise DsrError(f"system {change.system} no longer declares permissions")
        if action is Action.GRANT_ROLE:
            rows = conn.grant_role(mapping, p["user"], p["role"])
        elif action is Action.REVOKE_ROLE:
            rows = conn.revoke_role(mapping, p["user"], p["role"])
        else:
            rows = conn.remove_user(mapping, p["user"])
        return Outcome(change, SUCCEEDED, rows), ({"role": p["role"]} if "role" in p else {})
    if action is Action.REFRESH:
        return _refresh(change, system, conn, ctx), {}
    if action is Action.VERIFY:
        return _verify(change, ctx)
    table = (system.user_data if p.get("user_data") else system.tables)[p["table"]]
    assert table.primary_key
    if action is Action.DELETE_ROWS:
        keys = _match(ctx.observed, change).pending
        rows = conn.delete_where_in(table.name, table.primary_key, keys)
        return Outcome(change, SUCCEEDED, rows), {"table": table.name}
    if action is Action.PURGE_LOGS:
        keys = _match(ctx.fresh(), change).pending
        rows = conn.delete_where_in(table.name, table.primary_key, keys)
        return Outcome(change, SUCCEEDED, rows), {"table": table.name}
    if action is Action.MASK_ROWS:
        keys = _match(ctx.observed, change).pending
        cols = sorted(table.mask)
        current = conn.select_where_in(
            table.name, [table.primary_key, *cols], table.primary_key, keys
        )
        updates = [
            {
                table.primary_key: row[0],
                **{
                    c: mask_value(table.mask[c], v, ctx.key)
                    for c, v in zip(cols, row[1:], strict=True)
                },
            }
            for row in current
        ]
        rows = conn.update_by_key(table.name, table.primary_key, updates) if updates else 0
        return Outcome(change, SUCCEEDED, rows), {"table": table.name, "columns": cols}
    raise AssertionError(f"unhandled action {action}")


def _match(observed: Observed, change: Change) -> Match:
    obs = observed.systems.get(change.system)
    if obs is None or obs.error:
        raise DsrError(f"{change.system} could not be read: {obs.error if obs else 'not observed'}")
    return obs.matches.get((change.request or "", change.params["table"]), Match())


def _refresh(change: Change, system: System, conn: Connector, ctx: Context) -> Outcome:
    spec = system.refresh
    assert spec is not None
    try:
        if spec.sql:
            conn.run_sql(list(spec.sql))
        else:
            _run_command(list(spec.command), ctx.workspace)
    except DsrError as exc:
        ctx.store.record_refresh(system.name, now=ctx.clock(), status=FAILED, message=str(exc))
        raise
    ctx.store.record_refresh(system.name, now=ctx.clock(), status=SUCCEEDED)
    return Outcome(change, SUCCEEDED)


def _run_command(argv: list[str], cwd: Path) -> None:
    """Runs a refresh command in the workspace. `python` means the Python running dsr, so
    a workspace's own jobs run in dsr's environment wherever it is installed."""
    if argv and argv[0] in ("python", "python3"):
        argv = [sys.executable, *argv[1:]]
    try:
        done = subprocess.run(
            argv, cwd=cwd, capture_output=True, text=True, timeout=REFRESH_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DsrError(f"refresh command {argv[0]!r} could not run: {exc}") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        last = withhold_values(lines[-1][:300]) if lines else "no output"
        raise DsrError(f"refresh command exited with {done.returncode}: {last}")


def _verify(change: Change, ctx: Context) -> tuple[Outcome, dict[str, Any]]:
    observed = ctx.fresh()
    obs = observed.systems.get(change.system)
    if obs is None or obs.error:
        raise DsrError(f"cannot verify {change.system}: {obs.error if obs else 'not observed'}")
    tables = change.params["tables"].split(",")
    left = {
        t: len(m.pending)
        for t in tables
        if (m := obs.matches.get((change.request or "", t))) is not None and m.pending
    }
    details: dict[str, Any] = {"tables": tables, "still_present": left}
    if left:
        where = ", ".join(f"{t} {n} row{'s' if n != 1 else ''}" for t, n in left.items())
        return Outcome(
            change, FAILED, message=f"still present in {change.system}: {where}"
        ), details
    return Outcome(change, SUCCEEDED), details


def _complete(change: Change, ctx: Context, run_id: str, result: ApplyResult) -> Outcome:
    """Writes the receipt to the audit log and the tombstone to the state store."""
    rid = change.request or ""
    records = ctx.store.audit_records(rid)
    # Since the last completion the tombstone points at: if a run died between writing a
    # receipt and its tombstone, the next receipt covers that run's work again.
    previous = ctx.observed.completed.get(rid)
    receipt_hash = previous.receipt_hash if previous else None
    last = max((i for i, r in enumerate(records) if r.hash == receipt_hash), default=-1)
    since = [r for r in records[last + 1 :] if r.outcome == SUCCEEDED]
    tables: dict[str, dict[str, Any]] = defaultdict(dict)
    for r in since:
        counts = {"delete_rows": "deleted", "mask_rows": "masked", "purge_logs": "purged"}
        if r.action in counts:
            entry = tables[f"{r.system}.{r.details.get('table')}"]
            entry[counts[r.action]] = entry.get(counts[r.action], 0) + int(r.details.get("rows", 0))
    for kept in json.loads(change.params.get("retained", "[]")):
        entry = tables[f"{kept['system']}.{kept['table']}"]
        entry["retained"] = kept["rows"]
        entry["reason"] = kept["reason"]
    scope = set(change.params.get("systems", "").split(","))
    refreshes = {
        o.change.system: o.status
        for o in result.outcomes
        if o.change.action is Action.REFRESH and o.change.system in scope
    }
    verified = sorted(r.system for r in since if r.action == Action.VERIFY.value)
    receipt = {
        "tables": dict(sorted(tables.items())),
        "refreshes": refreshes,
        "verified": verified,
        "reingested": change.reason.startswith("re-ingested"),
        # Steps a killed run may or may not have carried out; verification covered them.
        "interrupted": [r.target for r in records[last + 1 :] if r.outcome == "interrupted"],
    }
    record = _audit(ctx, run_id, change, Outcome(change, SUCCEEDED), {"receipt": receipt})
    request = ctx.desired.requests.get(rid)
    if request is not None:
        identities = tuple((i.type, i.hash) for i in request.identities)
        kind, systems = request.subject_kind.value, request.systems
    elif previous is not None:
        identities, kind, systems = previous.identities, previous.subject_kind, previous.systems
    else:
        raise DsrError(f"{rid}: neither a request file nor a tombstone")
    ctx.store.record_tombstone(Tombstone(rid, kind, identities, systems, ctx.clock(), record.hash))
    return Outcome(change, SUCCEEDED)


def _build_export(change: Change, ctx: Context) -> tuple[Outcome, dict[str, Any]]:
    """Reads the subject's rows as they are now and writes the package, once."""
    rid = change.request or ""
    request = ctx.desired.requests[rid]
    user = request.subject_kind is SubjectKind.USER
    tables = []
    observed = ctx.fresh()  # rows as they are now: refreshes may have renumbered platform rows
    for name, table, _rows in json.loads(change.params["tables"]):
        system = ctx.desired.systems[name]
        obs = observed.systems[name]
        m = obs.matches.get((rid, table), Match())
        if user and system.permissions is not None and table == system.permissions.table:
            columns: tuple[str, ...] = (system.permissions.user, system.permissions.role)
            rows = sorted(m.keys)
        else:
            spec = (system.user_data if user else system.tables)[table]
            assert spec.primary_key and obs.schema is not None
            columns = tuple(obs.schema.tables[table])
            at = columns.index(spec.primary_key)
            found = ctx.connectors[name].select_where_in(table, columns, spec.primary_key, m.keys)
            rows = sorted(found, key=lambda row: repr(row[at]))
        tables.append(TableRows(name, table, columns, tuple(tuple(r) for r in rows)))
    now = ctx.clock()
    days = timedelta(days=ctx.desired.settings.expire_after_days)
    outbox = resolve_outbox(ctx.workspace, ctx.desired.settings.outbox)
    info = build_package(
        outbox, rid, tables, generated_at=now, extra={"expires_at": (now + days).isoformat()}
    )
    # A package a killed run already published is finished, not rebuilt: its clock counts
    # from when it was made, so finishing it late does not keep personal data longer.
    now = datetime.fromisoformat(read_manifest(info.path)["generated_at"])
    expires = now + days
    path = info.path.relative_to(ctx.workspace).as_posix()
    ctx.store.record_export(ExportRecord(rid, path, info.manifest_sha256, info.rows, now, expires))
    details = {
        "path": path,
        "manifest_sha256": info.manifest_sha256,
        "files": info.files,
        "expires_at": expires.isoformat(),
    }
    return Outcome(change, SUCCEEDED, rows=info.rows), details


def _expire_export(change: Change, ctx: Context) -> tuple[Outcome, dict[str, Any]]:
    rid = change.request or ""
    record = ctx.store.exports().get(rid)
    if record is None:
        raise DsrError(f"{rid}: no export was recorded")
    outbox = resolve_outbox(ctx.workspace, ctx.desired.settings.outbox)
    deleted = expire_package(outbox, rid)
    ctx.store.record_export(replace(record, expired_at=ctx.clock()))
    return Outcome(change, SUCCEEDED), {
        "path": record.path,
        "deleted": deleted,
        "manifest_sha256": record.manifest_sha256,
    }


def _record_request_states(plan: Plan, result: ApplyResult, ctx: Context) -> None:
    by_request: dict[str, list[Outcome]] = defaultdict(list)
    for o in result.outcomes:
        if o.change.request:
            by_request[o.change.request].append(o)
    now = ctx.clock()
    for view in plan.requests:
        outcomes = by_request.get(view.id, [])
        done = any(o.change.action is Action.COMPLETE and o.status == SUCCEEDED for o in outcomes)
        bad = [o for o in outcomes if o.status in (FAILED, SKIPPED)]
        waiting = [
            o for o in outcomes if o.status == WAITING and o.change.action is Action.AWAIT_SOURCE
        ]
        finished = {o.change.action for o in outcomes if o.status == SUCCEEDED} & {
            Action.BUILD_EXPORT,
            Action.EXPIRE_EXPORT,
        }
        if Action.EXPIRE_EXPORT in finished:
            state, detail = "expired", None
        elif Action.BUILD_EXPORT in finished:
            state, detail = "ready", None
        elif done:
            state, detail = "completed", None
        elif waiting:
            state = "waiting"
            detail = "; ".join(f"{o.change.system}: {o.change.target}" for o in waiting)
        elif bad:
            state, detail = "blocked", bad[0].message
        else:
            state, detail = view.state, view.note
        ctx.store.set_request_state(view.id, state, now=now, detail=detail)


def recover_interrupted(store: StateStore, *, clock: Callable[[], datetime]) -> list[str]:
    """Closes runs that were killed: a change journalled as started but never finished gets
    an audit record saying so (its effect, if any, is seen by the next observation)."""
    closed = []
    runs = store.unfinished_runs()
    audited = (
        {(r.run_id, r.details.get("change")) for r in store.audit_records()} if runs else set()
    )
    for run in runs:
        entries = store.journal_entries(run.run_id)
        finished = {e.change_id for e in entries if e.status != "started"}
        for entry in entries:
            if entry.status != "started" or entry.change_id in finished:
                continue
            if (run.run_id, entry.change_id) in audited:
                continue  # carried out and audited; killed before the journal said so
            action, system, *rest = entry.change_id.split(":") + ["", ""]
            per_request = action not in (a.value for a in PERMISSION_ACTIONS + (Action.REFRESH,))
            store.append_audit(
                AuditEvent(
                    at=clock(),
                    run_id=run.run_id,
                    action=action,
                    system=system,
                    target=f"change {entry.change_id}",
                    outcome="interrupted",
                    request=rest[0] if per_request and rest[0] else None,
                    details={"change": entry.change_id, "rows": "unknown (interrupted)"},
                )
            )
        store.end_run(run.run_id, "interrupted", now=clock())
        closed.append(run.run_id)
    return closed


def audit_target(change: Change, key: IdentityKey) -> str:
    """The audit log names people only by keyed hash: it outlives their erasure."""
    user = change.params.get("user")
    if user is not None:
        return f"user {hash_identity('email', user, key)}"
    return change.target
