"""Frozen domain types: the desired state (from YAML) and the observed state (from systems).

Pure data. Nothing here does I/O, reads the clock or knows about SQLAlchemy or click. The
loader builds `Desired`; connectors build `Observed`; the planner diffs the two.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


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
    identity_key: str | None = None  # reference: `env:NAME`
    identity_key_id: str = "k1"
    development_key: str | None = None  # demo only: used (with a warning) when the env is unset
    deadline_days: int | None = None  # None: one calendar month (GDPR Art. 12(3))
    outbox: str = "state/outbox"
    expire_after_days: int = 30
    max_revocations: int = 25


@dataclass(frozen=True, slots=True)
class Desired:
    settings: Settings
    systems: dict[str, System]
    access: Access | None
    digest: str  # over the canonical content of every policy file

    def permissions_system(self) -> System | None:
        return next((s for s in self.systems.values() if s.permissions), None)


@dataclass(frozen=True, slots=True)
class ObservedSystem:
    """What one system looked like when observed. `digest` fingerprints exactly the facts
    the planner used, so a saved plan can tell whether they changed since."""

    name: str
    permissions: frozenset[tuple[str, str]] | None = None  # (user, role)
    error: str | None = None

    @property
    def digest(self) -> str:
        return digest_of({"permissions": sorted(self.permissions or ()), "error": self.error})


@dataclass(frozen=True, slots=True)
class Observed:
    systems: dict[str, ObservedSystem]

    def digests(self) -> dict[str, str]:
        return {name: obs.digest for name, obs in sorted(self.systems.items())}


def digest_of(value: Any) -> str:
    """A stable SHA-256 of a JSON-serialisable value (sorted keys, no whitespace)."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(blob.encode()).hexdigest()
