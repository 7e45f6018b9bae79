"""The audit log: appended as one hash chain, and every kind of tampering is reported."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from reconciler.store import GENESIS_HASH, AuditEvent, StateStore, open_store

from .conftest import finish_child, start_child

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

# Says it is ready, then waits for a line on stdin, so that both children start together.
APPEND_EVENTS = """
import sys
from datetime import UTC, datetime
from reconciler.store import AuditEvent, open_store
store = open_store(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()
for i in range(int(sys.argv[3])):
    store.append_audit(AuditEvent(
        at=datetime.now(UTC), run_id=sys.argv[2], action="delete", system="crm",
        target="customers", outcome="succeeded", details={"i": i},
    ))
store.close()
"""


def event(n: int, *, request: str | None = "DSR-20261129-7KQ2") -> AuditEvent:
    return AuditEvent(
        at=T0 + timedelta(seconds=n),
        run_id="run-1",
        action="delete",
        system="crm",
        target="customers",
        outcome="succeeded",
        request=request,
        details={"rows": n, "digest": f"sha256:{n:064x}"},
    )


def tamper(store_url: str, sql: str, **params: Any) -> None:
    """Change the store behind its back, as someone with database access could."""
    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(sql), params)
    finally:
        engine.dispose()


@pytest.fixture
def three(store: StateStore) -> StateStore:
    for n in (1, 2, 3):
        store.append_audit(event(n))
    assert store.verify_audit() == []
    return store


def test_an_empty_log_verifies(store: StateStore) -> None:
    assert store.verify_audit() == []
    assert store.audit_records() == []


def test_appended_records_form_a_chain(store: StateStore) -> None:
    first = store.append_audit(event(1))
    second = store.append_audit(event(2, request=None))
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == GENESIS_HASH
    assert second.prev_hash == first.hash
    assert first.event == event(1)
    assert store.audit_records() == [first, second]
    assert store.verify_audit() == []


def test_the_hash_covers_every_field_but_itself_as_canonical_json(store: StateStore) -> None:
    record = store.append_audit(event(1))
    fields = {
        "seq": 1,
        "at": "2026-11-29T12:00:01.000000Z",
        "run_id": "run-1",
        "action": "delete",
        "system": "crm",
        "target": "customers",
        "outcome": "succeeded",
        "request": "DSR-20261129-7KQ2",
        "details": {"rows": 1, "digest": f"sha256:{1:064x}"},
        "prev_hash": GENESIS_HASH,
    }
    blob = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    assert record.hash == hashlib.sha256(blob.encode()).hexdigest()


def test_records_can_be_read_per_request(store: StateStore) -> None:
    store.append_audit(event(1, request="DSR-A"))
    store.append_audit(event(2, request="DSR-B"))
    store.append_audit(event(3, request="DSR-A"))
    assert [r.seq for r in store.audit_records("DSR-A")] == [1, 3]
    assert [r.seq for r in store.audit_records("DSR-B")] == [2]
    assert store.audit_records("DSR-C") == []


def test_details_are_copied_on_append(store: StateStore) -> None:
    details: dict[str, Any] = {"rows": 1}
    store.append_audit(
        AuditEvent(T0, "run-1", "delete", "crm", "customers", "succeeded", None, details)
    )
    details["rows"] = 99
    assert store.audit_records()[0].details == {"rows": 1}
    assert store.verify_audit() == []


def test_an_edited_record_is_reported(three: StateStore, store_url: str) -> None:
    tamper(store_url, "UPDATE audit SET outcome = :o WHERE seq = 2", o="failed")
    assert three.verify_audit() == ["audit record 2: content does not match its hash"]


def test_an_edited_and_rehashed_record_breaks_the_link_to_the_next(
    three: StateStore, store_url: str
) -> None:
    record = three.audit_records()[1]
    fields = {
        "seq": 2,
        "at": "2026-11-29T12:00:02.000000Z",
        "run_id": record.run_id,
        "action": record.action,
        "system": record.system,
        "target": record.target,
        "outcome": "failed",
        "request": record.request,
        "details": record.details,
        "prev_hash": record.prev_hash,
    }
    forged = hashlib.sha256(
        json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    tamper(
        store_url,
        "UPDATE audit SET outcome = :o, hash = :h WHERE seq = 2",
        o="failed",
        h=forged,
    )
    assert three.verify_audit() == ["audit record 3: prev_hash does not match the hash of record 2"]


def test_a_record_removed_from_the_middle_is_reported(three: StateStore, store_url: str) -> None:
    tamper(store_url, "DELETE FROM audit WHERE seq = :s", s=2)
    assert three.verify_audit() == ["audit record 3: record 2 is missing before it"]


def test_records_removed_from_the_end_are_reported(three: StateStore, store_url: str) -> None:
    tamper(store_url, "DELETE FROM audit WHERE seq = :s", s=3)
    assert three.verify_audit() == [
        "audit head is at record 3 but the last record is 2: records were removed from the end"
    ]


def test_every_record_removed_is_reported(three: StateStore, store_url: str) -> None:
    tamper(store_url, "DELETE FROM audit")
    assert three.verify_audit() == [
        "audit head is at record 3 but the last record is 0: records were removed from the end"
    ]


def test_an_edited_head_is_reported(three: StateStore, store_url: str) -> None:
    tamper(store_url, "UPDATE audit_head SET hash = :h", h="f" * 64)
    assert three.verify_audit() == ["audit head hash does not match record 3"]


def test_a_head_moved_back_is_reported(three: StateStore, store_url: str) -> None:
    tamper(store_url, "UPDATE audit_head SET seq = :s", s=2)
    problems = three.verify_audit()
    assert len(problems) == 1
    assert problems[0].startswith("audit head is at record 2 but the last record is 3")


def test_a_removed_head_is_reported_and_not_recreated(three: StateStore, store_url: str) -> None:
    tamper(store_url, "DELETE FROM audit_head")
    assert three.verify_audit() == ["audit head is missing"]
    reopened = open_store(store_url)
    try:
        assert reopened.verify_audit() == ["audit head is missing"]
    finally:
        reopened.close()


def test_concurrent_appends_from_two_processes_leave_one_chain(
    store: StateStore, store_url: str
) -> None:
    children = [start_child(APPEND_EVENTS, store_url, f"run-{n}", "50") for n in (1, 2)]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    for child in children:
        finish_child(child)
    records = store.audit_records()
    assert [r.seq for r in records] == list(range(1, 101))
    assert sorted(r.run_id for r in records) == ["run-1"] * 50 + ["run-2"] * 50
    assert store.verify_audit() == []
