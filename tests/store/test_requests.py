"""Tombstones, request states and refresh history: round trips, upserts, validation, and the
move of an older store to the current schema version."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from reconciler.desired.model import SubjectKind
from reconciler.store import (
    AuditEvent,
    Outcome,
    RefreshRecord,
    RequestRecord,
    RequestState,
    StateStore,
    Tombstone,
    open_store,
)
from reconciler.store.tables import SCHEMA_VERSION

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
EMAIL_HASH = "hmac-sha256:k1:" + "3b" * 32
PHONE_HASH = "hmac-sha256:k1:" + "a7" * 32


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


BASE = Tombstone(
    request_id="DSR-20261129-7KQ2",
    subject_kind="customer",
    identities=(("email", EMAIL_HASH), ("phone", PHONE_HASH)),
    systems=None,
    completed_at=T0,
    receipt_hash="c" * 64,
)


def tombstone(request_id: str = BASE.request_id, **changes: Any) -> Tombstone:
    return replace(BASE, request_id=request_id, **changes)


# --- tombstones ------------------------------------------------------------------------------


def test_tombstones_survive_a_reopen(store: StateStore, store_url: str) -> None:
    assert store.tombstones() == {}
    everywhere = tombstone("DSR-B")
    some = tombstone("DSR-A", subject_kind="user", systems=("insights", "crm"), identities=())
    store.record_tombstone(everywhere)
    store.record_tombstone(some)
    store.close()

    reopened = open_store(store_url)
    try:
        found = reopened.tombstones()
        assert list(found) == ["DSR-A", "DSR-B"]
        assert found == {"DSR-A": some, "DSR-B": everywhere}
        assert found["DSR-B"].systems is None
        assert found["DSR-A"].systems == ("insights", "crm")  # order as given
        assert found["DSR-B"].completed_at.utcoffset() == timedelta(0)
    finally:
        reopened.close()


def test_a_re_erasure_updates_the_tombstone(store: StateStore) -> None:
    store.record_tombstone(tombstone())
    store.record_tombstone(tombstone("DSR-OTHER"))
    again = tombstone(completed_at=at(86400), receipt_hash="d" * 64)
    store.record_tombstone(again)
    found = store.tombstones()
    assert found["DSR-20261129-7KQ2"] == again
    assert found["DSR-OTHER"] == tombstone("DSR-OTHER")
    assert len(found) == 2


@pytest.mark.parametrize("kind", list(SubjectKind))
def test_every_subject_kind_is_accepted(store: StateStore, kind: str) -> None:
    store.record_tombstone(tombstone(subject_kind=kind))
    assert store.tombstones()["DSR-20261129-7KQ2"].subject_kind == kind


def test_an_unknown_subject_kind_is_refused(store: StateStore) -> None:
    with pytest.raises(ValueError, match="subject kind 'robot'"):
        store.record_tombstone(tombstone(subject_kind="robot"))
    assert store.tombstones() == {}


@pytest.mark.parametrize(
    "value",
    [
        "jane.doe@example.com",  # a raw identifier
        "hmac-sha256:k1:" + "3B" * 32,  # upper-case hex is not what dsr writes
        "hmac-sha256:k1:" + "3b" * 31,  # too short
        "sha256:" + "3b" * 32,  # not keyed
        "hmac-sha256::" + "3b" * 32,  # no key id
    ],
)
def test_an_identity_that_is_not_a_keyed_hash_is_refused_without_echoing_it(
    store: StateStore, value: str
) -> None:
    with pytest.raises(ValueError, match=r"identity 2 \(email\) is not an hmac-sha256") as caught:
        store.record_tombstone(tombstone(identities=(("phone", PHONE_HASH), ("email", value))))
    assert value not in str(caught.value)
    assert store.tombstones() == {}


def test_a_naive_completion_time_is_refused(store: StateStore) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        store.record_tombstone(tombstone(completed_at=datetime(2026, 11, 29, 12, 0)))


# --- request states --------------------------------------------------------------------------


@pytest.mark.parametrize("state", list(RequestState))
def test_every_request_state_is_accepted(store: StateStore, state: str) -> None:
    store.set_request_state("DSR-1", state, now=at(0), detail="1 row in shop.customers")
    assert store.request_states() == {
        "DSR-1": RequestRecord("DSR-1", state, "1 row in shop.customers", at(0))
    }


def test_an_unknown_request_state_is_refused(store: StateStore) -> None:
    with pytest.raises(ValueError, match="request state 'done'"):
        store.set_request_state("DSR-1", "done", now=at(0))
    assert store.request_states() == {}


def test_setting_a_request_state_replaces_the_previous_one(
    store: StateStore, store_url: str
) -> None:
    store.set_request_state("DSR-2", "waiting", now=at(0), detail="shop: 1 row")
    store.set_request_state("DSR-1", "pending", now=at(1))
    store.set_request_state("DSR-2", "completed", now=at(2))
    store.close()

    reopened = open_store(store_url)
    try:
        states = reopened.request_states()
        assert list(states) == ["DSR-1", "DSR-2"]
        assert states["DSR-1"] == RequestRecord("DSR-1", "pending", None, at(1))
        # The detail of the earlier state does not linger.
        assert states["DSR-2"] == RequestRecord("DSR-2", "completed", None, at(2))
    finally:
        reopened.close()


def test_request_state_times_in_other_zones_are_stored_as_utc(store: StateStore) -> None:
    cet = timezone(timedelta(hours=1))
    store.set_request_state("DSR-1", "held", now=datetime(2026, 11, 29, 13, 0, tzinfo=cet))
    found = store.request_states()["DSR-1"].at
    assert found == T0 and found.utcoffset() == timedelta(0)
    with pytest.raises(ValueError, match="naive datetime"):
        store.set_request_state("DSR-1", "held", now=datetime(2026, 11, 29, 12, 0))


# --- refreshes -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [Outcome.SUCCEEDED, Outcome.FAILED])
def test_every_refresh_status_is_accepted(store: StateStore, status: str) -> None:
    store.record_refresh("insights", now=at(0), status=status)
    assert store.last_refreshes() == {"insights": RefreshRecord("insights", at(0), status, None)}


def test_an_unknown_refresh_status_is_refused(store: StateStore) -> None:
    with pytest.raises(ValueError, match="refresh status 'warning'"):
        store.record_refresh("insights", now=at(0), status="warning")
    assert store.last_refreshes() == {}


def test_the_latest_refresh_of_each_system_is_returned_and_history_is_kept(
    store: StateStore, store_url: str
) -> None:
    assert store.last_refreshes() == {}
    store.record_refresh("insights", now=at(0), status="succeeded")
    store.record_refresh("apps", now=at(1), status="failed", message="exit 2: consent missing")
    store.record_refresh("insights", now=at(10), status="failed", message="exit 1: timeout")
    # Recorded later by a runner whose refresh ended earlier: `at` decides, not insert order.
    store.record_refresh("insights", now=at(5), status="succeeded")
    store.close()

    reopened = open_store(store_url)
    try:
        assert reopened.last_refreshes() == {
            "apps": RefreshRecord("apps", at(1), "failed", "exit 2: consent missing"),
            "insights": RefreshRecord("insights", at(10), "failed", "exit 1: timeout"),
        }
        assert list(reopened.last_refreshes()) == ["apps", "insights"]
    finally:
        reopened.close()
    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            history = conn.execute(text("SELECT system, status FROM refreshes ORDER BY id")).all()
    finally:
        engine.dispose()
    assert [tuple(row) for row in history] == [
        ("insights", "succeeded"),
        ("apps", "failed"),
        ("insights", "failed"),
        ("insights", "succeeded"),
    ]


def test_of_two_refreshes_at_the_same_time_the_later_record_wins(store: StateStore) -> None:
    store.record_refresh("insights", now=at(0), status="failed", message="first")
    store.record_refresh("insights", now=at(0), status="succeeded")
    assert store.last_refreshes()["insights"] == RefreshRecord("insights", at(0), "succeeded", None)


def test_a_naive_refresh_time_is_refused(store: StateStore) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        store.record_refresh("insights", now=datetime(2026, 11, 29, 12, 0), status="succeeded")


# --- schema version --------------------------------------------------------------------------


def test_a_store_from_an_older_dsr_gets_the_new_tables(store_url: str) -> None:
    """A version 1 store (before tombstones, request states and refreshes) is moved up."""
    first = open_store(store_url)
    run = first.begin_run("plan-1", now=at(0))
    record = first.append_audit(
        AuditEvent(
            at=at(1),
            run_id=run,
            action="delete",
            system="crm",
            target="customers",
            outcome="succeeded",
            request="DSR-1",
            details={"rows": 1},
        )
    )
    first.close()
    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            for table in ("tombstones", "request_states", "refreshes"):
                conn.execute(text(f"DROP TABLE {table}"))
            conn.execute(text("UPDATE store_meta SET value = '1' WHERE key = 'schema_version'"))
    finally:
        engine.dispose()

    reopened = open_store(store_url)
    try:
        assert reopened.audit_records() == [record]
        assert reopened.verify_audit() == []
        reopened.record_tombstone(tombstone("DSR-1", receipt_hash=record.hash))
        reopened.set_request_state("DSR-1", "completed", now=at(2))
        reopened.record_refresh("insights", now=at(3), status="succeeded")
        assert reopened.tombstones()["DSR-1"].receipt_hash == record.hash
        assert reopened.request_states()["DSR-1"].state == "completed"
        assert reopened.last_refreshes()["insights"].status == "succeeded"
    finally:
        reopened.close()
    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            version = conn.execute(
                text("SELECT value FROM store_meta WHERE key = 'schema_version'")
            ).scalar_one()
    finally:
        engine.dispose()
    assert version == str(SCHEMA_VERSION) == "4"


def test_exports_round_trip_and_expiry(tmp_path: Path) -> None:
    from reconciler.store import ExportRecord, open_store

    store = open_store(f"sqlite:///{tmp_path}/dsr.db")
    try:
        record = ExportRecord("DSR-E", "state/outbox/DSR-E.zip", "a" * 64, 7, at(1), at(2))
        store.record_export(record)
        assert store.exports() == {"DSR-E": record}
        expired = ExportRecord("DSR-E", record.path, record.manifest_sha256, 7, at(1), at(2), at(3))
        store.record_export(expired)
        assert store.exports()["DSR-E"].expired_at == at(3)
    finally:
        store.close()
