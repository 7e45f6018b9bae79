"""Building and expiring export packages: the subject's rows read as they are now, written
once into the outbox (`package.py` knows the zip), recorded in the state store, and deleted
when their time is up (the audit record stays)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from reconciler.apply.context import ChangeResult, Context, Handled
from reconciler.desired.approvals import approval_status
from reconciler.desired.model import SubjectKind
from reconciler.errors import DsrError
from reconciler.observe.model import Match
from reconciler.outbox.boxes import Outbox, build, outbox_for
from reconciler.outbox.package import TableRows
from reconciler.plan.model import Change
from reconciler.store import ExportRecord, Outcome


def build_export(change: Change, ctx: Context) -> Handled:
    """Reads the subject's rows as they are now and writes the package, once."""
    rid = change.request or ""
    request = ctx.desired.requests.get(rid)
    if request is None:
        raise DsrError(f"{rid}: the request file is gone; nothing is exported")
    # The approval is judged again now, whatever the plan says.
    approved, why = approval_status(request, ctx.desired.access, ctx.clock().date())
    if not approved or request.cancelled:
        raise DsrError(f"{rid}: not exported: {why if not approved else 'cancelled'}")
    user = request.subject_kind is SubjectKind.USER
    tables = []
    observed = ctx.fresh()  # rows as they are now: refreshes may have renumbered platform rows
    for wanted in change.params.exports:
        name, table = wanted.system, wanted.table
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
    outbox = _outbox(ctx)
    replaced = None
    if rid in ctx.observed.exports:
        # Built before, and planned again: the package went missing or was altered. What is
        # there now is not dsr's package; it goes, and the package is built afresh.
        replaced = ctx.observed.exports[rid].manifest_sha256
        outbox.expire(rid)
    info = build(
        outbox,
        ctx.store,
        rid,
        tables,
        generated_at=now,
        extra={"expires_at": (now + days).isoformat()},
        clock=ctx.clock,
    )
    # A package a killed run already published is finished, not rebuilt: its clock counts
    # from when it was made, so finishing it late does not keep personal data longer.
    expires = info.generated_at + days
    path = info.location
    record = ExportRecord(rid, path, info.manifest_sha256, info.rows, info.generated_at, expires)
    details: dict[str, object] = {
        "path": path,
        "manifest_sha256": info.manifest_sha256,
        "files": info.files,
        "expires_at": expires.isoformat(),
    }
    if replaced is not None:
        details["replaces_manifest_sha256"] = replaced
    # The record and its audit record together (as an erasure's receipt and tombstone): a
    # run killed between the two would leave a package no build record vouches for.
    result = ChangeResult(change, Outcome.SUCCEEDED, rows=info.rows)
    ctx.store.record_export_change(ctx.audit_event(change, result, details), record)
    return result, None


def expire_export(change: Change, ctx: Context) -> Handled:
    rid = change.request or ""
    record = ctx.store.exports().get(rid)
    if record is None:
        raise DsrError(f"{rid}: no export was recorded")
    deleted = _outbox(ctx).expire(rid)
    result = ChangeResult(change, Outcome.SUCCEEDED)
    details = {"path": record.path, "deleted": deleted, "manifest_sha256": record.manifest_sha256}
    expired = replace(record, expired_at=ctx.clock())
    ctx.store.record_export_change(ctx.audit_event(change, result, details), expired)
    return result, None


def _outbox(ctx: Context) -> Outbox:
    return outbox_for(ctx.desired.settings, ctx.workspace, ctx.store, ctx.clock)
