"""`dsr new erasure|export`: file a data subject request as `policies/requests/<id>.yaml`.

Reads the subject's identifiers (from options, or one of them from stdin), hashes them with the
workspace's identity key, checks the whole workspace with the new file as if it were written,
and only then writes it (temp file, then an atomic move that never replaces a file). Prints the
path written, nothing else, on stdout.

Raw identifiers are personal data: they are wrapped in `Sensitive` as soon as they are read, and
this module must never print, log or write them; only their keyed hashes leave it. Messages
about a bad identifier name the option, never the value.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import sys
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml

from reconciler.commands import DAY, day_or_today, workspace_root
from reconciler.desired.files import REQUEST_ID, REQUESTS_DIR
from reconciler.desired.files import request_file as request_path
from reconciler.desired.load import load_settings, load_workspace
from reconciler.desired.model import RequestType, SubjectKind
from reconciler.errors import Diagnostic, DsrError, ValidationFailed
from reconciler.privacy.identity import hash_identity
from reconciler.privacy.withhold import Sensitive
from reconciler.workspace import identity_key, utcnow

_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # RFC 4648 base32: no 0/O, 1/I confusion
_ID_ATTEMPTS = 100


def dev_key_warning(variable: str = "DSR_IDENTITY_KEY") -> str:
    """What `new` prints to stderr when it hashes with dsr.yaml's development key."""
    return (
        f"warning: hashing with the development identity key from dsr.yaml; set {variable} "
        "(named in dsr.yaml identity.key) for real requests"
    )


# option name -> identity type, in the order they are written to the file
IDENTITY_OPTIONS = {"email": "email", "phone": "phone", "customer_id": "customer_id"}

F = TypeVar("F", bound=Callable[..., Any])


@click.group("new")
def command() -> None:
    """File a data subject request: writes policies/requests/<id>.yaml and prints its path.

    Identifiers are stored only as keyed hashes. Pass `-` for one of them to read it from
    stdin, which keeps it out of shell history and the process list.
    """


def _request_options(func: F) -> F:
    """The options shared by `new erasure` and `new export`."""
    options: list[Callable[[Any], Any]] = [
        click.option(
            "--email",
            metavar="-|VALUE",
            help="The subject's e-mail address, or - to read it from stdin.",
        ),
        click.option(
            "--phone",
            metavar="-|VALUE",
            help="The subject's phone number with country code, or - to read it from stdin.",
        ),
        click.option(
            "--customer-id",
            metavar="-|VALUE",
            help="The subject's customer id, or - to read it from stdin.",
        ),
        click.option(
            "--stdin",
            "from_stdin",
            is_flag=True,
            help="Read the subject's identities from stdin, one `type: value` line each "
            "(types: email, phone, customer_id); none is echoed.",
        ),
        click.option(
            "--received",
            type=DAY,
            metavar="DATE",
            help="The date the request was received, YYYY-MM-DD (default: today, UTC).",
        ),
        click.option(
            "--requested-by",
            required=True,
            metavar="USER",
            help="Who files the request (you, or the team that received it).",
        ),
        click.option(
            "--kind",
            type=click.Choice([k.value for k in SubjectKind]),
            default=SubjectKind.CUSTOMER.value,
            show_default=True,
            help="customer, or user: a person who holds permissions in the platform.",
        ),
        click.option(
            "--systems",
            default="all",
            show_default=True,
            metavar="all|NAME,NAME",
            help="The systems the request covers: all, or names from policies/systems.yaml.",
        ),
        click.option(
            "--id",
            "request_id",
            metavar="ID",
            help="The request id (default: DSR-<received YYYYMMDD>-<4 random characters>).",
        ),
        click.pass_context,
    ]
    for option in reversed(options):
        func = option(func)
    return func


@command.command("erasure", short_help="File an erasure request (Art. 17).")
@_request_options
def erasure(ctx: click.Context, **options: Any) -> None:
    """File an erasure request (Art. 17)."""
    _file_request(ctx, RequestType.ERASURE, **options)


@command.command("export", short_help="File an export request (Art. 15, 20).")
@_request_options
def export(ctx: click.Context, **options: Any) -> None:
    """File an export request (Art. 15, Art. 20); a tenant admin approves it before it is sent."""
    _file_request(ctx, RequestType.EXPORT, **options)


def _file_request(
    ctx: click.Context,
    request_type: RequestType,
    *,
    email: str | None,
    phone: str | None,
    customer_id: str | None,
    from_stdin: bool,
    received: datetime | None,
    requested_by: str,
    kind: str,
    systems: str,
    request_id: str | None,
) -> None:
    # Wrap at once: from here on a raw value can only leave through `.reveal()`.
    given = {
        name: Sensitive(value)
        for name, value in (("email", email), ("phone", phone), ("customer_id", customer_id))
        if value is not None
    }
    subject_kind = SubjectKind(kind)
    root = workspace_root(ctx)
    today = utcnow().date()
    received_on = day_or_today(received, "--received")
    if not requested_by.strip():
        raise DsrError("--requested-by must not be empty")
    system_names = _parse_systems(systems)
    if request_id is not None:
        _check_id(root, request_id)
    identities = _read_identities(given, from_stdin)

    settings = load_settings(root)
    key = identity_key(settings)
    if key.development:
        ref = settings.identity_key or ""
        click.echo(dev_key_warning(ref.removeprefix("env:") or "DSR_IDENTITY_KEY"), err=True)
    hashes = [(type_, hash_identity(type_, value, key)) for type_, value in identities]
    if ("email", hash_identity("email", requested_by, key)) in hashes:
        # Subjects often file their own requests; their address must not enter git that way.
        raise DsrError(
            "--requested-by is the subject's own address, which would be written in the clear: "
            "name who files the request (a staff member or a ticket id) instead"
        )

    request_id = request_id or _new_id(root, received_on)
    file = request_path(request_id)
    text = render_request(
        request_id=request_id,
        request_type=request_type,
        subject_kind=subject_kind,
        identities=hashes,
        received=received_on,
        requested_by=requested_by,
        systems=system_names,
        written=today,
        key_id=key.key_id,
    )
    try:
        load_workspace(root, pending={file: text})
    except ValidationFailed as exc:
        lines = [_explain(d) if d.file == file else str(d) for d in exc.diagnostics]
        raise DsrError("\n".join([f"{file} was not written:", *lines])) from None
    _write_new(root / file, text)
    click.echo(file)


# fields of the new file -> the option that set them: its problems are the options' problems
_OPTION_OF_FIELD = {
    "id": "--id",
    "received": "--received",
    "requested_by": "--requested-by",
    "systems": "--systems",
    "subject.kind": "--kind",
}


def _explain(problem: Diagnostic) -> str:
    """A problem in the file not yet written, in terms of the option that caused it."""
    top = problem.field.split("[")[0]
    option = _OPTION_OF_FIELD.get(top)
    return f"{option}: {problem.message}" if option else f"{problem.field}: {problem.message}"


def _parse_systems(value: str) -> list[str] | None:
    """None for all systems, else the names given (checked against the data map by the loader)."""
    if value.strip() == "all":
        return None
    names = [name.strip() for name in value.split(",")]
    if not names or any(not name for name in names):
        raise DsrError("--systems must be all or a comma-separated list of system names")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DsrError(f"--systems lists {', '.join(duplicates)} more than once")
    return names


def _check_id(root: Path, request_id: str) -> None:
    if not REQUEST_ID.match(request_id):
        raise DsrError(
            f"--id '{request_id}' must be upper-case letters and digits in parts joined by '-', "
            "starting with a letter, for example DSR-20261129-7KQ2"
        )
    if (root / request_path(request_id)).exists():
        raise DsrError(f"{request_path(request_id)} already exists; choose another --id")


def _new_id(root: Path, received: date) -> str:
    """`DSR-<YYYYMMDD>-<4 base32 characters>`, not yet taken by a file."""
    for _ in range(_ID_ATTEMPTS):
        suffix = "".join(secrets.choice(_ID_ALPHABET) for _ in range(4))
        candidate = f"DSR-{received:%Y%m%d}-{suffix}"
        if not (root / request_path(candidate)).exists():
            return candidate
    raise DsrError(f"no free request id for {received} after {_ID_ATTEMPTS} tries; pass --id")


def _read_identities(
    given: dict[str, Sensitive], all_from_stdin: bool = False
) -> list[tuple[str, Sensitive]]:
    """(identity type, raw value) for each option given, `-` replaced by one line of stdin;
    with `all_from_stdin`, every `type: value` line of stdin as well."""
    if all_from_stdin:
        if any(value.reveal() == "-" for value in given.values()):
            raise DsrError("--stdin reads every identity from stdin: give no option as -")
        typed = _read_typed_lines()
        for name, value in given.items():
            _check_identity(name, value)
            typed.append((IDENTITY_OPTIONS[name], value))
        return typed
    if not given:
        raise DsrError(
            "give at least one of --email, --phone, --customer-id (- reads stdin), or --stdin"
        )
    from_stdin = [name for name, value in given.items() if value.reveal() == "-"]
    if len(from_stdin) > 1:
        options = " and ".join(_option(name) for name in from_stdin)
        raise DsrError(f"only one identity can be read from stdin; {options} both ask for it")
    found: list[tuple[str, Sensitive]] = []
    for name, value in given.items():
        if name in from_stdin:
            value = _read_stdin(name)
        _check_identity(name, value)
        found.append((IDENTITY_OPTIONS[name], value))
    return found


def _read_typed_lines() -> list[tuple[str, Sensitive]]:
    """Identities from stdin as `type: value` lines (blank lines and `#` comments skipped).
    Messages name the line and the type, never the value."""
    found: list[tuple[str, Sensitive]] = []
    for n, line in enumerate(sys.stdin.read().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        kind, sep, raw = line.partition(":")
        kind = kind.strip().replace("-", "_")
        if not sep or kind not in IDENTITY_OPTIONS:
            known = ", ".join(IDENTITY_OPTIONS)
            raise DsrError(f"--stdin line {n}: expected `type: value` with a type of {known}")
        value = Sensitive(raw.strip())
        _check_identity(kind, value)
        found.append((IDENTITY_OPTIONS[kind], value))
    if not found:
        raise DsrError("--stdin: stdin holds no `type: value` line")
    return found


def _read_stdin(name: str) -> Sensitive:
    stream = sys.stdin
    if stream.isatty():
        # Typed at a terminal: do not echo it.
        return Sensitive(click.prompt(_option(name), hide_input=True, err=True).strip())
    lines = stream.read().splitlines()
    if any(line.strip() for line in lines[1:]):
        raise DsrError(f"{_option(name)} -: stdin holds more than one line; give one value")
    value = Sensitive(lines[0].strip() if lines else "")
    if not value.reveal():
        raise DsrError(f"{_option(name)} -: stdin is empty")
    return value


def _check_identity(name: str, value: Sensitive) -> None:
    """Plausibility only, and never echoing the value: a typo here files a useless request."""
    raw = value.reveal().strip()
    if not raw:
        raise DsrError(f"{_option(name)} is empty")
    if name == "email" and not re.fullmatch(r"[^@\s]+@[^@\s]+", raw):
        raise DsrError(f"{_option(name)} does not look like an e-mail address (user@domain)")
    if name == "phone" and len(re.sub(r"\D", "", raw)) < 4:
        raise DsrError(f"{_option(name)} does not look like a phone number (too few digits)")


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


class _IndentedDumper(yaml.SafeDumper):
    """Indents list items under their key, as the hand-written policy files do."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def render_request(
    *,
    request_id: str,
    request_type: RequestType,
    subject_kind: SubjectKind,
    identities: list[tuple[str, str]],
    received: date,
    requested_by: str,
    systems: list[str] | None,
    written: date,
    key_id: str,
) -> str:
    """The text of a new request file: a comment header, then the request in schema order."""
    data: dict[str, Any] = {
        "id": request_id,
        "type": request_type.value,
        "subject": {
            "kind": subject_kind.value,
            "identities": [{"type": kind, "hash": digest} for kind, digest in identities],
        },
        "received": received,
        "requested_by": requested_by,
        "systems": "all" if systems is None else systems,
    }
    header = (
        f"# Written by `dsr new` on {written}. The subject's identities are stored only as\n"
        f"# keyed hashes (HMAC-SHA256, key id {key_id}), never as raw values. Changes such as\n"
        "# extension, legal_hold or cancelled are made by a reviewed edit of this file.\n"
    )
    body = yaml.dump(data, Dumper=_IndentedDumper, sort_keys=False, allow_unicode=True, width=100)
    return header + body


def _write_new(path: Path, text: str) -> None:
    """Write `path` through a hidden temp file beside it, never replacing an existing file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    taken = DsrError(f"{REQUESTS_DIR}/{path.name} was created meanwhile; run dsr new again")
    try:
        with open(temp, "x", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, path)  # atomic, and fails rather than replace a file filed meanwhile
        except FileExistsError:
            raise taken from None
        except OSError:  # a file system without hard links: rename, after a last look
            if path.exists():
                raise taken from None
            os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # make the new name durable where directories fsync
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
