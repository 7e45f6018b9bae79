"""Planner golden cases: desired permissions + observed rows -> the expected plan.

Each file in cases/ is one case; add a file to add a case. The planner is pure, so these
run without any database.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.desired.model import (
    Access,
    Desired,
    DesiredUser,
    PermissionsMap,
    Settings,
    System,
    SystemRole,
)
from reconciler.observe.model import Observed, ObservedSystem
from reconciler.plan.actions import Action
from reconciler.plan.planner import plan

CASES = sorted((Path(__file__).parent / "cases" / "permissions").glob("*.yaml"))
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def desired_from(case: dict[str, Any]) -> Desired:
    access = case["access"]
    users = {
        name: DesiredUser(name, frozenset(u["roles"]), u.get("protected", False))
        for name, u in access["users"].items()
    }
    insights = System(
        "insights",
        SystemRole.PLATFORM,
        "sqlite://",
        ingests=("crm",),
        permissions=PermissionsMap("user_roles", "user_email", "role"),
    )
    return Desired(
        settings=Settings(workspace="t", max_revocations=case.get("max_revocations", 25)),
        systems={"insights": insights},
        access=Access(("admin", "contributor", "viewer"), users),
        digest="sha256:" + "0" * 64,
    )


def observed_from(case: dict[str, Any]) -> Observed:
    if "observed_error" in case:
        return Observed({"insights": ObservedSystem("insights", error=case["observed_error"])})
    rows = frozenset((u, r) for u, r in case["observed"])
    return Observed({"insights": ObservedSystem("insights", permissions=rows)})


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden(path: Path) -> None:
    case = yaml.safe_load(path.read_text())
    result = plan(desired_from(case), observed_from(case), now=NOW)
    got = [
        {
            "action": c.action.value,
            "target": c.target,
            "rows": c.rows,
            "reason": c.reason.value,
            "detail": c.detail,
        }
        for c in result.changes
    ]
    assert got == case["expect"]["changes"]
    expected_errors = case["expect"].get("errors", [])
    assert len(result.errors) == len(expected_errors)
    for got_error, want in zip(result.errors, expected_errors, strict=True):
        assert got_error.startswith(want), got_error
    expected_warnings = case["expect"].get("warnings", [])
    assert len(result.warnings) == len(expected_warnings)
    for got_warning, want in zip(result.warnings, expected_warnings, strict=True):
        assert got_warning.startswith(want), got_warning
    assert result.can_apply == (not expected_errors)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_ids_are_deterministic_and_unique(path: Path) -> None:
    case = yaml.safe_load(path.read_text())
    first = plan(desired_from(case), observed_from(case), now=NOW)
    again = plan(desired_from(case), observed_from(case), now=datetime(2030, 1, 1, tzinfo=UTC))
    assert [c.id for c in first.changes] == [c.id for c in again.changes]
    assert first.id == again.id  # the plan id does not depend on the clock
    assert len({c.id for c in first.changes}) == len(first.changes)
    for c in first.changes:  # ids land in the journal: no user names in them
        assert "@" not in c.id


def test_apply_then_plan_is_noop() -> None:
    """Simulate apply on the observed rows; planning again must find nothing to do."""
    for path in CASES:
        case = yaml.safe_load(path.read_text())
        if "observed_error" in case:
            continue
        desired = desired_from(case)
        result = plan(desired, observed_from(case), now=NOW)
        if not result.can_apply:
            continue
        rows = {(u, r) for u, r in case["observed"]}
        for c in result.changes:
            user = c.params.user
            if c.action is Action.GRANT_ROLE:
                rows.add((user, c.params.role))
            elif c.action is Action.REVOKE_ROLE:
                rows.discard((user, c.params.role))
            elif c.action is Action.REMOVE_USER:
                rows = {(u, r) for u, r in rows if u != user}
        after = Observed({"insights": ObservedSystem("insights", permissions=frozenset(rows))})
        again = plan(desired, after, now=NOW)
        assert not again.has_changes, path.stem


def test_max_revocations_override_raises_the_limit() -> None:
    case = yaml.safe_load(
        (Path(__file__).parent / "cases/permissions/max_revocations_refused.yaml").read_text()
    )
    result = plan(desired_from(case), observed_from(case), now=NOW, max_revocations=3)
    assert result.can_apply
