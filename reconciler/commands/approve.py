"""`dsr approve ID --by USER [--on DATE]`: record a tenant admin's approval of an export.

Appends `{by: USER, at: DATE}` to the `approvals:` list of `policies/requests/<ID>.yaml` by
adding one line to the file's text, so its comments and layout stay as reviewed; checks the
whole workspace with the changed file as if it were written, then replaces the file through a
temp file and a rename. Prints the path written, nothing else, on stdout.

It refuses (exit 1) an unknown request, a request that is not an export, a USER who is not in
policies/access.yaml, and a second approval by the same USER. It records, with a warning on
stderr, an approval that will not count (a user without the admin role, the requester, a date
before receipt): the request file is the reviewed record of what was said, and the plan shows
why such an approval does not count (`reconciler.desired.approvals`).
"""

from __future__ import annotations

import difflib
from datetime import datetime

import click

from reconciler.commands import DAY, day_or_today, workspace_root
from reconciler.desired.approvals import approval_problems, same_person
from reconciler.desired.edit import read_text, replace_file, with_approval
from reconciler.desired.files import ACCESS_FILE, REQUEST_ID, request_file
from reconciler.desired.load import load_workspace
from reconciler.desired.model import Access, Approval, RequestType
from reconciler.errors import DsrError, ValidationFailed


@click.command("approve", short_help="Record a tenant admin's approval of an export.")
@click.argument("request_id", metavar="ID")
@click.option(
    "--by",
    "user",
    required=True,
    metavar="USER",
    help="The tenant admin who approves: a user in policies/access.yaml.",
)
@click.option(
    "--on",
    "on",
    type=DAY,
    metavar="DATE",
    help="The date of the approval, YYYY-MM-DD (default: today, UTC).",
)
@click.pass_context
def command(ctx: click.Context, request_id: str, user: str, on: datetime | None) -> None:
    """Record USER's approval of the export request ID in policies/requests/ID.yaml.

    An approval counts only if USER holds the admin role in policies/access.yaml, did not
    request the export, and approved on or after the day it was received; one that does not
    count is recorded with a warning, and the plan shows why it does not count.
    """
    root = workspace_root(ctx)
    if not REQUEST_ID.match(request_id):
        raise DsrError(
            f"'{request_id}' is not a request id: upper-case letters and digits in parts joined "
            "by '-', for example DSR-20261129-7KQ2"
        )
    file = request_file(request_id)
    at = day_or_today(on, "--on")
    try:
        desired = load_workspace(root)
    except ValidationFailed as exc:
        lines = [f"{file} was not changed: the workspace is invalid:", *map(str, exc.diagnostics)]
        raise DsrError("\n".join(lines)) from None
    request = desired.requests.get(request_id)
    if request is None:
        raise DsrError(f"no request {request_id}: {file} does not exist")
    if request.type is not RequestType.EXPORT:
        raise DsrError(
            f"{request_id} is an {request.type.value} request; only export requests are approved"
        )
    name = _approver(desired.access, user)
    for earlier in request.approvals:
        if same_person(earlier.by, name):
            raise DsrError(f"{earlier.by} already approved {request_id} on {earlier.at}")

    path = root / file
    original = read_text(path)
    approval = Approval(by=name, at=at)
    text = with_approval(original, file, approval)
    try:
        updated = load_workspace(root, pending={file: text})
    except ValidationFailed as exc:
        raise DsrError(
            "\n".join([f"{file} was not written:", *map(str, exc.diagnostics)])
        ) from None
    replace_file(path, file, original, text, "dsr approve")

    problems = approval_problems(updated.requests[request_id], updated.access, approval)
    if problems:
        click.echo(
            f"warning: recorded, but this approval will not count: {name} {' and '.join(problems)}",
            err=True,
        )
    if request.cancelled:
        click.echo(f"warning: {request_id} is cancelled; nothing will be exported", err=True)
    click.echo(file)


def _approver(access: Access | None, user: str) -> str:
    """USER as access.yaml names them (matched case-insensitively, trimmed); refused if absent."""
    if access is None:
        raise DsrError(f"there is no {ACCESS_FILE}: approvers must be users there")
    if user in access.users:
        return user
    found = [name for name in access.users if same_person(name, user)]
    if len(found) == 1:
        return found[0]
    close = difflib.get_close_matches(user.strip(), list(access.users), n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise DsrError(f"'{user.strip()}' is not a user in {ACCESS_FILE}{hint}")
