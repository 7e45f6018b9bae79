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

import contextlib
import difflib
import json
import os
import re
import secrets
import stat
from datetime import datetime, timedelta
from pathlib import Path

import click
import yaml

from reconciler.commands import workspace_root
from reconciler.desired.approvals import approval_problems, same_person
from reconciler.desired.files import ACCESS_FILE, REQUEST_ID, request_file
from reconciler.desired.load import load_workspace
from reconciler.desired.model import Access, Approval, RequestType
from reconciler.desired.yamlfile import parse_yaml
from reconciler.errors import DsrError, ValidationFailed
from reconciler.workspace import utcnow

_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]*")  # written as is; anything else JSON-quoted


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
    type=click.DateTime(formats=["%Y-%m-%d"]),
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
    today = utcnow().date()
    at = on.date() if on is not None else today
    if at > today + timedelta(days=1):  # ahead of UTC it is already tomorrow somewhere
        raise DsrError(f"--on {at} is in the future")
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
    original = _read(path)
    approval = Approval(by=name, at=at)
    text = _with_approval(original, file, approval)
    try:
        updated = load_workspace(root, pending={file: text})
    except ValidationFailed as exc:
        raise DsrError(
            "\n".join([f"{file} was not written:", *map(str, exc.diagnostics)])
        ) from None
    _replace(path, file, original, text)

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


# -- editing the request file's text ------------------------------------------------------------


def _with_approval(text: str, file: str, approval: Approval) -> str:
    """`text` with `approval` appended to its `approvals:` list (added at the end if absent).

    Only lines are added (or, in a `[...]` list, one item before the `]`); the result is parsed
    back and must equal the old data plus the approval, else the file is left to a person.
    """
    newline = "\r\n" if "\r\n" in text else "\n"
    item = f"{{by: {_scalar(approval.by)}, at: {approval.at.isoformat()}}}"
    cannot = DsrError(
        f"{file}: cannot add the approval without rewriting the file; add it by hand under "
        f"approvals: as - {item}"
    )
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        raise cannot from None
    if not isinstance(root, yaml.MappingNode) or root.flow_style:
        raise cannot
    node = next(
        (v for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.value == "approvals"),
        None,
    )
    if node is None:
        body = text if not text or text.endswith(("\n", "\r")) else text + newline
        changed = f"{body}approvals:{newline}  - {item}{newline}"
    elif isinstance(node, yaml.SequenceNode) and node.value and node.flow_style:
        close = node.end_mark.index - 1  # the `]`
        if text[close] != "]":
            raise cannot
        changed = f"{text[:close]}, {item}{text[close:]}"
    elif isinstance(node, yaml.SequenceNode) and node.value:
        first = node.value[0]
        lines = text.splitlines(keepends=True)
        before = lines[first.start_mark.line][: first.start_mark.column].rstrip()
        if not before.endswith("-") or before[:-1].strip():
            raise cannot
        end = _last_line(node.value[-1])
        if not lines[end].endswith(("\n", "\r")):
            lines[end] += newline
        lines.insert(end + 1, f"{before[:-1]}- {item}{newline}")
        changed = "".join(lines)
    else:
        raise cannot
    old, _ = parse_yaml(text, file)
    new, _ = parse_yaml(changed, file)
    if old is None or new is None or not isinstance(old.plain, dict):
        raise cannot
    expected = dict(old.plain)
    entry = {"by": approval.by, "at": approval.at.isoformat()}
    expected["approvals"] = [*old.plain.get("approvals", ()), entry]
    if new.plain != expected:
        raise cannot
    return changed


def _last_line(node: yaml.Node) -> int:
    """The line (0-based) that holds the last character of `node`."""
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and not node.flow_style:
        if isinstance(node, yaml.MappingNode) and node.value:
            return _last_line(node.value[-1][1])
        if isinstance(node, yaml.SequenceNode) and node.value:
            return _last_line(node.value[-1])
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        # a block scalar ends at the start of the line after it
        mark = node.end_mark
        return mark.line - 1 if mark.column == 0 else mark.line
    return int(node.end_mark.line)


def _scalar(value: str) -> str:
    """`value` as a YAML scalar in a flow mapping: plain when that reads back as the same
    string, else double-quoted (JSON strings are YAML double-quoted scalars)."""
    if _PLAIN.fullmatch(value) and yaml.safe_load(f"{{by: {value}}}") == {"by": value}:
        return value
    return json.dumps(value, ensure_ascii=False)


def _read(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as handle:  # keep the file's line endings
        return handle.read()


def _replace(path: Path, file: str, original: str, text: str) -> None:
    """Replace `path` with `text` through a hidden temp file and a rename; refused if the file
    changed since it was read (a concurrent edit must not be lost)."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temp, "x", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(OSError):
            os.chmod(temp, stat.S_IMODE(path.stat().st_mode))
        if _read(path) != original:
            raise DsrError(f"{file} changed while dsr approve ran; run it again")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
