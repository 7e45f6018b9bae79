"""The one-writer lock: taken and released, held by another process, left by a dead one."""

from __future__ import annotations

import os

import pytest

from reconciler.errors import LockTimeout
from reconciler.store import LockInfo, StateStore

from .conftest import finish_child, start_child

# Takes the lock as argv[2], says so, then either dies holding it ("die") or holds it until
# its stdin is closed ("hold") and releases it.
HOLD_LOCK = """
import os, sys
from reconciler.store import open_store
store = open_store(sys.argv[1])
with store.lock(sys.argv[2], timeout=60) as info:
    print("locked", info.pid, flush=True)
    if sys.argv[3] == "die":
        os._exit(0)
    sys.stdin.read()
print("released", flush=True)
store.close()
"""


def test_lock_is_acquired_and_released(store: StateStore) -> None:
    with store.lock("apply", timeout=0) as info:
        assert info.holder == "apply"
        assert info.pid == os.getpid()
        assert info.acquired_at.tzinfo is not None
        assert not info.took_over_stale
        assert info.replaced is None
    with store.lock("apply again", timeout=0) as again:
        assert again.holder == "apply again"


def test_lock_is_released_when_the_block_raises(store: StateStore) -> None:
    with pytest.raises(RuntimeError), store.lock("apply", timeout=0):
        raise RuntimeError("boom")
    with store.lock("next", timeout=0) as info:
        assert not info.took_over_stale


def test_a_live_holder_in_this_process_is_not_taken_over(store: StateStore) -> None:
    waits: list[LockInfo] = []
    with (
        store.lock("first", timeout=0),
        pytest.raises(LockTimeout, match="state is locked by first"),
        store.lock("second", timeout=0.3, on_wait=waits.append),
    ):
        pass  # pragma: no cover
    assert [w.holder for w in waits] == ["first"]


def test_a_holder_in_another_process_makes_lock_time_out(store: StateStore, store_url: str) -> None:
    child = start_child(HOLD_LOCK, store_url, "other apply", "hold")
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line.startswith("locked"), f"child did not take the lock: {line!r}"
        waits: list[LockInfo] = []
        with (
            pytest.raises(LockTimeout) as raised,
            store.lock("me", timeout=0.5, on_wait=waits.append),
        ):
            pass  # pragma: no cover
        message = str(raised.value)
        assert message.startswith("state is locked by other apply ")
        assert f"(pid {child.pid} on host " in message
        assert " since " in message
        assert message.endswith("; waited 0.5s")
        assert len(waits) == 1  # called once, when waiting starts, not on every poll
        assert waits[0].holder == "other apply"
        assert waits[0].pid == child.pid
    finally:
        out = finish_child(child)
    assert "released" in out
    with store.lock("me", timeout=5) as info:
        assert info.holder == "me"
        assert not info.took_over_stale


def test_a_lock_left_by_a_dead_process_is_taken_over(store: StateStore, store_url: str) -> None:
    child = start_child(HOLD_LOCK, store_url, "crashed apply", "die")
    finish_child(child)  # reaped: its pid no longer exists
    # The lock dies with its holder; PostgreSQL ends the session as soon as it sees the
    # connection gone, which may take a moment after the process is.
    with store.lock("me", timeout=10) as info:
        assert info.took_over_stale
        assert info.holder == "me"
        assert info.pid == os.getpid()
        assert info.replaced is not None
        assert info.replaced.holder == "crashed apply"
        assert info.replaced.pid == child.pid
    with store.lock("me again", timeout=0) as info:
        assert not info.took_over_stale
