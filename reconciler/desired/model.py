"""Frozen domain types: the desired state (from YAML) and the observed state (from systems).

Pure data. Nothing here does I/O, reads the clock or knows about SQLAlchemy or click. The
loader builds `Desired`; connectors build `Observed`; the planner diffs the two.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # a pure type; imported lazily to keep model free of import cycles
    from reconciler.connectors.reflection import SchemaInfo


class Sensitive(str):
    """A string holding personal data or a secret; it masks itself when printed or logged.

    The raw value is still available with `.reveal()` (and `str` operations) for the code
    that must use it: bound SQL parameters, the HMAC, an export file.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "Sensitive('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def reveal(self) -> str:
        return str.__str__(self)


class SystemRole(Enum):
    SOURCE = "source"
    PLATFORM = "platform"
    DOWNSTREAM = "downstream"


class TableKind(Enum):
    DATA = "data"
    SYSTEM_LOG = "system_log"
    AUDIT_LOG = "audit_log"


class ErasureStrategy(Enum):
    DELETE = "delete"
    MASK = "mask"
    RETAIN = "retain"


class MaskStrategy(Enum):
    NULL = "null"
    REDACT = "redact"
    HASH = "hash"


@dataclass(frozen=True, slots=True)
class PermissionsMap:
    """Where a platform keeps who holds which role: one row per (user, role)."""

    table: str
    user: str
    role: str


@dataclass(frozen=True, slots=True)
class Refresh:
    """How a system is refreshed after its inputs change: SQL on the system, or a command."""

    sql: tuple[str, ...] = ()
    command: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SubjectLink:
    """A table that reaches the subject through a foreign key: column -> table.column."""

    column: str
    table: str
    references: str


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    primary_key: str | None = None
    identities: dict[str, str] = field(default_factory=dict)  # identity type -> column
    subject: SubjectLink | None = None
    erasure: ErasureStrategy | None = None
    mask: dict[str, MaskStrategy] = field(default_factory=dict)  # column -> strategy
    reason: str | None = None
    kind: TableKind = TableKind.DATA


@dataclass(frozen=True, slots=True)
class System:
    name: str
    role: SystemRole
    url: str  # a SQLAlchemy URL or `env:NAME`; resolved only by the connector factory
    erase_at_source: bool = True
    ingests: tuple[str, ...] = ()
    refresh: Refresh | None = None
    tables: dict[str, Table] = field(default_factory=dict)
    permissions: PermissionsMap | None = None
    # Data the platform creates about its own users, matched by the user's e-mail in the
    # table's identity column (`identities == {"email": <user column>}`).
    user_data: dict[str, Table] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DesiredUser:
    name: str
    roles: frozenset[str]
    protected: bool = False


@dataclass(frozen=True, slots=True)
class Access:
    """Desired permissions on the platform that declares a `permissions` mapping."""

    roles: tuple[str, ...]
    users: dict[str, DesiredUser]
    admin_role: str = "admin"


@dataclass(frozen=True, slots=True)
class Settings:
    workspace: str
    state_path: str = "state/dsr.db"
    state_url: str | None = None  # `env:NAME`: a shared (PostgreSQL) state store
    identity_key: str | None = None  # reference: `env:NAME`
    identity_key_id: str = "k1"
    development_key: str | None = None  # demo only: used (with a warning) when the env is unset
    deadline_days: int | None = None  # None: one calendar month (GDPR Art. 12(3))
    outbox: str = "state/outbox"
    expire_after_days: int = 30
    max_revocations: int = 25


class RequestType(Enum):
    ERASURE = "erasure"
    EXPORT = "export"


class SubjectKind(Enum):
    CUSTOMER = "customer"
    USER = "user"  # a person who holds permissions in the platform


@dataclass(frozen=True, slots=True)
class IdentityHash:
    type: str  # email | phone | customer_id
    hash: str  # hmac-sha256:<key id>:<hex>; never the raw value

    @property
    def key_id(self) -> str:
        return self.hash.split(":")[1]


@dataclass(frozen=True, slots=True)
class Extension:
    """Art. 12(3): the deadline may be extended by up to two further months, with notice."""

    due: date
    reason: str
    subject_told: date


@dataclass(frozen=True, slots=True)
class Approval:
    by: str
    at: date


@dataclass(frozen=True, slots=True)
class Request:
    id: str
    type: RequestType
    subject_kind: SubjectKind
    identities: tuple[IdentityHash, ...]
    received: date
    requested_by: str
    due: date  # computed by the loader from `received`, the deadline rule and any extension
    systems: tuple[str, ...] | None = None  # None: all systems
    extension: Extension | None = None
    legal_hold: str | None = None
    cancelled: str | None = None
    approvals: tuple[Approval, ...] = ()
    file: str = ""  # workspace-relative path of the request file


@dataclass(frozen=True, slots=True)
class Desired:
    settings: Settings
    systems: dict[str, System]
    access: Access | None
    digest: str  # over the canonical content of every policy file, requests included
    requests: dict[str, Request] = field(default_factory=dict)

    def permissions_system(self) -> System | None:
        return next((s for s in self.systems.values() if s.permissions), None)


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
class Completed:
    """A completed erasure (a tombstone in the state store): it stays desired."""

    request_id: str
    subject_kind: str
    identities: tuple[tuple[str, str], ...]  # (type, keyed hash)
    systems: tuple[str, ...] | None
    completed_at: datetime
    receipt_hash: str = ""  # the audit record holding its receipt


@dataclass(frozen=True, slots=True)
class RefreshStatus:
    system: str
    at: datetime
    status: str  # succeeded | failed
    message: str | None = None


@dataclass(frozen=True, slots=True)
class ExportStatus:
    """An export package dsr built (from the state store): built once, expired later."""

    request_id: str
    path: str  # workspace-relative
    manifest_sha256: str
    rows: int
    built_at: datetime
    expires_at: datetime
    expired_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Observed:
    systems: dict[str, ObservedSystem]
    completed: dict[str, Completed] = field(default_factory=dict)
    refreshes: dict[str, RefreshStatus] = field(default_factory=dict)
    exports: dict[str, ExportStatus] = field(default_factory=dict)
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
                    (e.request_id, e.manifest_sha256, str(e.expired_at))
                    for e in self.exports.values()
                )
            )
        return out


def digest_of(value: Any) -> str:
    """A stable SHA-256 of a JSON-serialisable value (sorted keys, no whitespace)."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()
