"""`dsr audit show [ID]` and `dsr audit verify`: the evidence, and a check of its chain."""

from __future__ import annotations

import json

import click

from reconciler.commands import workspace
from reconciler.errors import DsrError
from reconciler.render.receipts import record_line


@click.group("audit")
def command() -> None:
    """The append-only, hash-chained audit log."""


@command.command("show")
@click.argument("request", required=False)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="text for people; json: one JSON object per record (JSON Lines).",
)
@click.option("--json", "as_json", is_flag=True, hidden=True, help="The same as --format json.")
@click.pass_context
def show(ctx: click.Context, request: str | None, fmt: str, as_json: bool) -> None:
    """List the audit trail, or the records of one request."""
    as_json = as_json or fmt == "json"
    ws = workspace(ctx)
    with ws.store(readonly=True) as store:
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
        else:
            click.echo(record_line(r))


@command.command("verify")
@click.option(
    "--head",
    "witness",
    metavar="SEQ:HASH",
    help="A head that a CI log witnessed (dsr apply prints it): it must still be in the chain.",
)
@click.pass_context
def verify(ctx: click.Context, witness: str | None) -> None:
    """Check that no audit record was altered or removed, and that the tombstones and export
    records match the receipts and builds the log holds."""
    seen = _witness(witness) if witness else None
    ws = workspace(ctx)
    with ws.store(readonly=True) as store:
        problems = store.verify_audit(seen)
        count = len(store.audit_records())
        seq, digest = store.audit_head()
    if problems:
        raise DsrError("the audit log failed verification:\n" + "\n".join(problems))
    click.echo(
        f"audit log intact: {count} records, hash chain verified; head {seq}:{digest}"
        + (f"; witnessed head {seen[0]} found" if seen else "")
    )


def _witness(text: str) -> tuple[int, str]:
    seq, _, digest = text.partition(":")
    if not seq.isdigit() or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise DsrError(f"--head {text}: expected SEQ:HASH, as dsr apply prints it")
    return int(seq), digest
