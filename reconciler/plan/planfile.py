"""The one module that knows the on-disk (JSON) form of a plan.

`to_json`/`from_json` round-trip exactly; `schemas/plan.schema.json` documents the form and
`read_plan` validates against it, so a hand-edited or foreign file is refused with a reason.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from reconciler.desired.model import RequestType, SubjectKind
from reconciler.desired.schemas import load_schema
from reconciler.errors import DsrError
from reconciler.plan.actions import Action, Reason
from reconciler.plan.model import (
    FORMAT_VERSION,
    Change,
    Params,
    Plan,
    RequestView,
    Retained,
    TableCount,
)
from reconciler.store.records import RequestState


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
                "reason": c.reason.value,
                "detail": c.detail,
                "params": _params_dict(c.params),
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
                "type": v.type.value,
                "subject_kind": v.subject_kind.value if v.subject_kind else None,
                "state": v.state.value,
                "due": v.due,
                "days_left": v.days_left,
                "overdue": v.overdue,
                "note": v.note,
                "reingested": v.reingested,
                "retained": [_retained_dict(r) for r in v.retained],
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
                reason=Reason(c["reason"]),
                detail=c["detail"],
                params=_params(c["params"]),
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
                type=RequestType(v["type"]),
                subject_kind=SubjectKind(v["subject_kind"]) if v["subject_kind"] else None,
                state=RequestState(v["state"]),
                due=v["due"],
                days_left=v["days_left"],
                note=v["note"],
                reingested=v["reingested"],
                retained=tuple(_retained(r) for r in v["retained"]),
            )
            for v in data["requests"]
        ),
        format_version=data["format_version"],
    )


def _retained_dict(r: Retained) -> dict[str, Any]:
    return {
        "system": r.system,
        "table": r.table,
        "rows": r.rows,
        "reason": r.reason,
        "masked": r.masked,
    }


def _retained(data: dict[str, Any]) -> Retained:
    return Retained(data["system"], data["table"], data["rows"], data["reason"], data["masked"])


def _params_dict(params: Params) -> dict[str, Any]:
    """Only the fields a change sets: each action reads its own."""
    out: dict[str, Any] = {}
    for name in Params.__dataclass_fields__:
        value = getattr(params, name)
        if value == getattr(_NO_PARAMS, name):
            continue
        if name == "retained":
            value = [_retained_dict(r) for r in value]
        elif name in ("exports", "awaited"):
            value = [{"system": e.system, "table": e.table, "rows": e.rows} for e in value]
        elif isinstance(value, tuple):
            value = list(value)
        out[name] = value
    return out


def _params(data: dict[str, Any]) -> Params:
    given = dict(data)
    for name in ("tables", "systems"):
        if name in given:
            given[name] = tuple(given[name])
    if "retained" in given:
        given["retained"] = tuple(_retained(r) for r in given["retained"])
    for name in ("exports", "awaited"):
        if name in given:
            given[name] = tuple(TableCount(**e) for e in given[name])
    return Params(**given)


_NO_PARAMS = Params()


def write_plan(plan: Plan, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(to_json(plan))
        tmp.replace(path)
    except OSError as exc:
        raise DsrError(f"cannot write the plan to {path}: {exc.strerror or exc}") from None


@cache
def _validator() -> Any:
    """The plan schema, compiled when a plan file is first read (`jsonschema` takes a tenth
    of a second to import: `dsr plan` without --out never needs it)."""
    import jsonschema

    return jsonschema.Draft202012Validator(load_schema("plan"))


# A plan of a thousand requests is a few megabytes; anything far larger is not one of ours.
MAX_BYTES = 64 * 1024 * 1024


def read_plan(path: Path) -> Plan:
    try:
        if path.stat().st_size > MAX_BYTES:
            raise DsrError(f"{path}: larger than {MAX_BYTES // 2**20} MiB: not a plan file")
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DsrError(f"{path}: no such plan file") from None
    except RecursionError:
        raise DsrError(f"{path}: not a plan file (nested too deeply)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DsrError(f"{path}: not a plan file ({exc})") from None
    if isinstance(data, dict) and data.get("format_version") != FORMAT_VERSION:
        raise DsrError(
            f"{path}: plan format version {data.get('format_version')!r} is not supported "
            f"(this dsr reads version {FORMAT_VERSION}); run dsr plan again"
        )
    from jsonschema.exceptions import best_match

    try:
        error = best_match(_validator().iter_errors(data))
    except RecursionError:
        raise DsrError(f"{path}: not a plan file (nested too deeply)") from None
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top)"
        raise DsrError(f"{path}: not a valid plan file: {where}: {error.message}")
    plan = from_dict(data)
    if plan.id != data["plan_id"]:
        raise DsrError(f"{path}: the plan was edited after it was made (its id does not match)")
    return plan
