"""Wiring shared by the commands: the workspace, its store, its connectors, the clock.

The edges live here so that each command module stays a few lines of parse, wire, call.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from reconciler.connectors import Connector, connect
from reconciler.connectors.sql import with_shipped_driver
from reconciler.desired.load import load_workspace
from reconciler.desired.model import Completed, Desired, ExportStatus, Observed, RefreshStatus
from reconciler.errors import DsrError
from reconciler.observe.collect import observe
from reconciler.privacy.identity import IdentityKey
from reconciler.store import StateStore, open_store


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Workspace:
    root: Path
    desired: Desired

    @classmethod
    def load(cls, root: Path) -> Workspace:
        return cls(root, load_workspace(root))

    def store_url(self) -> str:
        ref = self.desired.settings.state_url
        if ref is not None:
            value = os.environ.get(ref[4:])
            if not value:
                raise DsrError(
                    f"the state store URL is not set: export {ref[4:]} (dsr.yaml state.url)"
                )
            try:
                return with_shipped_driver(make_url(value)).render_as_string(hide_password=False)
            except (ArgumentError, ValueError):
                raise DsrError(f"{ref[4:]} is not a valid SQLAlchemy URL") from None
        path = Path(self.desired.settings.state_path)
        if not path.is_absolute():
            path = self.root / path
        return f"sqlite:///{path}"

    @contextlib.contextmanager
    def store(self) -> Iterator[StateStore]:
        store = open_store(self.store_url())
        try:
            yield store
        finally:
            store.close()

    @contextlib.contextmanager
    def connectors(self) -> Iterator[dict[str, Connector]]:
        opened = {name: connect(s, self.root) for name, s in self.desired.systems.items()}
        try:
            yield opened
        finally:
            for c in opened.values():
                c.close()


def observe_all(
    desired: Desired, connectors: dict[str, Connector], store: StateStore, key: IdentityKey
) -> Observed:
    """Observes every system (and dsr's own record of completed erasures and refreshes),
    and records each system's observation in the store."""
    completed = {
        t.request_id: Completed(
            t.request_id, t.subject_kind, t.identities, t.systems, t.completed_at, t.receipt_hash
        )
        for t in store.tombstones().values()
    }
    refreshes = {
        r.system: RefreshStatus(r.system, r.at, r.status, r.message)
        for r in store.last_refreshes().values()
    }
    exports = {
        e.request_id: ExportStatus(
            e.request_id, e.path, e.manifest_sha256, e.rows, e.built_at, e.expires_at, e.expired_at
        )
        for e in store.exports().values()
    }
    observed = observe(
        desired, connectors, key, completed=completed, refreshes=refreshes, exports=exports
    )
    now = utcnow()
    for name, obs in observed.systems.items():
        store.record_observation(name, now=now, digest=obs.digest, error=obs.error)
    return observed


def observe_timed(
    desired: Desired, connectors: dict[str, Connector], store: StateStore, key: IdentityKey
) -> tuple[Observed, float]:
    started = time.monotonic()
    observed = observe_all(desired, connectors, store, key)
    return observed, time.monotonic() - started
