"""Frozen types of the observed state: what each system held, and what dsr's own state store
says it did (tombstones, refreshes, export packages).

Pure data, built by `observe/collect.py`; the planner diffs it against `Desired`. Key values
of matched rows stay in memory: plans, state and audit carry only counts and digests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reconciler.connectors.reflection import SchemaInfo
from reconciler.desired.model import digest_of
from reconciler.store.records import ExportRecord, Fact, RefreshRecord, Tombstone


@dataclass(frozen=True, slots=True)
class Match:
    """The rows of one table that belong to one request's subject.

    Key values stay in memory: plans, state and audit carry only counts and digests.
    `pending` is what erasure must still change (every row for delete and purge, the rows
    not yet masked for mask, none for retain). `referenced_by` counts, per database foreign
    key `child_table.column`, the rows that reference these rows.
    """

    keys: frozenset[Any] = frozenset()
    pending: frozenset[Any] = frozenset()
    referenced_by: dict[str, int] = field(default_factory=dict)

    def fingerprint(self) -> dict[str, Any]:
        return {
            "keys": digest_of(sorted(map(repr, self.keys))),
            "pending": digest_of(sorted(map(repr, self.pending))),
            "referenced_by": dict(sorted(self.referenced_by.items())),
        }


@dataclass(frozen=True, slots=True)
class ObservedSystem:
    """What one system looked like when observed. `digest` fingerprints exactly the facts
    the planner used, so a saved plan can tell whether they changed since."""

    name: str
    permissions: frozenset[tuple[str, str]] | None = None  # (user, role)
    schema: SchemaInfo | None = None  # reflected when erasures need this system
    matches: dict[tuple[str, str], Match] = field(default_factory=dict)  # (request, table)
    error: str | None = None
    # How each identity table was matched ("pushdown", or "stream (why)"). For display only:
    # not in the digest, since both ways find the same rows.
    matched_by: dict[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return digest_of(
            {
                "permissions": sorted(self.permissions or ()),
                "schema": repr(self.schema),
                "matches": {
                    f"{r}/{t}": m.fingerprint() for (r, t), m in sorted(self.matches.items())
                },
                "error": self.error,
            }
        )


@dataclass(frozen=True, slots=True)
class Observed:
    systems: dict[str, ObservedSystem]
    completed: dict[str, Tombstone] = field(default_factory=dict)
    refreshes: dict[str, RefreshRecord] = field(default_factory=dict)
    exports: dict[str, ExportRecord] = field(default_factory=dict)
    # What is wrong with a built package (missing, replaced, damaged), by request id; a
    # request whose package is intact is not here.
    package_problems: dict[str, str] = field(default_factory=dict)
    # What dsr saw or did for each open request in earlier runs (kept for its receipt).
    facts: dict[str, tuple[Fact, ...]] = field(default_factory=dict)
    # User erasures whose subject is still a user in policies/access.yaml (found by keyed
    # hash, so the planner never needs the key): the two requests disagree.
    users_in_access: frozenset[str] = frozenset()

    def digests(self) -> dict[str, str]:
        out = {name: obs.digest for name, obs in sorted(self.systems.items())}
        if self.completed:
            out["dsr:completed"] = digest_of(
                sorted((c.request_id, c.completed_at.isoformat()) for c in self.completed.values())
            )
        if self.exports:
            out["dsr:exports"] = digest_of(
                sorted(
                    (
                        e.request_id,
                        e.manifest_sha256,
                        str(e.expired_at),
                        self.package_problems.get(e.request_id, ""),
                    )
                    for e in self.exports.values()
                )
            )
        return out
