"""The audit chain, as pure functions: how a record is hashed, and what is wrong with a chain.

Each record's `hash` covers every other field and its `prev_hash`, the previous record's hash;
a head row keeps the last sequence number and hash, so that records removed from the end are
seen too. The store appends and reads; this module only computes and checks. No I/O here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.store.records import GENESIS_HASH
from reconciler.store.tables import canonical_json


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """An audit record as its columns hold it (`at` and `details` as stored text)."""

    seq: int
    at: str
    run_id: str
    action: str
    system: str
    target: str
    outcome: str
    request: str | None
    details: str
    prev_hash: str
    hash: str


def audit_hash(fields: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of a stored record's fields, `hash` excluded."""
    return hashlib.sha256(canonical_json(dict(fields)).encode("utf-8")).hexdigest()


def hashed_fields(record: StoredRecord, details: Any) -> dict[str, Any]:
    """The fields a record's hash covers, `details` parsed back from its JSON."""
    return {
        "seq": record.seq,
        "at": record.at,
        "run_id": record.run_id,
        "action": record.action,
        "system": record.system,
        "target": record.target,
        "outcome": record.outcome,
        "request": record.request,
        "details": details,
        "prev_hash": record.prev_hash,
    }


def chain_problems(records: Iterable[StoredRecord], head: tuple[int, str] | None) -> list[str]:
    """Every way the records (in `seq` order) and the head (seq, hash) fail to form one intact
    chain from the genesis hash, one line each; [] when it is intact."""
    problems: list[str] = []
    expected_seq, prev_hash = 1, GENESIS_HASH
    for record in records:
        seq = record.seq
        if seq != expected_seq:
            missing = (
                f"record {expected_seq} is"
                if seq == expected_seq + 1
                else f"records {expected_seq}-{seq - 1} are"
            )
            problems.append(f"audit record {seq}: {missing} missing before it")
        elif record.prev_hash != prev_hash:
            problems.append(
                f"audit record {seq}: prev_hash does not match the hash of record {seq - 1}"
            )
        try:
            details = json.loads(record.details)
        except ValueError:
            problems.append(f"audit record {seq}: details are not valid JSON")
        else:
            if audit_hash(hashed_fields(record, details)) != record.hash:
                problems.append(f"audit record {seq}: content does not match its hash")
        expected_seq, prev_hash = seq + 1, record.hash
    last_seq = expected_seq - 1
    if head is None:
        problems.append("audit head is missing")
    elif head[0] > last_seq:
        problems.append(
            f"audit head is at record {head[0]} but the last record is {last_seq}: "
            "records were removed from the end"
        )
    elif head[0] < last_seq:
        problems.append(
            f"audit head is at record {head[0]} but the last record is {last_seq}: "
            "the head was edited or records were added around it"
        )
    elif head[1] != prev_hash:
        problems.append(f"audit head hash does not match record {last_seq}")
    return problems
