"""The erasure planner on plain data: no database, no clock (pyinfra-style golden checks)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from reconciler.connectors.reflection import SchemaInfo
from reconciler.desired.model import (
    Desired,
    ErasureStrategy,
    IdentityHash,
    Refresh,
    Request,
    RequestType,
    Settings,
    SubjectKind,
    System,
    SystemRole,
    Table,
    TableKind,
)
from reconciler.observe.model import Match, Observed, ObservedSystem
from reconciler.plan.actions import Action, Reason
from reconciler.plan.planner import plan
from reconciler.store.records import Tombstone

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)
H = "hmac-sha256:k1:" + "0" * 64


def request(rid: str, **kw: object) -> Request:
    base: dict[str, object] = dict(
        id=rid,
        type=RequestType.ERASURE,
        subject_kind=SubjectKind.CUSTOMER,
        identities=(IdentityHash("email", H),),
        received=date(2026, 11, 20),
        requested_by="dpo@x.example",
        due=date(2026, 12, 20),
    )
    base.update(kw)
    return Request(**base)  # type: ignore[arg-type]


def systems() -> dict[str, System]:
    crm = System(
        "crm",
        SystemRole.SOURCE,
        "sqlite://",
        tables={
            "customers": Table(
                "customers", "id", {"email": "email"}, erasure=ErasureStrategy.DELETE
            ),
        },
    )
    shop = System(
        "shop",
        SystemRole.SOURCE,
        "sqlite://",
        erase_at_source=False,
        tables={
            "customers": Table(
                "customers", "id", {"email": "email"}, erasure=ErasureStrategy.DELETE
            ),
        },
    )
    insights = System(
        "insights",
        SystemRole.PLATFORM,
        "sqlite://",
        ingests=("crm", "shop"),
        refresh=Refresh(sql=("select 1",)),
        tables={
            "profiles": Table("profiles", "id", {"email": "email"}, erasure=ErasureStrategy.DELETE),
            "logs": Table("logs", "id", {"email": "actor"}, kind=TableKind.SYSTEM_LOG),
        },
    )
    apps = System(
        "apps",
        SystemRole.DOWNSTREAM,
        "sqlite://",
        ingests=("insights",),
        refresh=Refresh(command=("true",)),
        tables={
            "consent": Table("consent", "id", {"email": "email"}, erasure=ErasureStrategy.DELETE),
        },
    )
    return {s.name: s for s in (crm, shop, insights, apps)}


def desired(*requests: Request) -> Desired:
    return Desired(
        Settings("t"), systems(), None, "sha256:" + "0" * 64, {r.id: r for r in requests}
    )


def observed(matches: dict[str, dict[tuple[str, str], int]], **kw: object) -> Observed:
    out = {}
    for name in ("crm", "shop", "insights", "apps"):
        found = {
            key: Match(frozenset(range(n)), frozenset(range(n)))
            for key, n in matches.get(name, {}).items()
        }
        out[name] = ObservedSystem(name, schema=SchemaInfo({}, ()), matches=found)
    return Observed(out, **kw)  # type: ignore[arg-type]


def ids(p: object) -> list[str]:
    return [c.id for c in p.changes]  # type: ignore[attr-defined]


def test_two_requests_share_one_refresh_per_platform_in_ingestion_order() -> None:
    p = plan(
        desired(request("R1"), request("R2")),
        observed(
            {
                "crm": {("R1", "customers"): 1, ("R2", "customers"): 2},
                "insights": {("R1", "profiles"): 1, ("R2", "profiles"): 1, ("R1", "logs"): 3},
            }
        ),
        now=NOW,
    )
    order = ids(p)
    assert order.count("refresh:insights") == 1 and order.count("refresh:apps") == 1
    assert order.index("refresh:insights") < order.index("refresh:apps")
    refresh = next(c for c in p.changes if c.id == "refresh:insights")
    # After every source change, but not held back by one that fails (each request's own
    # verification depends on its own erasure).
    assert order.index("refresh:insights") > order.index("delete_rows:crm:R2:customers")
    assert refresh.depends_on == ()
    apps = next(c for c in p.changes if c.id == "refresh:apps")
    assert apps.depends_on == ("refresh:insights",)
    verify = next(c for c in p.changes if c.id == "verify:insights:R1")
    assert {"refresh:insights", "refresh:apps", "delete_rows:crm:R1:customers"} <= set(
        verify.depends_on
    )
    purge = next(c for c in p.changes if c.action is Action.PURGE_LOGS)
    assert (purge.id, purge.rows) == ("purge_logs:insights:R1:logs", 3)
    complete = next(c for c in p.changes if c.id == "complete:dsr:R1")
    assert purge.id in complete.depends_on
    assert [v.state for v in p.requests] == ["pending", "pending"]


def test_non_writable_source_waits_and_does_not_refresh_for_that_subject() -> None:
    p = plan(
        desired(request("R1")),
        observed({"shop": {("R1", "customers"): 1}, "insights": {("R1", "profiles"): 1}}),
        now=NOW,
    )
    actions = {c.action for c in p.changes}
    assert Action.AWAIT_SOURCE in actions and Action.REFRESH not in actions
    assert p.requests[0].state == "waiting"


def test_completed_and_clean_is_a_noop_even_without_the_request_file() -> None:
    done = Tombstone("R1", "customer", (("email", H),), None, NOW)
    p = plan(desired(), observed({}, completed={"R1": done}), now=NOW)
    assert not p.has_changes
    assert p.requests[0].state == "completed"
    assert any("the request file is gone" in w for w in p.warnings)


def test_reingested_subject_is_erased_again() -> None:
    done = Tombstone("R1", "customer", (("email", H),), None, NOW)
    p = plan(
        desired(request("R1")),
        observed({"crm": {("R1", "customers"): 1}}, completed={"R1": done}),
        now=NOW,
    )
    erase = next(c for c in p.changes if c.action is Action.DELETE_ROWS)
    assert erase.reason is Reason.REINGESTED
    assert erase.detail.startswith("re-ingested")
    assert p.requests[0].reingested


def test_held_and_cancelled_requests_get_no_actions() -> None:
    p = plan(
        desired(request("R1", legal_hold="case 7"), request("R2", cancelled="withdrawn")),
        observed({"crm": {("R1", "customers"): 1, ("R2", "customers"): 1}}),
        now=NOW,
    )
    assert not p.has_changes
    assert {v.id: v.state for v in p.requests} == {"R1": "held", "R2": "cancelled"}


def test_overdue_is_flagged() -> None:
    p = plan(desired(request("R1", due=date(2026, 11, 1))), observed({}), now=NOW)
    assert p.requests[0].days_left == -28 and p.requests[0].overdue


def test_unreadable_system_blocks_only_the_requests_it_serves() -> None:
    obs = observed({"crm": {("R1", "customers"): 1}})
    obs.systems["shop"] = ObservedSystem("shop", error="shop: connection refused")
    p = plan(desired(request("R1"), request("R2", systems=("crm",))), obs, now=NOW)
    states = {v.id: v.state for v in p.requests}
    assert states == {"R1": "blocked", "R2": "pending"}


def test_plan_drift_names_what_planning_now_would_change() -> None:
    from reconciler.render.plan import plan_drift

    before = plan(desired(request("R1")), observed({"crm": {("R1", "customers"): 1}}), now=NOW)
    after = plan(
        desired(request("R1"), request("R2")),
        observed({"crm": {("R1", "customers"): 3, ("R2", "customers"): 1}}),
        now=NOW,
    )
    drift = plan_drift(before, after)
    assert "~ delete crm customers: rows 1 -> 3" in drift
    assert "+ complete dsr receipt in the audit log" in drift
    assert plan_drift(after, after) == []
