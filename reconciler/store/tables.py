"""The state store's tables, their schema version and the storage encoding of its values.

SQLAlchemy `Table`s (created on open, on every dialect alike), the one migration rule, and how
times and JSON are written so that they sort and hash the same everywhere. No connections are
opened here; `sql.py` runs what is defined here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from reconciler.errors import DsrError
from reconciler.store.records import GENESIS_HASH

# 1: lock, runs, journal, audit, observations. 2: + tombstones, request_states, refreshes.
# 3: + exports. 4: + export_packages, export_intents, request_facts.
# Opening an older store creates the missing tables and moves it to this version; a newer
# store is refused, because this dsr would not know what its tables mean.
SCHEMA_VERSION = 4
HEAD_ID = 1  # the one row of audit_head

metadata = sa.MetaData()

meta_table = sa.Table(
    "store_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(255), nullable=False),
)

# At most one row per lock name; its `token` tells this acquisition from a later one.
lock_table = sa.Table(
    "state_lock",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("acquired_at", sa.String(32), nullable=False),
    sa.Column("token", sa.String(64), nullable=False),
)

runs_table = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("plan_id", sa.String(255), nullable=False),
    sa.Column("started_at", sa.String(32), nullable=False),
    sa.Column("ended_at", sa.String(32), nullable=True),
    sa.Column("outcome", sa.String(64), nullable=True),
)

journal_table = sa.Table(
    "journal",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("runs.id"), nullable=False, index=True),
    sa.Column("change_id", sa.String(255), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("message", sa.Text, nullable=True),
)

# `seq` is assigned by the appender from the head, never by the database, so a gap means a
# removed record and not a rolled-back insert.
audit_table = sa.Table(
    "audit",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("system", sa.String(255), nullable=False),
    sa.Column("target", sa.String(255), nullable=False),
    sa.Column("outcome", sa.String(64), nullable=False),
    sa.Column("request", sa.String(255), nullable=True, index=True),
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

# One row (id = 1): the last appended seq and hash, updated in the append's transaction, so
# that removing records from the end of the chain is detectable.
audit_head_table = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
)

observations_table = sa.Table(
    "observations",
    metadata,
    sa.Column("system", sa.String(255), primary_key=True),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("digest", sa.String(255), nullable=False),
    sa.Column("error", sa.Text, nullable=True),
)

tombstones_table = sa.Table(
    "tombstones",
    metadata,
    sa.Column("request_id", sa.String(255), primary_key=True),
    sa.Column("subject_kind", sa.String(32), nullable=False),
    sa.Column("identities", sa.Text, nullable=False),  # JSON [[type, hash], ...]
    sa.Column("systems", sa.Text, nullable=True),  # JSON [name, ...]; NULL: all systems
    sa.Column("completed_at", sa.String(32), nullable=False),
    sa.Column("receipt_hash", sa.String(255), nullable=False),
)

request_states_table = sa.Table(
    "request_states",
    metadata,
    sa.Column("request_id", sa.String(255), primary_key=True),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Column("at", sa.String(32), nullable=False),
)

# History: one row per refresh, never updated.
refreshes_table = sa.Table(
    "refreshes",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("system", sa.String(255), nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("message", sa.Text, nullable=True),
    sa.Index("ix_refreshes_system_at", "system", "at"),
)

exports_table = sa.Table(
    "exports",
    metadata,
    sa.Column("request_id", sa.String(255), primary_key=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("manifest_sha256", sa.String(64), nullable=False),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("built_at", sa.String(32), nullable=False),
    sa.Column("expires_at", sa.String(32), nullable=False),
    sa.Column("expired_at", sa.String(32), nullable=True),
)


# The export packages themselves, when the state store is a shared database: a runner's disk
# is gone after its job, so the package waits here until it expires (then its row goes).
export_packages_table = sa.Table(
    "export_packages",
    metadata,
    sa.Column("request_id", sa.String(255), primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("stored_at", sa.String(32), nullable=False),
)


# What a build is about to publish, written before it publishes: a package found at the
# final place afterwards is adopted only if it is this one (a build killed after publishing),
# never a file someone else put there.
export_intents_table = sa.Table(
    "export_intents",
    metadata,
    sa.Column("request_id", sa.String(255), primary_key=True),
    sa.Column("manifest_sha256", sa.String(64), nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
)


# What an open request's receipt will need that a later run can no longer observe (rows a
# source's owner deleted, rows retained behind a parent that is gone); cleared with the
# receipt.
request_facts_table = sa.Table(
    "request_facts",
    metadata,
    sa.Column("request_id", sa.String(255), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("system", sa.String(255), primary_key=True),
    sa.Column("table_name", sa.String(255), primary_key=True),
    sa.Column("rows", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("masked", sa.Boolean, nullable=False),
    sa.Column("at", sa.String(32), nullable=False),
)


def create_schema(conn: Connection) -> None:
    """Create missing tables, move an older store to SCHEMA_VERSION (refusing a newer one),
    and give an empty audit log its head; in the caller's transaction."""
    metadata.create_all(conn)
    version = conn.execute(
        sa.select(meta_table.c.value).where(meta_table.c.key == "schema_version")
    ).scalar_one_or_none()
    if version is None:
        conn.execute(sa.insert(meta_table).values(key="schema_version", value=str(SCHEMA_VERSION)))
    elif not version.isdigit() or int(version) > SCHEMA_VERSION:
        raise DsrError(
            f"the state store has schema version {version}; "
            f"this dsr understands version {SCHEMA_VERSION}"
        )
    elif int(version) < SCHEMA_VERSION:
        # Every change so far only added tables, which create_all (same transaction) made.
        conn.execute(
            sa.update(meta_table)
            .where(meta_table.c.key == "schema_version")
            .values(value=str(SCHEMA_VERSION))
        )
    head = conn.execute(
        sa.select(audit_head_table.c.seq).where(audit_head_table.c.id == HEAD_ID)
    ).first()
    if head is None:
        # Only a store with no audit records gets a fresh head; a missing head next to
        # existing records is tampering and must stay visible to `verify_audit`.
        any_record = conn.execute(sa.select(audit_table.c.seq).limit(1)).first()
        if any_record is None:
            conn.execute(sa.insert(audit_head_table).values(id=HEAD_ID, seq=0, hash=GENESIS_HASH))


def format_time(value: datetime) -> str:
    """A timezone-aware datetime as fixed-width ISO 8601 UTC: `2026-11-29T11:30:00.000000Z`."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: the state store needs timezone-aware times")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
