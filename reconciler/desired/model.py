"""Frozen domain types of the desired state: settings, the data map, access, requests.

Pure data, built by `desired/load.py` from the workspace's YAML. Nothing here does I/O, reads
the clock or knows about SQLAlchemy or click; every later stage reads these types.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date
from enum import Enum, StrEnum
from typing import Any


class SystemRole(Enum):
    SOURCE = "source"
    PLATFORM = "platform"
    DOWNSTREAM = "downstream"


class MatchMode(Enum):
    """How a system's identity tables are matched (systems.yaml `match`): `auto` pushes the
    keyed hash down to PostgreSQL and streams elsewhere; `pushdown` asks for it (MariaDB and
    MySQL too); `stream` reads every identity value and hashes in Python."""

    AUTO = "auto"
    PUSHDOWN = "pushdown"
    STREAM = "stream"


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
class Timeouts:
    """Seconds dsr waits for a database: to connect, and for any one statement."""

    connect: int = 10
    statement: int = 600

    def overridden(self, connect: int | None, statement: int | None) -> Timeouts:
        return Timeouts(
            self.connect if connect is None else connect,
            self.statement if statement is None else statement,
        )


DEFAULT_TIMEOUTS = Timeouts()


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
    timeouts: Timeouts = DEFAULT_TIMEOUTS  # dsr.yaml's, with the system's own overrides
    match: MatchMode = MatchMode.AUTO


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
    # (key id, `env:NAME`) of keys the current one replaced: requests hashed with them match
    identity_previous: tuple[tuple[str, str], ...] = ()
    audit_key: str | None = None  # reference: `env:NAME`; None: derived from the identity key
    audit_key_id: str = "a1"
    development_key: str | None = None  # demo only: used (with a warning) when the env is unset
    deadline_days: int | None = None  # None: one calendar month (GDPR Art. 12(3))
    outbox: str = "state/outbox"
    expire_after_days: int = 30
    max_revocations: int = 25
    timeouts: Timeouts = DEFAULT_TIMEOUTS


class RequestType(StrEnum):
    ERASURE = "erasure"
    EXPORT = "export"


class SubjectKind(StrEnum):
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
    """Someone's recorded act on a request, and its day: an approval, or a delivery."""

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
    delivered: Approval | None = None  # exports: who handed the package over, and when
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


def digest_of(value: Any) -> str:
    """A stable SHA-256 of a JSON-serialisable value (sorted keys, no whitespace)."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()
