"""`dsr validate`: schemas and cross-references of the whole workspace, every problem at once;
then, unless `--offline`, the data map against each reachable system's real schema (tables,
columns, and masks that would break NOT NULL, UNIQUE or a column's length)."""

from __future__ import annotations

import click

from reconciler.commands import workspace
from reconciler.connectors import connect
from reconciler.desired.files import SYSTEMS_FILE
from reconciler.desired.yamlfile import read_document
from reconciler.errors import Diagnostic, DsrError, ValidationFailed
from reconciler.plan.constraints import check_masks
from reconciler.workspace import Workspace, system_url


@click.command("validate")
@click.option("--offline", is_flag=True, help="Only the files: do not connect to any system.")
@click.pass_context
def command(ctx: click.Context, offline: bool) -> None:
    """Check dsr.yaml and policies/ against their schemas, each other and the databases."""
    ws = workspace(ctx)
    d = ws.desired
    checked = [] if offline else check_against_databases(ws)
    users = len(d.access.users) if d.access else 0
    note = f"; {len(checked)} checked against their databases" if checked else ""
    click.echo(
        f"{ws.root}: valid ({len(d.systems)} systems, {users} users, "
        f"{len(d.requests)} requests{note})"
    )


def check_against_databases(ws: Workspace) -> list[str]:
    """Reflects every system that maps tables; raises ValidationFailed with file:line."""
    problems: list[Diagnostic] = []
    checked = []
    for name, system in sorted(ws.desired.systems.items()):
        if not (system.tables or system.user_data or system.permissions):
            continue
        try:
            conn = connect(name, system_url(system, ws.root))
            try:
                names = {*system.tables, *system.user_data}
                if system.permissions:
                    names.add(system.permissions.table)
                schema = conn.reflect({t.rpartition(".")[0] or None for t in names})
            finally:
                conn.close()
        except DsrError as exc:
            problems.append(
                Diagnostic(
                    SYSTEMS_FILE,
                    None,
                    f"systems.{name}.url",
                    f"cannot check against the database ({exc}); "
                    "pass --offline to check the files only",
                )
            )
            continue
        checked.append(name)
        problems += check_masks(system, schema)
    if problems:
        doc, _ = read_document(ws.root, SYSTEMS_FILE)
        located = [
            Diagnostic(
                p.file, doc.line(tuple(p.field.split("."))) if doc else None, p.field, p.message
            )
            for p in problems
        ]
        raise ValidationFailed(located)
    return checked
