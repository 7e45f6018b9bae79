"""Cross-file checks of policy files that matched their schemas: what one schema cannot say.

Systems against each other (ingestion, links between tables), access.yaml's roles, dsr.yaml's
outbox, and each request against its file name, the settings, the data map and access.yaml.
Each check returns diagnostics at the line at fault; none raises. Pure, but for the outbox's
place on disk.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path, PurePath
from typing import Any

from reconciler.desired import deadlines
from reconciler.desired.diagnostics import hint
from reconciler.desired.files import SETTINGS_FILE, SYSTEMS_FILE
from reconciler.desired.model import Extension, Settings
from reconciler.desired.yamlfile import Document, JsonPath
from reconciler.errors import Diagnostic, DsrError


def check_systems(doc: Document) -> list[Diagnostic]:
    systems: dict[str, Any] = doc.plain["systems"]
    problems: list[Diagnostic] = []
    with_permissions = [name for name, system in systems.items() if "permissions" in system]
    for name in with_permissions[1:]:
        problems.append(
            doc.problem(
                ("systems", name, "permissions"),
                f"only one system may declare permissions; '{with_permissions[0]}' already does",
            )
        )
    for name, system in systems.items():
        at: JsonPath = ("systems", name)
        role = system["role"]
        if role == "source" and "ingests" in system:
            problems.append(
                doc.problem((*at, "ingests"), "a source system does not ingest other systems")
            )
        if role != "source" and "ingests" not in system:
            problems.append(
                doc.problem(at, f"a {role} system must list the systems it ingests in 'ingests'")
            )
        for i, other in enumerate(system.get("ingests", ())):
            if other == name:
                problems.append(doc.problem((*at, "ingests", i), "a system cannot ingest itself"))
            elif other not in systems:
                problems.append(doc.problem((*at, "ingests", i), f"unknown system '{other}'"))
        tables: dict[str, Any] = system.get("tables", {})
        for table_name, table in tables.items():
            problems += _check_table(doc, (*at, "tables", table_name), table, name, tables)
        for table_name in system.get("user_data", {}):
            where = (*at, "user_data", table_name)
            if "permissions" not in system:
                problems.append(
                    doc.problem(where, "user data belongs on the system that declares permissions")
                )
            if table_name in tables:
                problems.append(
                    doc.problem(where, f"'{table_name}' is already mapped under tables")
                )
    return problems


def _check_table(
    doc: Document, at: JsonPath, table: dict[str, Any], system: str, tables: dict[str, Any]
) -> list[Diagnostic]:
    problems: list[Diagnostic] = []
    kind = table.get("kind", "data")
    subject = table.get("subject")
    if kind == "audit_log":
        problems += [
            doc.problem(
                (*at, key), f"an audit_log table cannot have '{key}': the audit log is never erased"
            )
            for key in ("on_erasure", "identities")
            if key in table
        ]
    elif "on_erasure" in table and "identities" not in table and subject is None:
        problems.append(
            doc.problem(
                (*at, "on_erasure"), "needs 'identities' or 'subject' to find the subject's rows"
            )
        )
    if "identities" in table and subject is not None:
        problems.append(
            doc.problem(
                (*at, "subject"),
                "a table is found either by 'identities' or by a 'subject' link, not both; "
                "map the link alone (rows reached through it are the subject's)",
            )
        )
    if kind == "system_log" and "identities" not in table:
        problems.append(
            doc.problem(at, "a system_log table needs 'identities' to find the subject's log rows")
        )
    if subject is not None:
        referenced = subject["references"].rpartition(".")[0]
        if referenced not in tables:
            problems.append(
                doc.problem(
                    (*at, "subject", "references"), f"no table '{referenced}' in system '{system}'"
                )
            )
        erasure = table.get("on_erasure")
        if isinstance(erasure, dict) and subject["column"] in erasure.get("mask", {}):
            column = subject["column"]
            problems.append(
                doc.problem(
                    (*at, "on_erasure", "mask", column),
                    f"cannot mask '{column}': it links the row to the subject (subject.column)",
                )
            )
    return problems


def check_access(doc: Document) -> list[Diagnostic]:
    roles = doc.plain["roles"]
    problems: list[Diagnostic] = []
    if "admin_role" in doc.plain:
        if doc.plain["admin_role"] not in roles:
            problems.append(
                doc.problem(("admin_role",), f"'{doc.plain['admin_role']}' is not in roles")
            )
    elif "admin" not in roles:
        problems.append(doc.problem(("roles",), "must include 'admin', the default admin_role"))
    for user, spec in doc.plain["users"].items():
        for i, role in enumerate(spec["roles"]):
            if role not in roles:
                problems.append(
                    doc.problem(
                        ("users", user, "roles", i), f"role '{role}' is not declared in roles"
                    )
                )
    return problems


def check_permissions(systems: Document, access: Document) -> list[Diagnostic]:
    if any("permissions" in system for system in systems.plain["systems"].values()):
        return []
    return [
        Diagnostic(
            access.file,
            None,
            "",
            f"no system in {SYSTEMS_FILE} declares 'permissions', so there is nowhere to apply it",
        )
    ]


def check_settings(doc: Document, root: Path) -> list[Diagnostic]:
    """dsr.yaml beyond its schema: the outbox must be inside the workspace (packages hold
    personal data, and only the outbox may)."""
    outbox = doc.plain.get("exports", {}).get("outbox")
    problem = outbox_problem(root, outbox) if outbox is not None else None
    return [doc.problem(("exports", "outbox"), problem)] if problem else []


def check_request(
    doc: Document, settings: Settings | None, systems: set[str] | None
) -> list[Diagnostic]:
    """A request that matched its schema, against its file name, the settings, the data map and
    Approvers are not checked against access.yaml here: a finished request is judged by the
    facts of its time, and an approval by someone who is no longer a tenant admin simply does
    not count (the plan says why; `desired.approvals`).

    Checks that need an invalid file (dsr.yaml or systems.yaml) are skipped; that file's own
    problems are reported instead.
    """
    data: dict[str, Any] = doc.plain
    problems: list[Diagnostic] = []
    stem = Path(doc.file).name.removesuffix(".yaml")
    if data["id"] != stem:
        problems.append(
            doc.problem(("id",), f"'{data['id']}' must equal the file name without .yaml, '{stem}'")
        )
    if systems is not None and isinstance(data["systems"], list):
        for i, name in enumerate(data["systems"]):
            if name not in systems:
                close = hint(name, sorted(systems))
                problems.append(
                    doc.problem(
                        ("systems", i), f"unknown system '{name}' (not in {SYSTEMS_FILE}){close}"
                    )
                )
    first_seen: dict[str, int] = {}
    for i, identity in enumerate(data["subject"]["identities"]):
        at: JsonPath = ("subject", "identities", i)
        key_id = identity["hash"].split(":")[1]
        known = (
            {settings.identity_key_id, *(k for k, _ in settings.identity_previous)}
            if (settings is not None)
            else set()
        )
        if settings is not None and key_id not in known:
            problems.append(
                doc.problem(
                    (*at, "hash"),
                    f"hashed with key id '{key_id}', but {SETTINGS_FILE} identity.key_id is "
                    f"'{settings.identity_key_id}' and identity.previous does not list it: "
                    "re-file the request with `dsr new`, or list the old key under "
                    "identity.previous",
                )
            )
        if identity["hash"] in first_seen:
            problems.append(
                doc.problem(
                    at,
                    f"the same {identity['type']} is listed more than once "
                    f"(first at subject.identities[{first_seen[identity['hash']]}])",
                )
            )
        first_seen.setdefault(identity["hash"], i)
    if "delivered" in data and data["type"] != "export":
        problems.append(
            doc.problem(
                ("delivered",), f"only exports are delivered; this request is an {data['type']}"
            )
        )
    if "approvals" in data and data["type"] != "export":
        problems.append(
            doc.problem(
                ("approvals",), f"only exports are approved; this request is an {data['type']}"
            )
        )
    dates = _request_dates(doc, problems)
    received, ext = dates.get(("received",)), data.get("extension")
    due, told = dates.get(("extension", "due")), dates.get(("extension", "subject_told"))
    if settings is not None and received and ext and due and told:
        extension = Extension(due=due, reason=ext["reason"], subject_told=told)
        problems += [
            doc.problem(("extension", p.field), p.message)
            for p in deadlines.extension_problems(received, settings.deadline_days, extension)
        ]
    return problems


def _request_dates(doc: Document, problems: list[Diagnostic]) -> dict[JsonPath, date]:
    """Every date in a request that is a real one; `2026-02-30` (quoted) is reported instead."""
    paths: list[JsonPath] = [("received",)]
    if "extension" in doc.plain:
        paths += [("extension", "due"), ("extension", "subject_told")]
    paths += [("approvals", i, "at") for i in range(len(doc.plain.get("approvals", ())))]
    if "delivered" in doc.plain:
        paths.append(("delivered", "at"))
    found: dict[JsonPath, date] = {}
    for path in paths:
        text: Any = doc.plain
        for part in path:
            text = text[part]
        try:
            day = date.fromisoformat(text)
        except ValueError:
            problems.append(doc.problem(path, f"'{text}' is not a valid date"))
            continue
        if not EARLIEST_DATE <= day <= LATEST_DATE:
            problems.append(
                doc.problem(path, f"{day} is not between {EARLIEST_DATE} and {LATEST_DATE}")
            )
            continue
        found[path] = day
    return found


# Dates a request may hold: anything outside is a typo (and would overflow deadlines).
EARLIEST_DATE = date(1990, 1, 1)
LATEST_DATE = date(2199, 12, 31)


def outbox_problem(root: Path, outbox: str) -> str | None:
    """Why `outbox` (dsr.yaml `exports.outbox`) may not hold export packages, or None.

    It must name a folder inside the workspace: relative, or absolute under the workspace root,
    never through `..`. The check is on the path as written: a symbolic link inside the
    workspace (a mounted state/ folder, say) is the operator's choice and is followed.
    """
    path = PurePath(outbox)
    if ".." in path.parts:
        return f"'{outbox}' must not contain '..': export packages must stay in the workspace"
    if path.is_absolute():
        roots = {Path(os.path.normpath(root.absolute())), root.resolve()}
        if not any(path != r and path.is_relative_to(r) for r in roots):
            return (
                f"'{outbox}' is outside the workspace: export packages hold personal data and "
                "must stay in it (for example state/outbox)"
            )
    elif path == PurePath("."):
        return "must be a folder inside the workspace, not the workspace itself"
    return None


def resolve_outbox(root: Path, outbox: str) -> Path:
    """The outbox folder for dsr.yaml's `exports.outbox`; `ExportError` if it is outside."""
    problem = outbox_problem(root, outbox)
    if problem is not None:
        raise DsrError(f"dsr.yaml: exports.outbox: {problem}")
    return root / outbox
