"""The audit log in the state store's tables: append-only, hash-chained (`chain.py`), keyed
once the store is given an audit key; verified together with the state it vouches for
(tombstones, export records).

`SqlStateStore` composes an `AuditLog` and lends it its transactions; `append_in` writes a
record inside a transaction the caller holds, so a record and the state it describes commit
together. This module must not print, exit, or format values into SQL.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from reconciler.desired.model import SubjectKind
from reconciler.errors import DsrError
from reconciler.privacy.identity import IdentityKey
from reconciler.store.chain import (
    Head,
    StoredRecord,
    audit_hash,
    chain_problems,
    cross_problems,
    head_mac,
    witness_problems,
)
from reconciler.store.records import (
    GENESIS_HASH,
    AuditEvent,
    AuditRecord,
    Outcome,
    Tombstone,
    member,
)
from reconciler.store.tables import (
    HEAD_ID,
    audit_head_table,
    audit_table,
    canonical_json,
    exports_table,
    format_time,
    meta_table,
    parse_time,
    request_facts_table,
    tombstones_table,
)

# Rows of store_meta that keep the audit chain's keying (the key itself never is here).
META_KEY_ID = "audit_key_id"
META_KEYED_FROM = "audit_keyed_from"
META_HEAD_MAC = "audit_head_mac"

_CHUNK = 500  # request ids in one IN list
Transaction = Callable[[], AbstractContextManager[Connection]]


def _meta(conn: Connection, key: str) -> str | None:
    value = conn.execute(
        sa.select(meta_table.c.value).where(meta_table.c.key == key)
    ).scalar_one_or_none()
    return None if value is None else str(value)


def _set_meta(conn: Connection, key: str, value: str) -> None:
    done = conn.execute(sa.update(meta_table).where(meta_table.c.key == key).values(value=value))
    if done.rowcount == 0:
        conn.execute(sa.insert(meta_table).values(key=key, value=value))


def tombstone_values(tombstone: Tombstone) -> dict[str, Any]:
    """A tombstone as the columns of its row (the identities already keyed hashes)."""
    return {
        "subject_kind": member(
            SubjectKind,
            tombstone.subject_kind,
            f"tombstone {tombstone.request_id}: subject kind",
        ).value,
        "identities": canonical_json([list(pair) for pair in tombstone.identities]),
        "systems": None if tombstone.systems is None else canonical_json(tombstone.systems),
        "completed_at": format_time(tombstone.completed_at),
        "receipt_hash": tombstone.receipt_hash,
    }


class AuditLog:
    """The audit log of one store. `read`, `write` and `snapshot` open the store's
    transactions (see `SqlStateStore`)."""

    def __init__(
        self,
        key: IdentityKey | None,
        *,
        read: Transaction,
        write: Transaction,
        snapshot: Transaction,
    ) -> None:
        self._key = key
        self._read = read
        self._write = write
        self._snapshot = snapshot

    def append(self, event: AuditEvent) -> AuditRecord:
        with self._write() as conn:
            return self.append_in(conn, event)

    def record_completion(self, event: AuditEvent, tombstone: Tombstone) -> AuditRecord:
        """The receipt of an erasure and its tombstone, in one transaction: a run killed in
        between leaves both or neither, so the next run never writes a second receipt."""
        with self._write() as conn:
            return self.complete_in(conn, event, tombstone)

    def complete_in(self, conn: Connection, event: AuditEvent, tombstone: Tombstone) -> AuditRecord:
        """`record_completion` inside the caller's write transaction."""
        return self.complete_many_in(conn, [(event, tombstone)])[0]

    def complete_many_in(
        self, conn: Connection, completions: Sequence[tuple[AuditEvent, Tombstone]]
    ) -> list[AuditRecord]:
        """Receipts and their tombstones inside the caller's write transaction: the receipts
        appended in order, each tombstone (a new one, or replacing the request's earlier one)
        pointing at its receipt, and the requests' facts cleared (the receipts hold them)."""
        if not completions:
            return []
        records = self.append_many_in(conn, [event for event, _ in completions])
        rows = [
            {**tombstone_values(t), "request_id": t.request_id, "receipt_hash": r.hash}
            for (_, t), r in zip(completions, records, strict=True)
        ]
        ids = [t.request_id for _, t in completions]
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            conn.execute(
                sa.delete(tombstones_table).where(tombstones_table.c.request_id.in_(chunk))
            )
            # The receipt holds the request's facts now; the next cycle starts afresh.
            conn.execute(
                sa.delete(request_facts_table).where(request_facts_table.c.request_id.in_(chunk))
            )
        conn.execute(sa.insert(tombstones_table), rows)
        return records

    def append_in(self, conn: Connection, event: AuditEvent) -> AuditRecord:
        """Appends a record inside the caller's write transaction (it commits with the state
        the record describes)."""
        return self.append_many_in(conn, [event])[0]

    def append_many_in(self, conn: Connection, events: Sequence[AuditEvent]) -> list[AuditRecord]:
        """Appends records, in order, inside the caller's write transaction: the head is
        locked and read once, the records inserted in one executemany, the head moved once."""
        if not events:
            return []
        head = conn.execute(
            sa.select(audit_head_table.c.seq, audit_head_table.c.hash)
            .where(audit_head_table.c.id == HEAD_ID)
            .with_for_update()
        ).first()
        if head is None:
            raise DsrError("the audit log has no head row: run `dsr audit verify`")
        key = self._secret(conn, int(head.seq) + 1)
        seq, prev_hash = int(head.seq), str(head.hash)
        rows: list[dict[str, Any]] = []
        records: list[AuditRecord] = []
        for event in events:
            details_json = canonical_json(event.details)
            details: dict[str, Any] = json.loads(details_json)  # a private copy, as stored
            at = format_time(event.at)
            seq += 1
            fields: dict[str, Any] = {
                "seq": seq,
                "at": at,
                "run_id": event.run_id,
                "action": event.action,
                "system": event.system,
                "target": event.target,
                "outcome": Outcome(event.outcome),
                "request": event.request,
                "details": details,
                "prev_hash": prev_hash,
            }
            digest = audit_hash(fields, key)
            rows.append({**fields, "details": details_json, "hash": digest})
            records.append(
                AuditRecord(
                    seq=seq,
                    at=parse_time(at),
                    run_id=event.run_id,
                    action=event.action,
                    system=event.system,
                    target=event.target,
                    outcome=Outcome(event.outcome),
                    request=event.request,
                    details=details,
                    prev_hash=prev_hash,
                    hash=digest,
                )
            )
            prev_hash = digest
        conn.execute(sa.insert(audit_table), rows)
        conn.execute(
            sa.update(audit_head_table)
            .where(audit_head_table.c.id == HEAD_ID)
            .values(seq=seq, hash=prev_hash)
        )
        if key is not None:
            _set_meta(conn, META_HEAD_MAC, head_mac(seq, prev_hash, key))
        return records

    def _secret(self, conn: Connection, next_seq: int) -> bytes | None:
        """The key the next record is hashed with: the store's audit key, once the chain is
        keyed (it becomes keyed with the first record appended while a key is given); a
        keyed chain refuses a record without its key, or with another one."""
        key_id = _meta(conn, META_KEY_ID)
        if self._key is None:
            if key_id is not None:
                raise DsrError(
                    f"the audit chain is keyed (key id {key_id}); dsr needs the audit key "
                    "(dsr.yaml audit.key) to append to it"
                )
            return None
        if key_id is None:
            _set_meta(conn, META_KEY_ID, self._key.key_id)
            _set_meta(conn, META_KEYED_FROM, str(next_seq))
        elif key_id != self._key.key_id:
            raise DsrError(
                f"the audit chain is keyed with key id {key_id}, but dsr.yaml audit.key_id is "
                f"{self._key.key_id}"
            )
        return self._key.secret

    def records(self, request: str | None = None) -> list[AuditRecord]:
        query = sa.select(audit_table).order_by(audit_table.c.seq)
        if request is not None:
            query = query.where(audit_table.c.request == request)
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [_record(row) for row in rows]

    def records_of(self, requests: Sequence[str]) -> dict[str, list[AuditRecord]]:
        """The records of each request (every one asked for, [] when it has none), oldest
        first; read `_CHUNK` requests a query."""
        found: dict[str, list[AuditRecord]] = {r: [] for r in requests}
        ids = list(found)
        with self._read() as conn:
            for i in range(0, len(ids), _CHUNK):
                query = (
                    sa.select(audit_table)
                    .where(audit_table.c.request.in_(ids[i : i + _CHUNK]))
                    .order_by(audit_table.c.seq)
                )
                for row in conn.execute(query):
                    found[row.request].append(_record(row))
        return found

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last record: what a CI log should witness after each apply."""
        with self._read() as conn:
            head = conn.execute(
                sa.select(audit_head_table.c.seq, audit_head_table.c.hash).where(
                    audit_head_table.c.id == HEAD_ID
                )
            ).first()
        return (int(head.seq), str(head.hash)) if head is not None else (0, GENESIS_HASH)

    def verify(self, witness: tuple[int, str] | None = None) -> list[str]:
        with self._snapshot() as conn:
            # One snapshot for the head, the records and the state they vouch for, so they
            # match even while another run appends; no row lock, so a read-only role (and
            # transaction) may verify.
            row = conn.execute(
                sa.select(audit_head_table.c.seq, audit_head_table.c.hash).where(
                    audit_head_table.c.id == HEAD_ID
                )
            ).first()
            keyed_from = _meta(conn, META_KEYED_FROM)
            key_id = _meta(conn, META_KEY_ID)
            head = (
                None
                if row is None
                else Head(
                    int(row.seq),
                    str(row.hash),
                    _meta(conn, META_HEAD_MAC),
                    int(keyed_from) if keyed_from is not None else None,
                )
            )
            rows = conn.execute(sa.select(audit_table).order_by(audit_table.c.seq)).all()
            receipts = {
                r.request_id: r.receipt_hash
                for r in conn.execute(
                    sa.select(tombstones_table.c.request_id, tombstones_table.c.receipt_hash)
                )
            }
            built = {
                r.request_id: r.manifest_sha256
                for r in conn.execute(
                    sa.select(exports_table.c.request_id, exports_table.c.manifest_sha256)
                )
            }
        records = [
            StoredRecord(
                int(r.seq),
                r.at,
                r.run_id,
                r.action,
                r.system,
                r.target,
                r.outcome,
                r.request,
                r.details,
                r.prev_hash,
                r.hash,
            )
            for r in rows
        ]
        key = None
        problems: list[str] = []
        if key_id is not None and self._key is not None:
            if key_id != self._key.key_id:
                problems.append(
                    f"the audit chain is keyed with key id {key_id}, but dsr.yaml audit.key_id "
                    f"is {self._key.key_id}"
                )
            else:
                key = self._key.secret
        problems += chain_problems(records, head, key)
        problems += cross_problems(records, receipts, built)
        if witness is not None:
            problems += witness_problems(records, witness)
        return problems


def _record(row: Any) -> AuditRecord:
    return AuditRecord(
        seq=int(row.seq),
        at=parse_time(row.at),
        run_id=row.run_id,
        action=row.action,
        system=row.system,
        target=row.target,
        outcome=Outcome(row.outcome),
        request=row.request,
        details=json.loads(row.details),
        prev_hash=row.prev_hash,
        hash=row.hash,
    )
