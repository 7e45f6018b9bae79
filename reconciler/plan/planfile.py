"""The one module that knows the on-disk (JSON) form of a plan.

`to_json`/`from_json` round-trip exactly; `schemas/plan.schema.json` documents the form and
`read_plan` validates against it, so a hand-edited or foreign file is refused with a reason.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

from reconciler.desired.schemas import load_schema
from reconciler.errors import DsrError
from reconciler.plan.actions import Action
from reconciler.plan.model import FORMAT_VERSION, Change, Plan, RequestView, Retained


def to_dict(plan: Plan) -> dict[str, Any]:
    return {
        "format_version": plan.format_version,
        "plan_id": plan.id,
        "workspace": plan.workspace,
        "created_at": plan.created_at,
        "can_apply": plan.can_apply,
        "has_changes": plan.has_changes,
        "desired_digest": plan.desired_digest,
        "observed_digests": dict(sorted(plan.observed_digests.items())),
        "changes": [
            {
                "id": c.id,
                "action": c.action.value,
                "system": c.system,
                "target": c.target,
                "reason": c.reason,
                "params": dict(sorted(c.params.items())),
                "request": c.request,
                "rows": c.rows,
                "depends_on": list(c.depends_on),
            }
            for c in plan.changes
        ],
        "warnings": list(plan.warnings),
        "errors": list(plan.errors),
        "requests": [
            {
                "id": v.id,
                "type": v.type,
                "subject_kind": v.subject_kind,
                "state": v.state,
                "due": v.due,
                "days_left": v.days_left,
                "overdue": v.overdue,
                "note": v.note,
                "reingested": v.reingested,
                "retained": [
                    {
                        "system": r.system,
                        "table": r.table,
                        "rows": r.rows,
                        "reason": r.reason,
                        "masked": r.masked,
                    }
                    for r in v.retained
                ],
            }
            for v in plan.requests
        ],
    }


def to_json(plan: Plan) -> str:
    return json.dumps(to_dict(plan), indent=2) + "\n"


def from_dict(data: dict[str, Any]) -> Plan:
    return Plan(
        workspace=data["workspace"],
        created_at=data["created_at"],
        desired_digest=data["desired_digest"],
        observed_digests=dict(data["observed_digests"]),
        changes=tuple(
            Change(
                id=c["id"],
                action=Action(c["action"]),
                system=c["system"],
                target=c["target"],
                reason=c["reason"],
                params=dict(c["params"]),
                request=c["request"],
                rows=c["rows"],
                depends_on=tuple(c["depends_on"]),
            )
            for c in data["changes"]
        ),
        warnings=tuple(data["warnings"]),
        errors=tuple(data["errors"]),
        requests=tuple(
            RequestView(
                id=v["id"],
                type=v["type"],
                subject_kind=v["subject_kind"],
                state=v["state"],
                due=v["due"],
                days_left=v["days_left"],
                note=v["note"],
                reingested=v["reingested"],
                retained=tuple(
                    Retained(r["system"], r["table"], r["rows"], r["reason"], r["masked"])
                    for r in v["retained"]
                ),
            )
            for v in data["requests"]
        ),
        format_version=data["format_version"],
    )


def write_plan(plan: Plan, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(to_json(plan))
        tmp.replace(path)
    except OSError as exc:
        raise DsrError(f"cannot write the plan to {path}: {exc.strerror or exc}") from None


def read_plan(path: Path) -> Plan:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DsrError(f"{path}: no such plan file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DsrError(f"{path}: not a plan file ({exc})") from None
    if isinstance(data, dict) and data.get("format_version") != FORMAT_VERSION:
        raise DsrError(
            f"{path}: plan format version {data.get('format_version')!r} is not supported "
            f"(this dsr reads version {FORMAT_VERSION}); run dsr plan again"
        )
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(load_schema("plan")).iter_errors(data)
    )
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        raise DsrError(f"{path}: not a valid plan file: {where}: {error.message}")
    plan = from_dict(data)
    if plan.id != data["plan_id"]:
        raise DsrError(f"{path}: the plan was edited after it was made (its id does not match)")
    return plan
