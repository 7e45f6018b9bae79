"""Test helpers for the planner's golden cases (tests only; nothing here ships in the wheel).

A case is a folder under `cases/erasures/` or `cases/exports/`:

- `case.yaml`: `description`, `now` (ISO 8601 with offset), and `files`, the workspace's
  policy files as YAML texts by workspace-relative path (`policies/systems.yaml`, optionally
  `policies/access.yaml`, `policies/requests/<id>.yaml`, and `dsr.yaml`, whose sections are
  merged over `BASE_SETTINGS`). The texts are loaded with `load_workspace(pending=...)`, the
  loader dsr itself uses, so a case's policies are validated exactly as a workspace's are.
- `observed.json`: what observing found (see `observed_from`).
- `plan.json`: `planfile.to_dict(plan)` without the fields that depend on the digests or the
  clock (`VOLATILE`). `DSR_UPDATE_GOLDEN=1` rewrites it; every such file is read and checked
  against README.md by a person before it is committed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from reconciler.connectors.reflection import ColumnInfo, ForeignKeyInfo, SchemaInfo
from reconciler.desired.load import load_workspace
from reconciler.desired.model import Desired, SubjectKind
from reconciler.observe.model import Match, Observed, ObservedSystem
from reconciler.plan import planfile
from reconciler.plan.model import Plan
from reconciler.plan.planner import plan
from reconciler.store.records import ExportRecord, Outcome, RefreshRecord, Tombstone

CASES_DIR = Path(__file__).parent / "cases"
GOLDEN_KINDS = ("erasures", "exports")

# The dsr.yaml every case starts from; a case's own `dsr.yaml` text is merged over it, section
# by section. The key is never resolved: the planner works on hashes only.
BASE_SETTINGS: dict[str, Any] = {
    "workspace": "golden",
    "identity": {"key": "env:DSR_GOLDEN_KEY", "key_id": "t1"},
    "exports": {"outbox": "state/outbox", "expire_after_days": 30},
    "safety": {"max_revocations": 25},
}

# Depend on digests of the policy texts, on the clock, or on both: left out of plan.json.
VOLATILE = ("plan_id", "created_at", "desired_digest", "observed_digests")


@dataclass(frozen=True)
class Case:
    path: Path
    description: str
    now: datetime
    files: dict[str, str]

    @property
    def name(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"

    @property
    def observed_json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.path / "observed.json").read_text())
        return data

    @property
    def plan_path(self) -> Path:
        return self.path / "plan.json"


def case_dirs(kinds: tuple[str, ...] = GOLDEN_KINDS) -> list[Path]:
    return sorted(p for kind in kinds for p in (CASES_DIR / kind).iterdir() if p.is_dir())


def load_case(path: Path) -> Case:
    data = yaml.safe_load((path / "case.yaml").read_text())
    unknown = set(data) - {"description", "now", "files"}
    assert not unknown, f"{path}/case.yaml: unknown keys {sorted(unknown)}"
    now = data["now"]
    if not isinstance(now, datetime):
        now = datetime.fromisoformat(now)
    assert now.tzinfo is not None, f"{path}: `now` needs an offset"
    return Case(path, data["description"], now, dict(data["files"]))


def settings_text(override: str | None) -> str:
    merged = json.loads(json.dumps(BASE_SETTINGS))
    for section, value in (yaml.safe_load(override) or {} if override else {}).items():
        if isinstance(value, dict) and isinstance(merged.get(section), dict):
            merged[section].update(value)
        else:
            merged[section] = value
    return yaml.safe_dump(merged, sort_keys=False)


def desired_from(files: dict[str, str], root: Path) -> Desired:
    """The desired state from policy texts alone. `root` must hold no `dsr.yaml` and no
    `policies/` folder: every file comes from `files`."""
    assert not (root / "policies").exists() and not (root / "dsr.yaml").exists(), root
    pending = dict(files)
    pending["dsr.yaml"] = settings_text(files.get("dsr.yaml"))
    return load_workspace(root, pending=pending)


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text is not None else None


def _hashable(value: Any) -> Any:
    """JSON lists as tuples: a role match's keys are (user, role) pairs."""
    return tuple(_hashable(v) for v in value) if isinstance(value, list) else value


def _schema(data: dict[str, Any]) -> SchemaInfo:
    """Columns default to a nullable, non-unique string of no declared length."""
    tables = {
        table: {
            name: ColumnInfo(
                name=name,
                nullable=col.get("nullable", not col.get("primary_key", False)),
                unique=col.get("unique", col.get("primary_key", False)),
                primary_key=col.get("primary_key", False),
                type=col.get("type", "string"),
                length=col.get("length"),
            )
            for name, col in columns.items()
        }
        for table, columns in data.get("tables", {}).items()
    }
    fks = tuple(
        ForeignKeyInfo(
            table=fk["table"],
            columns=tuple(fk["columns"]),
            referred_table=fk["referred_table"],
            referred_columns=tuple(fk["referred_columns"]),
            ondelete=fk.get("ondelete"),
        )
        for fk in data.get("foreign_keys", ())
    )
    return SchemaInfo(tables, fks)


def _match(data: dict[str, Any]) -> Match:
    return Match(
        keys=frozenset(_hashable(k) for k in data.get("keys", ())),
        pending=frozenset(_hashable(k) for k in data.get("pending", ())),
        referenced_by=dict(data.get("referenced_by", {})),
    )


def _system(name: str, data: dict[str, Any]) -> ObservedSystem:
    unknown = set(data) - {"matches", "schema", "error", "permissions"}
    assert not unknown, f"observed system {name}: unknown keys {sorted(unknown)}"
    matches = {}
    for where, found in data.get("matches", {}).items():
        request, _, table = where.partition("/")
        matches[(request, table)] = _match(found)
    perms = data.get("permissions")
    return ObservedSystem(
        name,
        permissions=frozenset((u, r) for u, r in perms) if perms is not None else None,
        schema=_schema(data["schema"]) if "schema" in data else None,
        matches=matches,
        error=data.get("error"),
    )


def observed_from(data: dict[str, Any]) -> Observed:
    """`Observed` from a case's observed.json:

    `systems`: name -> {`matches`: {"<request>/<table>": {keys, pending, referenced_by}},
    `schema`: {tables: {table: {column: ColumnInfo fields}}, foreign_keys: [ForeignKeyInfo
    fields]}, `error`, `permissions`: [[user, role]]}; `completed`: request -> Tombstone
    fields; `refreshes`: system -> RefreshRecord fields; `exports`: request -> ExportRecord
    fields; `users_in_access`: [request]. Times are ISO 8601 with an offset.
    """
    unknown = set(data) - {"systems", "completed", "refreshes", "exports", "users_in_access"}
    assert not unknown, f"observed: unknown keys {sorted(unknown)}"
    completed = {
        rid: Tombstone(
            request_id=rid,
            subject_kind=SubjectKind(t.get("subject_kind", "customer")),
            identities=tuple((kind, h) for kind, h in t["identities"]),
            systems=tuple(t["systems"]) if t.get("systems") is not None else None,
            completed_at=datetime.fromisoformat(t["completed_at"]),
            receipt_hash=t.get("receipt_hash", ""),
        )
        for rid, t in data.get("completed", {}).items()
    }
    refreshes = {
        name: RefreshRecord(
            system=name,
            at=datetime.fromisoformat(r["at"]),
            status=Outcome(r["status"]),
            message=r.get("message"),
        )
        for name, r in data.get("refreshes", {}).items()
    }
    exports = {}
    for rid, e in data.get("exports", {}).items():
        built_at, expires_at = _time(e["built_at"]), _time(e["expires_at"])
        assert built_at is not None and expires_at is not None
        exports[rid] = ExportRecord(
            request_id=rid,
            path=e["path"],
            manifest_sha256=e["manifest_sha256"],
            rows=e["rows"],
            built_at=built_at,
            expires_at=expires_at,
            expired_at=_time(e.get("expired_at")),
        )
    return Observed(
        systems={name: _system(name, s) for name, s in data.get("systems", {}).items()},
        completed=completed,
        refreshes=refreshes,
        exports=exports,
        users_in_access=frozenset(data.get("users_in_access", ())),
    )


def plan_case(case: Case) -> Plan:
    return plan(
        desired_from(case.files, case.path), observed_from(case.observed_json), now=case.now
    )


def stable_dict(p: Plan) -> dict[str, Any]:
    """The plan as its plan file holds it, without what depends on digests or the clock."""
    data = planfile.to_dict(p)
    for name in VOLATILE:
        del data[name]
    return data


def dump(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def plan_texts(files: dict[str, str], observed: dict[str, Any], now: datetime, root: Path) -> Plan:
    """A plan from policy texts and an observed.json-shaped dict, for cases written inline."""
    return plan(desired_from(files, root), observed_from(observed), now=now)
