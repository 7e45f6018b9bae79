"""`dsr audit show [ID]` and `dsr audit verify`: the evidence, and a check of its chain."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from reconciler.commands import workspace
from reconciler.errors import DsrError


@click.group("audit")
def command() -> None:
    """The append-only, hash-chained audit log."""


@command.command("show")
@click.argument("request", required=False)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per record.")
@click.pass_context
def show(ctx: click.Context, request: str | None, as_json: bool) -> None:
    """List the audit trail, or the records of one request."""
    ws = workspace(ctx)
    with ws.store() as store:
        records = store.audit_records(request)
    if not records:
        if request and request not in ws.desired.requests:
            raise DsrError(f"{request}: no such request (no request file and no audit records)")
        click.echo(f"no audit records{' for ' + request if request else ''}")
        return
    for r in records:
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "seq": r.seq,
                        "at": r.at.isoformat(),
                        "run_id": r.run_id,
                        "action": r.action,
                        "system": r.system,
                        "target": r.target,
                        "outcome": r.outcome,
                        "request": r.request,
                        "details": r.details,
                        "hash": r.hash,
                    },
                    sort_keys=True,
                )
            )
        elif r.action == "complete" and "receipt" in r.details:
            click.echo(render_receipt(r.seq, r.at, r.request or "", r.hash, r.details["receipt"]))
        else:
            shown = {k: v for k, v in r.details.items() if k != "change"}
            extra = " ".join(f"{k}={v}" for k, v in sorted(shown.items()))
            click.echo(
                f"{r.seq:>5}  {r.at:%Y-%m-%d %H:%M:%S}  {r.action:<13} {r.system:<10} "
                f"{r.outcome:<11} {r.target}  {extra}".rstrip()
            )


def render_receipt(
    seq: int, at: datetime, request: str, digest: str, receipt: dict[str, Any]
) -> str:
    """The evidence of one completed erasure, for a DPO to read."""
    lines = [
        f"{seq:>5}  {at:%Y-%m-%d %H:%M:%S}  RECEIPT {request}"
        + ("  (re-ingested subject erased again)" if receipt.get("reingested") else "")
        + f"  record {digest[:12]}"
    ]
    tables = receipt.get("tables", {})
    width = max((len(t) for t in tables), default=0)
    for table, counts in tables.items():
        done = ", ".join(
            f"{verb} {counts[verb]}"
            for verb in ("deleted", "masked", "purged", "retained")
            if verb in counts
        )
        reason = f"   {counts['reason']}" if counts.get("reason") else ""
        lines.append(f"         {table:<{width}}  {done}{reason}")
    refreshes = receipt.get("refreshes") or {}
    if refreshes:
        lines.append(
            "         refreshed: " + ", ".join(f"{s} {o}" for s, o in sorted(refreshes.items()))
        )
    lines.append(
        "         verified absent or masked in: " + (", ".join(receipt.get("verified", [])) or "-")
    )
    if receipt.get("interrupted"):
        lines.append(
            "         interrupted steps (covered by verification): "
            + ", ".join(receipt["interrupted"])
        )
    return "\n".join(lines)


@command.command("verify")
@click.pass_context
def verify(ctx: click.Context) -> None:
    """Check that no audit record was altered or removed."""
    ws = workspace(ctx)
    with ws.store() as store:
        problems = store.verify_audit()
        count = len(store.audit_records())
    if problems:
        raise DsrError("the audit log failed verification:\n" + "\n".join(problems))
    click.echo(f"audit log intact: {count} records, hash chain verified")
