"""A batch's state in one transaction: `record_batch` (journal, audit records, receipts and
tombstones), `record_requests` (every request's state and facts) and `audit_records_of`; the
records a batch appends chain exactly as records appended one by one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from reconciler.desired.model import SubjectKind
from reconciler.privacy.identity import IdentityKey
from reconciler.store import (
    AuditEvent,
    Fact,
    FactKind,
    JournalStatus,
    RequestState,
    StateStore,
    Tombstone,
    open_store,
)

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
KEY = IdentityKey("a1", b"an audit key that lives outside the store", development=False)
IDENTITY = ("email", "hmac-sha256:t1:" + "ab" * 32)


def event(n: int, request: str, action: str = "delete_rows") -> AuditEvent:
    return AuditEvent(
        at=T0,
        run_id="run",
        action=action,
        system="crm",
        target="customers",
        outcome="succeeded",
        request=request,
        details={"change": f"{action}:crm:{request}", "rows": n},
    )


def tombstone(request: str) -> Tombstone:
    return Tombstone(request, SubjectKind.CUSTOMER, (IDENTITY,), None, T0)


@pytest.fixture
def keyed(store_url: str) -> Iterator[StateStore]:
    opened = open_store(store_url, audit_key=KEY)
    try:
        yield opened
    finally:
        opened.close()


def test_a_batch_is_one_chain_with_its_receipts_tombstones_and_journal(keyed: StateStore) -> None:
    run = keyed.begin_run("plan", now=T0)
    keyed.append_audit(event(1, "R-0"))  # one appended alone first: the batch continues it
    keyed.record_facts("R-1", [Fact(FactKind.ACTED, "crm", "orders", 2)], now=T0)
    keyed.record_tombstone(tombstone("R-2"))  # an earlier erasure of R-2: replaced
    records = keyed.record_batch(
        run,
        now=T0,
        journal=[("a", JournalStatus.SUCCEEDED, None), ("b", JournalStatus.FAILED, "no")],
        audit=[event(2, "R-1"), event(3, "R-2")],
        completions=[
            (event(0, "R-1", "complete"), tombstone("R-1")),
            (event(0, "R-2", "complete"), tombstone("R-2")),
        ],
    )
    assert [r.seq for r in records] == [2, 3, 4, 5]
    assert [r.prev_hash for r in records[1:]] == [r.hash for r in records[:-1]]
    assert keyed.audit_head() == (5, records[-1].hash)
    assert keyed.verify_audit() == []
    stones = keyed.tombstones()
    assert stones["R-1"].receipt_hash == records[2].hash
    assert stones["R-2"].receipt_hash == records[3].hash
    assert keyed.request_facts() == {}  # the receipts hold them now
    assert [(e.change_id, e.status, e.message) for e in keyed.journal_entries(run)] == [
        ("a", "succeeded", None),
        ("b", "failed", "no"),
    ]


def test_a_batch_for_an_unknown_run_writes_nothing(store: StateStore) -> None:
    with pytest.raises(ValueError, match="unknown run"):
        store.record_batch("no-such-run", now=T0, audit=[event(1, "R-1")])
    assert store.audit_records() == []
    assert store.audit_head()[0] == 0


def test_a_failed_batch_writes_nothing(store: StateStore) -> None:
    run = store.begin_run("plan", now=T0)
    with pytest.raises(ValueError):
        store.record_batch(
            run,
            now=T0,
            audit=[event(1, "R-1")],
            journal=[("a", "no such status", None)],  # type: ignore[list-item]
        )
    assert store.audit_records() == []
    assert store.journal_entries(run) == []


def test_request_states_and_facts_in_one_call(store: StateStore) -> None:
    store.set_request_state("R-1", RequestState.PENDING, now=T0)
    facts = {"R-2": [Fact(FactKind.AWAITED, "shop", "shop_customers", 1)]}
    store.record_requests(
        {"R-1": (RequestState.COMPLETED, None), "R-2": (RequestState.WAITING, "on shop")},
        facts,
        now=T0,
    )
    states = store.request_states()
    assert {rid: (r.state, r.detail) for rid, r in states.items()} == {
        "R-1": ("completed", None),
        "R-2": ("waiting", "on shop"),
    }
    assert store.request_facts() == {"R-2": tuple(facts["R-2"])}


def test_audit_records_of_many_requests_match_one_by_one(store: StateStore) -> None:
    for n in range(6):
        store.append_audit(event(n, f"R-{n % 3}"))
    wanted = ["R-0", "R-2", "R-9"]
    assert store.audit_records_of(wanted) == {r: store.audit_records(r) for r in wanted}
