"""Runs, the journal and observations: durable, readable after a reopen, killed runs found."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from reconciler.errors import DsrError
from reconciler.store import JournalEntry, JournalStatus, RunInfo, StateStore, open_store

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_journal_entries_survive_a_reopen(store: StateStore, store_url: str) -> None:
    run = store.begin_run("plan-1", now=at(0))
    store.journal(run, "delete:crm:customers", "started", now=at(1))
    store.journal(run, "delete:crm:customers", "succeeded", now=at(2), message="1 row")
    store.journal(run, "refresh:insights", "started", now=at(3))
    store.close()

    reopened = open_store(store_url)
    try:
        assert reopened.journal_entries(run) == [
            JournalEntry(run, "delete:crm:customers", "started", at(1), None),
            JournalEntry(run, "delete:crm:customers", "succeeded", at(2), "1 row"),
            JournalEntry(run, "refresh:insights", "started", at(3), None),
        ]
        assert reopened.journal_entries("no-such-run") == []
    finally:
        reopened.close()


@pytest.mark.parametrize("status", list(JournalStatus))
def test_every_journal_status_is_accepted(store: StateStore, status: str) -> None:
    run = store.begin_run("plan-1", now=at(0))
    store.journal(run, "change", status, now=at(1))
    assert [e.status for e in store.journal_entries(run)] == [status]


def test_an_unknown_journal_status_is_refused(store: StateStore) -> None:
    run = store.begin_run("plan-1", now=at(0))
    with pytest.raises(ValueError, match="journal status 'done'"):
        store.journal(run, "change", "done", now=at(1))


def test_journalling_an_unknown_run_is_refused(store: StateStore) -> None:
    with pytest.raises(ValueError, match="unknown run"):
        store.journal("no-such-run", "change", "started", now=at(1))
    with pytest.raises(ValueError, match="unknown run"):
        store.end_run("no-such-run", "succeeded", now=at(1))


def test_unfinished_runs_lists_runs_begun_but_never_ended(
    store: StateStore, store_url: str
) -> None:
    assert store.last_run() is None
    assert store.unfinished_runs() == []
    done = store.begin_run("plan-1", now=at(0))
    store.end_run(done, "succeeded", now=at(5))
    killed = store.begin_run("plan-2", now=at(10))
    store.journal(killed, "change", "started", now=at(11))
    store.close()

    reopened = open_store(store_url)
    try:
        assert reopened.unfinished_runs() == [RunInfo(killed, "plan-2", at(10), None, None)]
        assert reopened.last_run() == RunInfo(killed, "plan-2", at(10), None, None)
        reopened.end_run(killed, "interrupted", now=at(20))
        assert reopened.unfinished_runs() == []
        assert reopened.last_run() == RunInfo(killed, "plan-2", at(10), at(20), "interrupted")
    finally:
        reopened.close()


def test_run_ids_sort_by_start_time_and_never_collide(store: StateStore) -> None:
    ids = [store.begin_run("plan", now=at(n)) for n in (0, 0, 1, 60, 3600)]
    assert len(set(ids)) == len(ids)
    assert ids[2:] == sorted(ids[2:])
    assert max(ids[:2]) < ids[2]


def test_times_in_other_zones_are_stored_as_utc(store: StateStore) -> None:
    from datetime import timezone

    cet = timezone(timedelta(hours=1))
    run = store.begin_run("plan", now=datetime(2026, 11, 29, 13, 0, tzinfo=cet))
    last = store.last_run()
    assert last is not None and last.run_id == run
    assert last.started_at == T0
    assert last.started_at.utcoffset() == timedelta(0)


def test_naive_times_are_refused(store: StateStore) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        store.begin_run("plan", now=datetime(2026, 11, 29, 12, 0))


def test_the_last_observation_of_each_system_is_kept(store: StateStore) -> None:
    assert store.observations() == {}
    store.record_observation("crm", now=at(0), digest="sha256:a", error=None)
    store.record_observation("shop", now=at(1), digest="sha256:b", error="connection refused")
    store.record_observation("crm", now=at(2), digest="sha256:c", error=None)
    seen = store.observations()
    assert sorted(seen) == ["crm", "shop"]
    assert (seen["crm"].at, seen["crm"].digest, seen["crm"].error) == (at(2), "sha256:c", None)
    assert seen["shop"].error == "connection refused"


def test_open_creates_the_parent_directory_of_a_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state" / "dsr.db"
    store = open_store(f"sqlite:///{path}")
    try:
        assert path.exists()
        assert store.verify_audit() == []
    finally:
        store.close()


def test_a_sqlite_store_uses_wal_so_processes_can_share_it(tmp_path: Path) -> None:
    path = tmp_path / "dsr.db"
    open_store(f"sqlite:///{path}").close()
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    finally:
        engine.dispose()


def test_an_invalid_url_is_a_user_error() -> None:
    with pytest.raises(DsrError, match="not a valid SQLAlchemy URL"):
        open_store("state/dsr.db")


def test_a_store_from_a_newer_dsr_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'dsr.db'}"
    open_store(url).close()
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE store_meta SET value = :v WHERE key = 'schema_version'"), {"v": "99"}
            )
    finally:
        engine.dispose()
    with pytest.raises(DsrError, match="schema version 99"):
        open_store(url)
