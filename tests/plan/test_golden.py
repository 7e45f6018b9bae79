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
from datetime import timedelta
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
