"""The audit chain, as pure functions: how a record is hashed, and what is wrong with a chain.

Each record's `hash` covers every other field and its `prev_hash`, the previous record's hash;
a head row keeps the last sequence number and hash, so that records removed from the end are
seen too. With an audit key (a secret that lives outside the state store), the hash is an
HMAC and the head carries a MAC of its own: someone who can write to the store but does not
hold the key can neither recompute the chain after editing or deleting a record, nor move the
head back after cutting off its tail. (Putting back a head they saved earlier stays possible:
`dsr audit verify --head SEQ:HASH` checks against a head that a CI log witnessed.)

Records appended before the store had a key stay hashed without one (`keyed_from` says where
keying began). The store appends and reads; this module only computes and checks. No I/O.
"""

from __future__ import annotations

import hashlib
import hmac
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


def audit_hash(fields: Mapping[str, Any], key: bytes | None = None) -> str:
    """The hex digest of the canonical JSON of a stored record's fields, `hash` excluded:
    HMAC-SHA256 with the audit key, plain SHA-256 without one."""
    blob = canonical_json(dict(fields)).encode("utf-8")
    if key is None:
        return hashlib.sha256(blob).hexdigest()
    return hmac.new(key, blob, hashlib.sha256).hexdigest()


def head_mac(seq: int, record_hash: str, key: bytes) -> str:
    """The MAC that pins the head to (seq, hash): without the key it cannot be moved."""
    return hmac.new(key, f"head:{seq}:{record_hash}".encode(), hashlib.sha256).hexdigest()


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


@dataclass(frozen=True, slots=True)
class Head:
    """The head row (last seq and hash) and, for a keyed chain, its MAC and where keying
    began."""

    seq: int
    hash: str
    mac: str | None = None
    keyed_from: int | None = None


def chain_problems(
    records: Iterable[StoredRecord], head: Head | None, key: bytes | None = None
) -> list[str]:
    """Every way the records (in `seq` order) and the head fail to form one intact chain from
    the genesis hash, one line each; [] when it is intact. `key` is the audit key (needed to
    check a keyed chain; without it a keyed chain is reported as unverifiable)."""
    problems: list[str] = []
    keyed_from = head.keyed_from if head is not None else None
    if keyed_from is not None and key is None:
        problems.append(
            f"the audit chain is keyed from record {keyed_from}; verifying it needs the audit "
            "key (dsr.yaml audit.key)"
        )
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
            keyed = keyed_from is not None and seq >= keyed_from
            if not keyed or key is not None:
                digest = audit_hash(hashed_fields(record, details), key if keyed else None)
                if digest != record.hash:
                    problems.append(f"audit record {seq}: content does not match its hash")
        expected_seq, prev_hash = seq + 1, record.hash
    last_seq = expected_seq - 1
    if head is None:
        problems.append("audit head is missing")
    elif head.seq > last_seq:
        problems.append(
            f"audit head is at record {head.seq} but the last record is {last_seq}: "
            "records were removed from the end"
        )
    elif head.seq < last_seq:
        problems.append(
            f"audit head is at record {head.seq} but the last record is {last_seq}: "
            "the head was edited or records were added around it"
        )
    elif head.hash != prev_hash:
        problems.append(f"audit head hash does not match record {last_seq}")
    elif (
        keyed_from is not None
        and key is not None
        and last_seq >= keyed_from
        and head.mac != head_mac(head.seq, head.hash, key)
    ):
        problems.append(
            f"audit head at record {head.seq} is not the one dsr wrote (its MAC does not "
            "match): records were removed from the end and the head moved back"
        )
    return problems


def witness_problems(records: Iterable[StoredRecord], witness: tuple[int, str]) -> list[str]:
    """Against a head a CI log or a PR comment witnessed (seq, hash): that record must still
    be in the chain, with that hash."""
    seq, digest = witness
    found = next((r for r in records if r.seq == seq), None)
    if found is None:
        return [f"the witnessed head, record {seq}, is not in the audit log: it was cut off"]
    if found.hash != digest:
        return [f"audit record {seq} does not have the witnessed hash {digest[:12]}…"]
    return []


def cross_problems(
    records: Iterable[StoredRecord], receipts: Mapping[str, str], built: Mapping[str, str]
) -> list[str]:
    """The audit log and the state it vouches for, checked both ways: each tombstone points at
    its request's latest receipt and each receipt has its tombstone; each export record is the
    latest package an audit record says was built, and each build has its record. `receipts`:
    request -> the tombstone's receipt hash; `built`: request -> the export's manifest digest.
    (An emptied or truncated log leaves tombstones pointing at receipts that are gone.)"""
    listed = list(records)
    by_hash = {r.hash: r for r in listed}
    last_receipt: dict[str, StoredRecord] = {}
    last_build: dict[str, tuple[StoredRecord, str | None]] = {}
    for r in listed:
        if r.outcome != "succeeded" or r.request is None:
            continue
        if r.action == "complete":
            last_receipt[r.request] = r
        elif r.action == "build_export":
            try:
                digest = json.loads(r.details).get("manifest_sha256")
            except (ValueError, AttributeError):
                digest = None
            last_build[r.request] = (r, digest)
    problems: list[str] = []
    for rid, receipt in sorted(receipts.items()):
        found = by_hash.get(receipt)
        if found is None or found.action != "complete" or found.request != rid:
            problems.append(
                f"the tombstone of {rid} points at a receipt that is not in the audit log"
            )
        elif last_receipt.get(rid) is not found:
            newer = last_receipt[rid].seq
            problems.append(
                f"the tombstone of {rid} points at an older receipt than record {newer}"
            )
    for rid, r in sorted(last_receipt.items()):
        if rid not in receipts:
            problems.append(
                f"audit record {r.seq} is the receipt of {rid}, but the state store has no "
                "tombstone for it"
            )
    for rid, digest in sorted(built.items()):
        if rid not in last_build:
            problems.append(f"the export package of {rid} has no build record in the audit log")
        elif last_build[rid][1] != digest:
            problems.append(
                f"the export package of {rid} is not the one audit record "
                f"{last_build[rid][0].seq} says was built"
            )
    for rid, (r, _digest) in sorted(last_build.items()):
        if rid not in built:
            problems.append(
                f"audit record {r.seq} built the package of {rid}, but the state store has no "
                "record of it"
            )
    return problems
