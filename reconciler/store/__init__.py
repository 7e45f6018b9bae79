"""The state store: the one-writer lock, runs and their journal, the audit log, observations,
tombstones of completed erasures, request states, the refresh history of each system and
the export packages built.

Callers get a `StateStore` from `open_store(url)` and pass it along as an argument; nothing
here is a module-level singleton. This package must not print, exit or know about click; its
expected failures are `DsrError`s (`LockTimeout` for the lock).
"""

from __future__ import annotations

from reconciler.desired.model import DEFAULT_TIMEOUTS, Timeouts
from reconciler.privacy.identity import IdentityKey
from reconciler.store.protocol import StateStore
from reconciler.store.records import (
    GENESIS_HASH,
    IDENTITY_HASH_PATTERN,
    AuditEvent,
    AuditRecord,
    ExportRecord,
    Fact,
    FactKind,
    JournalEntry,
    JournalStatus,
    LockInfo,
    Observation,
    Outcome,
    RefreshRecord,
    RequestRecord,
    RequestState,
    RunInfo,
    Tombstone,
)

__all__ = [
    "GENESIS_HASH",
    "IDENTITY_HASH_PATTERN",
    "AuditEvent",
    "AuditRecord",
    "ExportRecord",
    "Fact",
    "FactKind",
    "JournalEntry",
    "JournalStatus",
    "LockInfo",
    "Observation",
    "Outcome",
    "RefreshRecord",
    "RequestRecord",
    "RequestState",
    "RunInfo",
    "StateStore",
    "Tombstone",
    "open_store",
]


def open_store(
    url: str,
    *,
    readonly: bool = False,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
    audit_key: IdentityKey | None = None,
) -> StateStore:
    """Open (creating tables if missing) the store at a SQLAlchemy URL.

    For example `sqlite:////abs/path/state/dsr.db` (the parent directory is created) or
    `postgresql+psycopg://user@host/db`. Raises `DsrError` if the URL is invalid or the
    database cannot be reached. `readonly` never writes (a plan on a pull request may run
    with a role that can only read): a store that does not exist yet reads as empty.
    `audit_key` keys the audit chain (a secret kept outside the store; see store/chain.py).
    """
    # Imported here so that importing the contract does not import SQLAlchemy.
    from reconciler.store.sql import SqlStateStore

    return SqlStateStore.open(url, readonly=readonly, timeouts=timeouts, audit_key=audit_key)
