"""Where export packages wait for delivery: a folder of the workspace, or the state store.

A laptop or the demo keeps packages in `exports.outbox` (a git-ignored folder). A CI runner's
disk is gone after its job, so with a shared state store (`state.url`) packages are kept in
the store until they expire, and `dsr outbox get` writes one out for delivery. Both outboxes
publish a package once and never replace it; `package.py` makes the zip.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from reconciler.apply.package import (
    TableRows,
    build_package,
    expire_package,
    package_bytes,
    package_info,
    package_path,
    read_manifest,
)
from reconciler.desired.checks import resolve_outbox
from reconciler.desired.model import Settings
from reconciler.store import StateStore

STORE_LOCATION = "state store"


@dataclass(frozen=True, slots=True)
class Built:
    """A package in an outbox: where, its manifest's digest, its files and rows, and when it
    was made (a package a killed run published is finished, not rebuilt: its time stands)."""

    location: str
    manifest_sha256: str
    files: int
    rows: int
    generated_at: datetime


class Outbox(Protocol):
    def location(self, request_id: str) -> str: ...

    def build(
        self,
        request_id: str,
        tables: Sequence[TableRows],
        *,
        generated_at: datetime,
        extra: Mapping[str, Any],
    ) -> Built:
        """Publish the package once; if the request has one already, return it unchanged."""
        ...

    def read(self, request_id: str) -> bytes | None: ...

    def expire(self, request_id: str) -> bool:
        """Delete the package; True if there was one."""
        ...


def _built(data: Path | bytes, location: str) -> Built:
    info = package_info(data)
    made = datetime.fromisoformat(read_manifest(data)["generated_at"])
    return Built(location, info.manifest_sha256, info.files, info.rows, made)


class FolderOutbox:
    """`<outbox>/<request id>.zip` in the workspace."""

    def __init__(self, root: Path, outbox: str) -> None:
        self._root = root
        self._folder = resolve_outbox(root, outbox)

    def location(self, request_id: str) -> str:
        path = package_path(self._folder, request_id)
        return (
            path.relative_to(self._root).as_posix()
            if path.is_relative_to(self._root)
            else str(path)
        )

    def build(
        self,
        request_id: str,
        tables: Sequence[TableRows],
        *,
        generated_at: datetime,
        extra: Mapping[str, Any],
    ) -> Built:
        info = build_package(
            self._folder, request_id, tables, generated_at=generated_at, extra=extra
        )
        return _built(info.path, self.location(request_id))

    def read(self, request_id: str) -> bytes | None:
        path = package_path(self._folder, request_id)
        return path.read_bytes() if path.is_file() else None

    def expire(self, request_id: str) -> bool:
        return expire_package(self._folder, request_id)


class StoreOutbox:
    """Packages kept in the shared state store, beside the records that say they exist."""

    def __init__(self, store: StateStore, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock

    def location(self, request_id: str) -> str:
        return STORE_LOCATION

    def build(
        self,
        request_id: str,
        tables: Sequence[TableRows],
        *,
        generated_at: datetime,
        extra: Mapping[str, Any],
    ) -> Built:
        data = package_bytes(request_id, tables, generated_at=generated_at, extra=extra)
        if not self._store.put_package(request_id, data, now=self._clock()):
            data = self._store.package(request_id) or data  # published by a run killed after
        return _built(data, STORE_LOCATION)

    def read(self, request_id: str) -> bytes | None:
        return self._store.package(request_id)

    def expire(self, request_id: str) -> bool:
        return self._store.delete_package(request_id)


def outbox_for(
    settings: Settings, root: Path, store: StateStore, clock: Callable[[], datetime]
) -> Outbox:
    """The state store when it is shared (`state.url`), else the workspace's folder."""
    if settings.state_url is not None:
        return StoreOutbox(store, clock)
    return FolderOutbox(root, settings.outbox)
