"""Building the frozen model from policy files that passed every check.

Called only after schemas and cross-references are clean: it trusts the shape of what it
reads and never reports a problem. No I/O.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from reconciler.desired import deadlines
from reconciler.desired.model import (
    DEFAULT_TIMEOUTS,
    Access,
    Approval,
    DesiredUser,
    ErasureStrategy,
    Extension,
    IdentityHash,
    MaskStrategy,
    MatchMode,
    PermissionsMap,
    Refresh,
    Request,
    RequestType,
    Settings,
    SubjectKind,
    SubjectLink,
    System,
    SystemRole,
    Table,
    TableKind,
    Timeouts,
)
from reconciler.desired.yamlfile import Document
from reconciler.privacy.withhold import Sensitive

_SETTINGS_FIELDS = {  # (section, key) in dsr.yaml -> Settings field; absent: the model default
    ("state", "path"): "state_path",
    ("state", "url"): "state_url",
    ("identity", "key"): "identity_key",
    ("identity", "key_id"): "identity_key_id",
    ("identity", "development_key"): "development_key",
    ("audit", "key"): "audit_key",
    ("audit", "key_id"): "audit_key_id",
    ("deadlines", "days"): "deadline_days",
    ("exports", "outbox"): "outbox",
    ("exports", "expire_after_days"): "expire_after_days",
    ("safety", "max_revocations"): "max_revocations",
}


def build_settings(data: dict[str, Any]) -> Settings:
    given = {
        name: data[section][key]
        for (section, key), name in _SETTINGS_FIELDS.items()
        if key in data.get(section, {})
    }
    for name in ("deadline_days", "expire_after_days", "max_revocations"):
        if name in given:
            given[name] = int(given[name])  # JSON Schema's integer admits 30.0
    if "development_key" in given:
        given["development_key"] = Sensitive(given["development_key"])
    previous = data.get("identity", {}).get("previous", ())
    given["identity_previous"] = tuple((p["key_id"], p["key"]) for p in previous)
    return Settings(workspace=data["workspace"], timeouts=_timeouts(Timeouts(), data), **given)


def _timeouts(base: Timeouts, data: dict[str, Any]) -> Timeouts:
    given = data.get("timeouts", {})
    connect, statement = given.get("connect"), given.get("statement")
    return base.overridden(
        None if connect is None else int(connect), None if statement is None else int(statement)
    )


def build_systems(data: dict[str, Any], defaults: Timeouts = DEFAULT_TIMEOUTS) -> dict[str, System]:
    return {
        name: System(
            name=name,
            role=SystemRole(spec["role"]),
            url=spec["url"],
            erase_at_source=spec.get("erase_at_source", True),
            ingests=tuple(spec.get("ingests", ())),
            refresh=_build_refresh(spec["refresh"]) if "refresh" in spec else None,
            tables={t: _build_table(t, table) for t, table in spec.get("tables", {}).items()},
            permissions=PermissionsMap(**spec["permissions"]) if "permissions" in spec else None,
            user_data={
                t: _build_table(
                    t,
                    {
                        "primary_key": table["primary_key"],
                        "identities": {"email": table["user"]},
                        "on_erasure": table["on_erasure"],
                    },
                )
                for t, table in spec.get("user_data", {}).items()
            },
            timeouts=_timeouts(defaults, spec),
            match=MatchMode(spec.get("match", "auto")),
        )
        for name, spec in data.items()
    }


def _build_refresh(data: dict[str, Any]) -> Refresh:
    return Refresh(sql=tuple(data.get("sql", ())), command=tuple(data.get("command", ())))


def _build_table(name: str, data: dict[str, Any]) -> Table:
    erasure, mask, reason = _build_erasure(data.get("on_erasure"))
    subject = None
    if "subject" in data:
        table, _, column = data["subject"]["references"].rpartition(".")
        subject = SubjectLink(column=data["subject"]["column"], table=table, references=column)
    return Table(
        name=name,
        primary_key=data.get("primary_key"),
        identities=dict(data.get("identities", {})),
        subject=subject,
        erasure=erasure,
        mask=mask,
        reason=reason,
        kind=TableKind(data.get("kind", "data")),
    )


def _build_erasure(
    rule: str | dict[str, Any] | None,
) -> tuple[ErasureStrategy | None, dict[str, MaskStrategy], str | None]:
    if rule is None:
        return None, {}, None
    if rule == "delete":
        return ErasureStrategy.DELETE, {}, None
    assert isinstance(rule, dict)  # the schema allows nothing else
    if "retain" in rule:
        return ErasureStrategy.RETAIN, {}, rule["retain"]
    # A bare YAML `null` means the "null" strategy too: `phone: null` reads as intended.
    mask = {
        column: MaskStrategy(s if s is not None else "null") for column, s in rule["mask"].items()
    }
    return ErasureStrategy.MASK, mask, rule["reason"]


def build_access(data: dict[str, Any]) -> Access:
    users = {
        name: DesiredUser(
            name=name, roles=frozenset(spec["roles"]), protected=spec.get("protected", False)
        )
        for name, spec in data["users"].items()
    }
    extra = {"admin_role": data["admin_role"]} if "admin_role" in data else {}
    return Access(roles=tuple(data["roles"]), users=users, **extra)


def build_request(doc: Document, deadline_days: int | None) -> Request:
    """A request that passed every check: dates are real and any extension is lawful."""
    data: dict[str, Any] = doc.plain
    received = date.fromisoformat(data["received"])
    extension = None
    if "extension" in data:
        ext = data["extension"]
        extension = Extension(
            due=date.fromisoformat(ext["due"]),
            reason=ext["reason"],
            subject_told=date.fromisoformat(ext["subject_told"]),
        )
    systems = data["systems"]
    return Request(
        id=data["id"],
        type=RequestType(data["type"]),
        subject_kind=SubjectKind(data["subject"]["kind"]),
        identities=tuple(
            IdentityHash(type=i["type"], hash=i["hash"]) for i in data["subject"]["identities"]
        ),
        received=received,
        requested_by=data["requested_by"],
        due=deadlines.due_date(received, deadline_days, extension),
        systems=None if systems == "all" else tuple(systems),
        extension=extension,
        legal_hold=data.get("legal_hold"),
        cancelled=data.get("cancelled"),
        approvals=tuple(
            Approval(by=a["by"], at=date.fromisoformat(a["at"])) for a in data.get("approvals", ())
        ),
        delivered=(
            Approval(by=data["delivered"]["by"], at=date.fromisoformat(data["delivered"]["at"]))
            if "delivered" in data
            else None
        ),
        file=doc.file,
    )
