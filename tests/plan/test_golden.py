"""Erasure and export planning golden cases: policy texts + observed.json -> plan.json.

Each folder in cases/erasures/ and cases/exports/ is one case (see golden.py for the format);
add a folder to add a case. The planner is pure, so these run without any database.

`DSR_UPDATE_GOLDEN=1 pytest tests/plan/test_golden.py` rewrites every plan.json from what the
planner does now. A rewritten file is a claim about correct behaviour: read it against
README.md before committing it.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import pytest

from reconciler.desired.schemas import load_schema
from reconciler.plan import planfile

from . import golden

CASES = golden.case_dirs()
IDS = [f"{p.parent.name}/{p.name}" for p in CASES]
UPDATE = os.environ.get("DSR_UPDATE_GOLDEN") == "1"


def test_every_kind_has_cases() -> None:
    for kind in golden.GOLDEN_KINDS:
        assert any(p.parent.name == kind for p in CASES), kind


@pytest.mark.parametrize("path", CASES, ids=IDS)
def test_golden(path: Path) -> None:
    case = golden.load_case(path)
    got = golden.stable_dict(golden.plan_case(case))
    if UPDATE:
        case.plan_path.write_text(golden.dump(got))
    assert case.plan_path.exists(), "no plan.json: run with DSR_UPDATE_GOLDEN=1, then read it"
    assert got == json.loads(case.plan_path.read_text())


@pytest.mark.parametrize("path", CASES, ids=IDS)
def test_plan_file_round_trip(path: Path) -> None:
    """plan -> file form -> plan is equal and keeps its id (OpenTofu's tfplan_test)."""
    p = golden.plan_case(golden.load_case(path))
    data = planfile.to_dict(p)
    again = planfile.from_dict(data)
    assert again == p
    assert again.id == p.id == data["plan_id"]
    assert planfile.to_json(again) == planfile.to_json(p)


@pytest.mark.parametrize("path", CASES, ids=IDS)
def test_plan_file_matches_its_schema(path: Path) -> None:
    data = planfile.to_dict(golden.plan_case(golden.load_case(path)))
    jsonschema.Draft202012Validator(load_schema("plan")).validate(data)


@pytest.mark.parametrize("path", CASES, ids=IDS)
def test_ids_are_unique_dependencies_known_and_independent_of_the_clock(path: Path) -> None:
    case = golden.load_case(path)
    p = golden.plan_case(case)
    ids = [c.id for c in p.changes]
    assert len(set(ids)) == len(ids)
    earlier: set[str] = set()
    for c in p.changes:  # a change depends only on changes that run before it
        assert set(c.depends_on) <= earlier, c.id
        earlier.add(c.id)
    for c in p.changes:  # ids land in the journal: no user names, no hashes
        assert "@" not in c.id and "hmac-sha256" not in c.id
    later = golden.plan(
        golden.desired_from(case.files, case.path),
        golden.observed_from(case.observed_json),
        now=case.now + timedelta(seconds=1),
    )
    assert [c.id for c in later.changes] == ids
    assert later.id == p.id


# Known bugs: each test states what README.md (or the planner's own docstrings) promise, and
# fails today. They are strict xfails: when the planner is fixed, they pass, pytest reports
# XPASS as a failure, and the marker must be removed (and a golden case added).

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
HASH = "hmac-sha256:t1:" + "9" * 64
CRM_AND_INSIGHTS = """\
systems:
  crm:
    role: source
    url: sqlite:///crm.db
    tables:
      customers: {primary_key: id, identities: {email: email}, on_erasure: delete}
  insights:
    role: platform
    url: sqlite:///insights.db
    ingests: [crm]
    refresh: {sql: ["SELECT 1"]}
    permissions: {table: user_roles, user: user_email, role: role}
    user_data:
      segments: {primary_key: id, user: created_by, on_erasure: delete}
    tables:
      profiles: {primary_key: id, identities: {email: email}, on_erasure: delete}
"""
ACCESS = """\
roles: [admin, viewer]
users:
  erin@contoso.example: {roles: [admin]}
"""


def request_text(
    rid: str, kind: str = "erasure", subject: str = "customer", extra: str = ""
) -> str:
    return (
        f"id: {rid}\ntype: {kind}\nsubject:\n  kind: {subject}\n  identities:\n"
        f'    - {{type: email, hash: "{HASH}"}}\nreceived: 2026-11-20\n'
        f"requested_by: privacy@contoso.example\nsystems: all\n{extra}"
    )


def built_export(rid: str, built: str, expires: str) -> dict[str, object]:
    return {
        "path": f"state/outbox/{rid}.zip",
        "manifest_sha256": "sha256:" + "6" * 64,
        "rows": 4,
        "built_at": built,
        "expires_at": expires,
        "expired_at": None,
    }


def test_a_package_whose_request_file_is_gone_still_expires(tmp_path: Path) -> None:
    files = {"policies/systems.yaml": CRM_AND_INSIGHTS, "policies/access.yaml": ACCESS}
    observed = {
        "systems": {"insights": {"permissions": [["erin@contoso.example", "admin"]]}},
        "exports": {
            "DSR-6": built_export("DSR-6", "2026-10-20T10:00:00+00:00", "2026-11-19T10:00:00+00:00")
        },
    }
    p = golden.plan_texts(files, observed, NOW, tmp_path)
    assert [(c.action.value, c.request) for c in p.changes] == [("expire_export", "DSR-6")]


def test_a_built_export_is_overdue_until_it_is_delivered(tmp_path: Path) -> None:
    approved = "approvals:\n  - {by: erin@contoso.example, at: 2026-11-21}\n"
    files = {
        "policies/systems.yaml": CRM_AND_INSIGHTS,
        "policies/access.yaml": ACCESS,
        "policies/requests/DSR-6.yaml": request_text("DSR-6", "export", extra=approved),
    }
    observed = {
        "systems": {"insights": {"permissions": [["erin@contoso.example", "admin"]]}},
        "exports": {
            "DSR-6": built_export("DSR-6", "2026-11-22T10:00:00+00:00", "2026-12-22T10:00:00+00:00")
        },
    }
    # Due 2026-12-20; built on 2026-11-22; planned on 2026-12-21, before the package expires.
    # Built is not answered: the subject has nothing until the package is delivered.
    later = datetime(2026, 12, 21, 12, tzinfo=UTC)
    p = golden.plan_texts(files, observed, later, tmp_path)
    (view,) = p.requests
    assert view.state == "ready"
    assert view.overdue
    delivered = "delivered: {by: erin@contoso.example, at: 2026-12-19}\n"
    files["policies/requests/DSR-6.yaml"] = request_text(
        "DSR-6", "export", extra=approved + delivered
    )
    p = golden.plan_texts(files, observed, later, tmp_path)
    (view,) = p.requests
    assert view.state == "delivered" and not view.overdue
    (gone,) = p.changes
    assert (gone.action.value, gone.reason.value, gone.params.delivered) == (
        "expire_export",
        "delivered",
        True,
    )


def test_a_user_erasure_waits_only_for_its_own_users_removal(tmp_path: Path) -> None:
    files = {
        "policies/systems.yaml": CRM_AND_INSIGHTS,
        "policies/access.yaml": ACCESS,
        "policies/requests/DSR-3.yaml": request_text("DSR-3", subject="user"),
    }
    dave = ["dave@contoso.example", "viewer"]
    observed = {
        "systems": {
            "insights": {
                "permissions": [
                    ["erin@contoso.example", "admin"],
                    dave,
                    ["cara@x.example", "viewer"],
                ],
                "matches": {"DSR-3/user_roles": {"keys": [dave], "pending": [dave]}},
            }
        }
    }
    p = golden.plan_texts(files, observed, NOW, tmp_path)
    removals = {c.params.user: c.id for c in p.changes if c.action.value == "remove_user"}
    assert set(removals) == {"dave@contoso.example", "cara@x.example"}
    verify = next(c for c in p.changes if c.id == "verify:insights:DSR-3")
    assert removals["dave@contoso.example"] in verify.depends_on
    assert removals["cara@x.example"] not in verify.depends_on


def test_a_delete_referenced_by_another_customers_row_is_refused(tmp_path: Path) -> None:
    files = {
        "policies/systems.yaml": CRM_AND_INSIGHTS,
        "policies/access.yaml": ACCESS,
        "policies/requests/DSR-1.yaml": request_text("DSR-1"),
    }
    integer_key = {"type": "integer", "primary_key": True}
    observed = {
        "systems": {
            "crm": {
                "schema": {
                    "tables": {
                        "customers": {
                            "id": integer_key,
                            "email": {},
                            "referred_by": {"type": "integer"},
                        }
                    },
                    "foreign_keys": [
                        {
                            "table": "customers",
                            "columns": ["referred_by"],
                            "referred_table": "customers",
                            "referred_columns": ["id"],
                            "ondelete": None,
                        }
                    ],
                },
                # Customer 1 is the subject; customer 2, someone else, was referred by them
                # (tests/observe/cases/self_reference.yaml observes exactly this).
                "matches": {
                    "DSR-1/customers": {
                        "keys": [1],
                        "pending": [1],
                        "referenced_by": {"customers.referred_by": 1},
                    }
                },
            },
            "insights": {"permissions": [["erin@contoso.example", "admin"]]},
        }
    }
    p = golden.plan_texts(files, observed, NOW, tmp_path)
    assert not p.can_apply
    assert any("customers.referred_by" in e for e in p.errors)


def test_a_blocked_request_names_the_unreadable_system_once() -> None:
    p = golden.plan_case(golden.load_case(golden.CASES_DIR / "exports" / "unreadable_system"))
    (view,) = p.requests
    assert view.note is not None
    assert view.note.count("crm:") == 1, view.note


def test_counts_of_one_are_singular(tmp_path: Path) -> None:
    approved = "approvals:\n  - {by: erin@contoso.example, at: 2026-11-21}\n"
    files = {
        "policies/systems.yaml": CRM_AND_INSIGHTS,
        "policies/access.yaml": ACCESS,
        "policies/requests/DSR-4.yaml": request_text("DSR-4", "export", extra=approved),
    }
    observed = {
        "systems": {
            "crm": {"matches": {"DSR-4/customers": {"keys": [1], "pending": [1]}}},
            "insights": {"permissions": [["erin@contoso.example", "admin"]]},
        }
    }
    export = golden.plan_texts(files, observed, NOW, tmp_path)
    fk = golden.plan_case(golden.load_case(golden.CASES_DIR / "erasures" / "fk_refused"))
    texts = [c.detail for c in export.changes] + list(fk.errors)
    assert any("1 table" in t for t in texts)
    assert not any(" 1 tables" in t or " 1 unmapped rows" in t for t in texts), texts
