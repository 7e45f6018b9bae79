"""The keyed audit chain against someone who can write to the state store but does not hold
the audit key: every kind of tampering the trust issue (#9) reproduced is reported.

Each test tampers with real SQLite and PostgreSQL stores the way database access allows:
cutting off the tail and moving the head back, deleting or editing a record and recomputing
the chain (without the key the attacker can only compute plain SHA-256), and emptying the log
while tombstones still point at receipts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from reconciler.desired.model import SubjectKind
from reconciler.privacy.identity import IdentityKey
from reconciler.store import AuditEvent, StateStore, Tombstone, open_store
from reconciler.store.chain import StoredRecord, audit_hash, hashed_fields, head_mac
from reconciler.store.records import GENESIS_HASH

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
KEY = IdentityKey("a1", b"an audit key that lives outside the store", development=False)
HASH = "hmac-sha256:k1:" + "3b" * 32


def event(n: int, action: str = "delete", request: str = "DSR-1") -> AuditEvent:
    return AuditEvent(
        at=T0 + timedelta(seconds=n),
        run_id="run-1",
        action=action,
        system="crm",
        target="customers",
        outcome="succeeded",
        request=request,
        details={"rows": n},
    )


@pytest.fixture
def keyed(store_url: str) -> Iterator[StateStore]:
    store = open_store(store_url, audit_key=KEY)
    try:
        for n in range(1, 4):
            store.append_audit(event(n))
        tomb = Tombstone("DSR-1", SubjectKind.CUSTOMER, (("email", HASH),), None, T0)
        store.record_completion(event(4, "complete"), tomb)
        store.append_audit(event(5))
        yield store
    finally:
        store.close()


def sql(store_url: str, statement: str, **params: Any) -> list[Any]:
    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return list(result) if result.returns_rows else []
    finally:
        engine.dispose()


def unkeyed_rechain(store_url: str) -> None:
    """What an attacker without the key can do after editing: recompute every hash with plain
    SHA-256, fix the prev_hash links and the head."""
    rows = sql(store_url, "SELECT * FROM audit ORDER BY seq")
    prev = GENESIS_HASH
    for row in rows:
        record = StoredRecord(
            int(row.seq),
            row.at,
            row.run_id,
            row.action,
            row.system,
            row.target,
            row.outcome,
            row.request,
            row.details,
            prev,
            "",
        )
        digest = audit_hash(hashed_fields(record, json.loads(row.details)))
        sql(
            store_url,
            "UPDATE audit SET prev_hash = :p, hash = :h WHERE seq = :s",
            p=prev,
            h=digest,
            s=row.seq,
        )
        prev = digest
    sql(store_url, "UPDATE audit_head SET seq = :s, hash = :h", s=len(rows), h=prev)


def test_an_intact_keyed_chain_verifies_and_names_its_head(keyed: StateStore) -> None:
    assert keyed.verify_audit() == []
    seq, digest = keyed.audit_head()
    assert seq == 5
    assert keyed.verify_audit((seq, digest)) == []
    assert keyed.verify_audit((3, keyed.audit_records()[2].hash)) == []


def test_a_keyed_hash_is_not_plain_sha256(keyed: StateStore) -> None:
    record = keyed.audit_records()[0]
    blob = json.dumps({**hashed_fields_of(record)}, sort_keys=True, separators=(",", ":")).encode()
    assert record.hash != hashlib.sha256(blob).hexdigest()


def hashed_fields_of(record: Any) -> dict[str, Any]:
    return {
        "seq": record.seq,
        "at": record.at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "run_id": record.run_id,
        "action": record.action,
        "system": record.system,
        "target": record.target,
        "outcome": record.outcome,
        "request": record.request,
        "details": record.details,
        "prev_hash": record.prev_hash,
    }


def test_cutting_off_the_tail_and_moving_the_head_back_is_detected(
    keyed: StateStore, store_url: str
) -> None:
    third = keyed.audit_records()[2]
    sql(store_url, "DELETE FROM audit WHERE seq > 3")
    sql(store_url, "UPDATE audit_head SET seq = 3, hash = :h", h=third.hash)
    problems = keyed.verify_audit()
    assert any("head moved back" in p for p in problems), problems


def test_a_replayed_old_head_is_caught_by_the_witness(keyed: StateStore, store_url: str) -> None:
    """Someone saved the head row at record 3 (with its MAC) and puts it back after cutting
    the tail: the chain alone cannot tell, the head a CI log witnessed can."""
    witnessed = keyed.audit_head()
    keyed_fields = {r.key: r.value for r in sql(store_url, "SELECT key, value FROM store_meta")}
    del keyed_fields  # the MAC of an older head: replaying it needs it saved earlier
    sql(store_url, "DELETE FROM audit WHERE seq > 3")
    records = keyed.audit_records()
    sql(store_url, "UPDATE audit_head SET seq = 3, hash = :h", h=records[2].hash)
    sql(
        store_url,
        "UPDATE store_meta SET value = :m WHERE key = 'audit_head_mac'",
        # The MAC as the row stood when record 3 was the head (saved then, put back now).
        m=head_mac(3, records[2].hash, KEY.secret),
    )
    assert not any("head" in p for p in keyed.verify_audit() if "tombstone" not in p)
    problems = keyed.verify_audit(witnessed)
    assert any("is not in the audit log: it was cut off" in p for p in problems), problems


@pytest.mark.parametrize("change", ["delete", "edit"])
def test_changing_a_record_and_recomputing_the_chain_without_the_key_is_detected(
    keyed: StateStore, store_url: str, change: str
) -> None:
    if change == "delete":
        sql(store_url, "DELETE FROM audit WHERE seq = 2")
        sql(store_url, "UPDATE audit SET seq = seq - 1 WHERE seq > 2")
    else:
        sql(store_url, "UPDATE audit SET details = :d WHERE seq = 2", d='{"rows":0}')
    unkeyed_rechain(store_url)
    problems = keyed.verify_audit()
    assert any("content does not match its hash" in p for p in problems), problems


def test_emptying_the_log_leaves_tombstones_pointing_at_nothing(
    keyed: StateStore, store_url: str
) -> None:
    sql(store_url, "DELETE FROM audit")
    sql(store_url, "UPDATE audit_head SET seq = 0, hash = :h", h=GENESIS_HASH)
    sql(store_url, "DELETE FROM store_meta WHERE key LIKE 'audit_%'")
    problems = keyed.verify_audit()
    assert problems == ["the tombstone of DSR-1 points at a receipt that is not in the audit log"]


def test_a_receipt_without_its_tombstone_is_reported(keyed: StateStore, store_url: str) -> None:
    sql(store_url, "DELETE FROM tombstones")
    problems = keyed.verify_audit()
    assert problems == [
        "audit record 4 is the receipt of DSR-1, but the state store has no tombstone for it"
    ]


def test_without_the_key_a_keyed_chain_is_not_called_intact(
    store_url: str, keyed: StateStore
) -> None:
    bare = open_store(store_url)
    try:
        problems = bare.verify_audit()
        assert problems and "needs the audit key" in problems[0]
        with pytest.raises(Exception, match="needs the audit key"):
            bare.append_audit(event(9))
    finally:
        bare.close()
    other = open_store(store_url, audit_key=IdentityKey("a2", b"another", False))
    try:
        assert any("keyed with key id a1" in p for p in other.verify_audit())
    finally:
        other.close()
