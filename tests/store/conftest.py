"""Fixtures for the state store tests: a fresh store on SQLite and on PostgreSQL, and a way to
run store code in another process (the lock and audit guarantees are about processes).

PostgreSQL databases come from the shared `postgres_url` fixture (tests/conftest.py): a new
database per test, dropped afterwards; an unreachable server skips, or fails when
DSR_REQUIRE_SERVERS=1.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.store import StateStore, open_store


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
    ids=["sqlite", "postgres"],
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty state store on each backend in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'dsr.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def store(store_url: str) -> Iterator[StateStore]:
    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()


def start_child(code: str, *args: str) -> subprocess.Popen[str]:
    """Run `code` in a new Python process with `args` as sys.argv[1:]; pipes on all streams."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_child(child: subprocess.Popen[str]) -> str:
    """Close the child's stdin, wait for it, and return its stdout; fail with its stderr."""
    # A generous bound so that a hung child fails the test instead of hanging it.
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, f"child exited {child.returncode}:\n{err}"
    return out
