"""`dsr deliver ID --by USER [--on DATE]`: record that an export package reached the data
subject, as a reviewed change to `policies/requests/<ID>.yaml` (like an approval).

Adds `delivered: {by: USER, at: DATE}` to the request file; the next apply deletes the
package, and the audit log keeps the record of its build and of its deletion. Refused for a
request that is not an export, that is already recorded as delivered, or whose package was
never built. Prints the path written, nothing else, on stdout.
"""

from __future__ import annotations

from datetime import datetime

import click

from reconciler.commands import DAY, day_or_today, workspace
from reconciler.desired.edit import read_text, replace_file, with_entry
from reconciler.desired.files import REQUEST_ID, request_file
from reconciler.desired.load import load_workspace
from reconciler.desired.model import Approval, RequestType
from reconciler.errors import DsrError, ValidationFailed


@click.command("deliver", short_help="Record that an export package reached the subject.")
@click.argument("request_id", metavar="ID")
@click.option("--by", "user", required=True, metavar="USER", help="Who handed it over.")
@click.option(
    "--on",
    type=DAY,
    metavar="DATE",
    help="The day it was delivered, YYYY-MM-DD (default: today, UTC).",
)
@click.pass_context
def command(ctx: click.Context, request_id: str, user: str, on: datetime | None) -> None:
    """Record in policies/requests/ID.yaml that USER delivered the export package of ID; the
    next dsr apply deletes the package (the audit log keeps the record)."""
    if not REQUEST_ID.match(request_id):
        raise DsrError(f"'{request_id}' is not a request id")
    if not user.strip():
        raise DsrError("--by must not be empty")
    ws = workspace(ctx)
    file = request_file(request_id)
    at = day_or_today(on, "--on")
    request = ws.desired.requests.get(request_id)
    if request is None:
        raise DsrError(f"no request {request_id}: {file} does not exist")
    if request.type is not RequestType.EXPORT:
        raise DsrError(
            f"{request_id} is an {request.type.value} request; only exports are delivered"
        )
    if request.delivered is not None:
        done = request.delivered
        raise DsrError(f"{request_id} was recorded as delivered by {done.by} on {done.at}")
    with ws.store(readonly=True) as store:
        built = store.exports().get(request_id)
    if built is None:
        raise DsrError(f"{request_id}: no package was built; there is nothing to deliver")
    if at < built.built_at.date():
        raise DsrError(f"--on {at} is before the package was built ({built.built_at.date()})")
    path = ws.root / file
    original = read_text(path)
    text = with_entry(original, file, "delivered", Approval(by=user.strip(), at=at))
    try:
        load_workspace(ws.root, pending={file: text})
    except ValidationFailed as exc:
        raise DsrError(
            "\n".join([f"{file} was not written:", *map(str, exc.diagnostics)])
        ) from None
    replace_file(path, file, original, text, "dsr deliver")
    click.echo(file)
