"""`dsr outbox list` and `dsr outbox get ID --out FILE`: the export packages waiting for
delivery, and one written out to hand to the data subject.

With a shared state store the packages live in it (a CI runner's disk is gone after its job);
with a local one, in the `exports.outbox` folder. A package is checked against the digest the
state store recorded when it was built before it is written out: an altered package is never
delivered. The file is created readable by its owner only and never replaces another.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

import click

from reconciler.commands import echo_json, format_option, workspace
from reconciler.desired.files import REQUEST_ID
from reconciler.errors import DsrError
from reconciler.outbox.boxes import outbox_for
from reconciler.outbox.package import MANIFEST, verify_package
from reconciler.render.status import when
from reconciler.workspace import utcnow


@click.group("outbox")
def command() -> None:
    """Export packages waiting for delivery."""


@command.command("list")
@format_option
@click.pass_context
def list_(ctx: click.Context, fmt: str) -> None:
    """Each package that has not expired: request, rows, where, and until when."""
    ws = workspace(ctx)
    with ws.store(readonly=True) as store:
        waiting = [e for e in store.exports().values() if e.expired_at is None]
    if fmt == "json":
        echo_json(
            [
                {
                    "request": e.request_id,
                    "rows": e.rows,
                    "location": e.path,
                    "manifest_sha256": e.manifest_sha256,
                    "built_at": e.built_at.isoformat(timespec="seconds"),
                    "expires_at": e.expires_at.isoformat(timespec="seconds"),
                }
                for e in waiting
            ]
        )
        return
    if not waiting:
        click.echo("no export packages are waiting")
    for e in waiting:
        click.echo(
            f"{e.request_id:<22} {e.rows:>5} rows  {e.path}  built {when(e.built_at)}, "
            f"expires {when(e.expires_at)}"
        )


@command.command("get")
@click.argument("request_id", metavar="ID")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the package (a .zip; never replaces a file).",
)
@click.pass_context
def get(ctx: click.Context, request_id: str, out: Path) -> None:
    """Write the export package of request ID to FILE, for delivery to the data subject."""
    if not REQUEST_ID.match(request_id):
        raise DsrError(f"'{request_id}' is not a request id")
    ws = workspace(ctx)
    with ws.store(readonly=True) as store:
        record = store.exports().get(request_id)
        if record is None:
            raise DsrError(f"{request_id}: no export package was built")
        if record.expired_at is not None:
            raise DsrError(f"{request_id}: the package expired {when(record.expired_at)}")
        data = outbox_for(ws.desired.settings, ws.root, store, utcnow).read(request_id)
    if data is None:
        raise DsrError(f"{request_id}: the package is missing from {record.path}")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            manifest = archive.read(MANIFEST)
    except (KeyError, zipfile.BadZipFile):
        manifest = b""
    if hashlib.sha256(manifest).hexdigest() != record.manifest_sha256:
        raise DsrError(
            f"{request_id}: the package in {record.path} is not the one dsr built (its manifest "
            "does not match the digest recorded when it was built); it was not written out"
        )
    problems = verify_package(data)
    if problems:
        raise DsrError(f"{request_id}: the package is damaged: " + "; ".join(problems))
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise DsrError(f"{out} exists; choose another --out") from None
    except OSError as exc:
        raise DsrError(f"cannot write {out}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    click.echo(f"wrote {out} ({record.rows} rows); deliver it to the data subject")
