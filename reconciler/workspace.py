"""Wiring shared by the commands: the workspace, its settings' references resolved, its store,
its connectors, and the clock.

The one `env:NAME` resolver lives here: secrets never live in YAML, and every reference to the
environment (system URLs, the state store URL, the identity key) is read through it, at the
edge, so that the core never reads the environment.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from reconciler.connectors import Connector, connect
from reconciler.connectors.engine import with_shipped_driver
from reconciler.desired.files import SETTINGS_FILE, SYSTEMS_FILE
from reconciler.desired.load import load_workspace
from reconciler.desired.model import Desired, Settings, System
from reconciler.errors import DsrError
from reconciler.privacy.identity import IdentityKey, derive
from reconciler.store import StateStore, open_store

ENV_PREFIX = "env:"


def utcnow() -> datetime:
    return datetime.now(UTC)


def resolve_env(ref: str, where: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The value `ref` names: `env:NAME` -> the variable NAME (None when it is unset or
    empty); anything else is the value itself. `where` names the setting, for the error."""
    if not ref.startswith(ENV_PREFIX):
        return ref
    name = ref[len(ENV_PREFIX) :]
    if not name:
        raise DsrError(f"{where}: 'env:' must name an environment variable")
    env = os.environ if environ is None else environ
    return env.get(name) or None


def require_env(ref: str, where: str, environ: Mapping[str, str] | None = None) -> str:
    """As `resolve_env`, but an unset variable is an error that says what to export."""
    value = resolve_env(ref, where, environ)
    if value is None:
        name = ref[len(ENV_PREFIX) :]
        raise DsrError(f"environment variable {name} is not set: export {name} (named in {where})")
    return value


def identity_key(settings: Settings, environ: Mapping[str, str] | None = None) -> IdentityKey:
    """The identity key named in dsr.yaml; falls back to its development key (flagged)."""
    ref = settings.identity_key or f"{ENV_PREFIX}DSR_IDENTITY_KEY"
    secret = resolve_env(ref, f"{SETTINGS_FILE} identity.key", environ)
    previous = tuple(
        IdentityKey(
            key_id,
            _strong(require_env(old, f"{SETTINGS_FILE} identity.previous", environ), old),
            development=False,
        )
        for key_id, old in settings.identity_previous
    )
    if secret is not None:
        return IdentityKey(settings.identity_key_id, _strong(secret, ref), False, previous)
    if settings.development_key:
        return IdentityKey(settings.identity_key_id, settings.development_key.encode(), True)
    name = ref.removeprefix(ENV_PREFIX)
    raise DsrError(
        f"the identity key is not set: export {name} (named in {SETTINGS_FILE} identity.key)"
    )


def audit_key(settings: Settings, environ: Mapping[str, str] | None = None) -> IdentityKey:
    """The key of the audit chain: dsr.yaml `audit.key`, or one derived from the identity key
    (a secret kept outside the state store either way)."""
    if settings.audit_key is None:
        return derive(identity_key(settings, environ), "audit")
    secret = require_env(settings.audit_key, f"{SETTINGS_FILE} audit.key", environ)
    return IdentityKey(settings.audit_key_id, _strong(secret, settings.audit_key), False)


MIN_KEY_BYTES = 32


def _strong(secret: str, ref: str) -> bytes:
    """A key's bytes; refused when shorter than MIN_KEY_BYTES: the hashes it makes are
    committed to git for good, so a guessable key exposes every identity ever filed."""
    data = secret.encode()
    if len(data) < MIN_KEY_BYTES:
        name = ref.removeprefix(ENV_PREFIX)
        raise DsrError(
            f"the key in {name} is {len(data)} bytes; a key must be at least {MIN_KEY_BYTES} "
            "bytes (dsr keygen prints a new one)"
        )
    return data


def system_url(system: System, root: Path, environ: Mapping[str, str] | None = None) -> str:
    """The SQLAlchemy URL of a system: `env:NAME` resolved, the shipped driver filled in, and
    a relative SQLite path made relative to the workspace root. Never echoes the URL (it may
    carry a password)."""
    where = f"{SYSTEMS_FILE}: systems.{system.name}.url"
    value = require_env(system.url, where, environ)
    try:
        parsed = make_url(value)
    except (ArgumentError, ValueError) as exc:
        raise DsrError(
            f"system {system.name}: not a valid SQLAlchemy URL ({type(exc).__name__})"
        ) from None
    parsed = with_shipped_driver(parsed)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        if not path.is_absolute():
            parsed = parsed.set(database=str(root / path))
    return parsed.render_as_string(hide_password=False)


@dataclass(frozen=True, slots=True)
class Workspace:
    root: Path
    desired: Desired

    @classmethod
    def load(cls, root: Path) -> Workspace:
        return cls(root, load_workspace(root))

    def identity_key(self) -> IdentityKey:
        return identity_key(self.desired.settings)

    def store_url(self) -> str:
        settings = self.desired.settings
        if settings.state_url is not None:
            value = require_env(settings.state_url, f"{SETTINGS_FILE} state.url")
            try:
                return with_shipped_driver(make_url(value)).render_as_string(hide_password=False)
            except (ArgumentError, ValueError):
                raise DsrError(
                    f"{settings.state_url.removeprefix(ENV_PREFIX)} is not a valid SQLAlchemy "
                    f"URL ({SETTINGS_FILE} state.url)"
                ) from None
        path = Path(settings.state_path)
        if not path.is_absolute():
            path = self.root / path
        return f"sqlite:///{path}"

    @contextlib.contextmanager
    def store(self, *, readonly: bool = False) -> Iterator[StateStore]:
        """The state store; `readonly` for commands that must not write to it (plan). A
        writer needs the audit key; a reader goes without it when it is not set here (then
        `audit verify` says it cannot check a keyed chain)."""
        try:
            key: IdentityKey | None = audit_key(self.desired.settings)
        except DsrError:
            if not readonly:
                raise
            key = None
        store = open_store(
            self.store_url(),
            readonly=readonly,
            timeouts=self.desired.settings.timeouts,
            audit_key=key,
        )
        try:
            yield store
        finally:
            store.close()

    @contextlib.contextmanager
    def connectors(self) -> Iterator[dict[str, Connector]]:
        opened: dict[str, Connector] = {}
        try:
            for name, system in self.desired.systems.items():
                opened[name] = connect(name, system_url(system, self.root), system.timeouts)
            yield opened
        finally:
            for c in opened.values():
                c.close()
