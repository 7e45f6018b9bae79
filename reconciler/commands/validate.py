"""`dsr validate`: schemas and cross-references of the whole workspace, every problem at once;
then, unless `--offline`, the data map against each reachable system's real schema (tables,
columns, and masks that would break NOT NULL, UNIQUE or a column's length), saying how each
identity table will be matched (pushdown or stream, and why).

A system whose URL names an environment variable that is not set here (a laptop, a pull
request's job without secrets) is not checked against its database, and says so; a system
that is set but cannot be reached is a problem."""

from __future__ import annotations

from dataclasses import dataclass, field

import click

from reconciler.commands import echo_json, format_option, log, workspace
from reconciler.connectors import Connector, connect
from reconciler.connectors.reflection import SchemaInfo
from reconciler.desired.files import SYSTEMS_FILE
from reconciler.desired.model import MatchMode, System
from reconciler.desired.yamlfile import read_document
from reconciler.errors import Diagnostic, DsrError, ValidationFailed
from reconciler.observe.method import how_matched
from reconciler.plan.constraints import check_masks
from reconciler.render.plan import matching_line
from reconciler.workspace import ENV_PREFIX, Workspace, resolve_env, system_url


@dataclass(slots=True)
class DatabaseCheck:
    checked: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # system -> why
    # system -> identity table -> how it is matched ("pushdown", "stream (why)")
    matching: dict[str, dict[str, str]] = field(default_factory=dict)


@click.command("validate")
@click.option("--offline", is_flag=True, help="Only the files: do not connect to any system.")
@format_option
@click.pass_context
def command(ctx: click.Context, offline: bool, fmt: str) -> None:
    """Check dsr.yaml and policies/ against their schemas, each other and the databases."""
    try:
        ws = workspace(ctx)
        result = DatabaseCheck() if offline else check_against_databases(ws)
    except ValidationFailed as exc:
        if fmt == "json":
            echo_json({"valid": False, "problems": [_diagnostic(d) for d in exc.diagnostics]})
        raise
    d = ws.desired
    users = len(d.access.users) if d.access else 0
    if fmt == "json":
        echo_json(
            {
                "valid": True,
                "workspace": str(ws.root),
                "systems": len(d.systems),
                "users": users,
                "requests": len(d.requests),
                "checked_against_databases": result.checked,
                "not_checked": result.skipped,
                "matching": result.matching,
                "problems": [],
            }
        )
        return
    for name, why in result.skipped.items():
        log(ctx).warning(f"{name}: not checked against its database: {why}")
    note = f"; {len(result.checked)} checked against their databases" if result.checked else ""
    click.echo(
        f"{ws.root}: valid ({len(d.systems)} systems, {users} users, "
        f"{len(d.requests)} requests{note})"
    )
    matching = matching_line(result.matching)
    if matching:
        click.echo(matching)


def check_against_databases(ws: Workspace) -> DatabaseCheck:
    """Reflects every system that maps tables; raises ValidationFailed with file:line."""
    problems: list[Diagnostic] = []
    result = DatabaseCheck()
    for name, system in sorted(ws.desired.systems.items()):
        if not (system.tables or system.user_data or system.permissions):
            continue
        where = f"{SYSTEMS_FILE}: systems.{name}.url"
        if resolve_env(system.url, where) is None:
            variable = system.url.removeprefix(ENV_PREFIX)
            result.skipped[name] = f"{variable} is not set (set it, or pass --offline)"
            continue
        try:
            conn = connect(name, system_url(system, ws.root), system.timeouts)
            try:
                names = {*system.tables, *system.user_data}
                if system.permissions:
                    names.add(system.permissions.table)
                schema = conn.reflect({t.rpartition(".")[0] or None for t in names})
                methods, problem = _methods(system, conn, schema)
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
        result.checked.append(name)
        if methods:
            result.matching[name] = methods
        if problem:
            problems.append(Diagnostic(SYSTEMS_FILE, None, f"systems.{name}.match", problem))
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
    return result


def _methods(
    system: System, conn: Connector, schema: SchemaInfo
) -> tuple[dict[str, str], str | None]:
    """How each identity table of `system` is matched, and the problem with its `match`
    setting if there is one (pushdown asked of a database that cannot hash)."""
    specs = [t for t in {**system.tables, **system.user_data}.values() if t.identities]
    if not specs:
        return {}, None
    hashing = conn.sql_hashing() if system.match is not MatchMode.STREAM else None
    methods: dict[str, str] = {}
    for spec in sorted(specs, key=lambda t: t.name):
        how = how_matched(system.match, hashing, spec, schema.tables.get(spec.name))
        if how.problem:
            return methods, how.problem
        methods[spec.name] = str(how)
    return methods, None


def _diagnostic(d: Diagnostic) -> dict[str, object]:
    return {"file": d.file, "line": d.line, "field": d.field, "message": d.message}
