"""Every member of every closed set a plan is made of is handled everywhere it must be.

Adding an `Action` means a handler (`apply/handlers.py`), a renderer (`render/plan.py`) and a
place in `schemas/plan.schema.json`; adding a `Reason` or a `RequestState` means a place in
the schema, or `dsr apply PLANFILE` refuses every plan that holds it.
"""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from reconciler.apply.handlers import HANDLERS
from reconciler.desired.model import RequestType, SubjectKind
from reconciler.desired.schemas import load_schema
from reconciler.plan import planfile
from reconciler.plan.actions import Action, Reason
from reconciler.plan.model import Change, Plan, RequestView
from reconciler.render.plan import ROWS, Row
from reconciler.store.records import RequestState

SCHEMA = load_schema("plan")


def _plan_with(change: Change | None = None, view: RequestView | None = None) -> dict[str, Any]:
    p = Plan(
        workspace="t",
        created_at="2026-11-29T12:00:00+00:00",
        desired_digest="sha256:" + "0" * 64,
        observed_digests={},
        changes=(change,) if change else (),
        requests=(view,) if view else (),
    )
    return planfile.to_dict(p)


def _change(action: Action = Action.VERIFY, reason: Reason = Reason.PROVE_ABSENT) -> Change:
    return Change(
        id=f"{action.value}:s:R-1",
        action=action,
        system="s",
        target="t",
        reason=reason,
        detail="d",
        request="R-1",
    )


def _validate(data: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(SCHEMA).validate(data)


@pytest.mark.parametrize("action", list(Action), ids=lambda a: a.value)
def test_every_action_has_a_handler(action: Action) -> None:
    assert callable(HANDLERS[action])


@pytest.mark.parametrize("action", list(Action), ids=lambda a: a.value)
def test_every_action_has_a_renderer(action: Action) -> None:
    row = ROWS[action](_change(action))
    assert isinstance(row, Row)
    assert all(
        isinstance(getattr(row, f), str) for f in ("system", "what", "verb", "count", "note")
    )


@pytest.mark.parametrize("action", list(Action), ids=lambda a: a.value)
def test_every_action_has_a_verb_and_a_place_in_the_schema(action: Action) -> None:
    assert action.verb
    _validate(_plan_with(_change(action)))


def test_handlers_and_renderers_know_no_other_actions() -> None:
    assert set(HANDLERS) == set(Action)
    assert set(ROWS) == set(Action)


@pytest.mark.parametrize("reason", list(Reason), ids=lambda r: r.value)
def test_the_schema_accepts_every_reason(reason: Reason) -> None:
    _validate(_plan_with(_change(reason=reason)))


@pytest.mark.parametrize("state", list(RequestState), ids=lambda s: s.value)
def test_the_schema_accepts_every_request_state(state: RequestState) -> None:
    view = RequestView("R-1", RequestType.ERASURE, SubjectKind.CUSTOMER, state)
    _validate(_plan_with(view=view))


@pytest.mark.parametrize(
    ("path", "members"),
    [
        (("changes", "action"), Action),
        (("changes", "reason"), Reason),
        (("requests", "state"), RequestState),
        (("requests", "type"), RequestType),
        (("requests", "subject_kind"), SubjectKind),
    ],
    ids=["action", "reason", "state", "type", "subject_kind"],
)
def test_the_schema_enums_hold_exactly_the_members(
    path: tuple[str, str], members: type[Action]
) -> None:
    """Nor does the schema accept a value dsr never writes (a typo would pass unnoticed)."""
    array, field = path
    enum = SCHEMA["properties"][array]["items"]["properties"][field]["enum"]
    # null stands for "unknown": a request view whose request file is gone has no kind.
    nullable = {"subject_kind"}
    expected = sorted(m.value for m in members) + ([None] if field in nullable else [])
    assert sorted(enum, key=lambda v: (v is None, v or "")) == expected


@pytest.mark.parametrize("reason", list(Reason), ids=lambda r: r.value)
def test_every_reason_round_trips_through_the_plan_file(reason: Reason) -> None:
    data = _plan_with(_change(reason=reason))
    assert planfile.from_dict(data).changes[0].reason is reason
