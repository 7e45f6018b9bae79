"""Where export packages wait for delivery: a folder of the workspace, or the state store.

A laptop or the demo keeps packages in `exports.outbox` (a git-ignored folder). A CI runner's
disk is gone after its job, so with a shared state store (`state.url`) packages are kept in
the store until they expire, and `dsr outbox get` writes one out for delivery.

Both outboxes publish a package once and never adopt a file the build did not write: before
publishing, the digest of the new package's manifest is recorded in the state store (an
intent); a package found at the final place is taken as built only if it is that one (a build
killed after publishing). Anything else there is refused, naming the request, and the other
changes of the run go on. `check` says what is wrong with a package that was built: missing,
replaced (its manifest is not the one recorded) or damaged (a file does not match it).
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from reconciler.desired.checks import resolve_outbox
from reconciler.desired.files import SETTINGS_FILE
from reconciler.desired.model import Settings
from reconciler.errors import DsrError
from reconciler.outbox.package import (
    MANIFEST,
    ExportError,
    TableRows,
    expire_package,
    package_bytes,
    package_info,
    package_path,
    publish_package,
    read_manifest,
    verify_package,
)
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

    def read(self, request_id: str) -> bytes | None: ...

    def publish(self, request_id: str, data: bytes) -> bool:
        """Put the package in place, never replacing one; False if one is there already."""
        ...

    def expire(self, request_id: str) -> bool:
        """Delete the package; True if there was one."""
        ...


def manifest_digest(data: bytes) -> str | None:
    """The SHA-256 of a package's manifest, or None when it is not a readable package."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return hashlib.sha256(archive.read(MANIFEST)).hexdigest()
    except (KeyError, zipfile.BadZipFile, OSError, ValueError):
        return None


def build(
    outbox: Outbox,
    store: StateStore,
    request_id: str,
    tables: Sequence[TableRows],
    *,
    generated_at: datetime,
    extra: Mapping[str, Any],
    clock: Callable[[], datetime],
) -> Built:
    """Builds the package once. A package already in place is taken as built only if its
    manifest is the one this build recorded it would publish (a run killed after publishing);
    otherwise `ExportError`: dsr never adopts a file it did not write."""
    location = outbox.location(request_id)
    existing = outbox.read(request_id)
    if existing is not None:
        if manifest_digest(existing) != store.export_intent(request_id):
            raise ExportError(
                f"{request_id}: a file dsr did not write is at {location}; it was not taken "
                "as the package (move it away, then run dsr apply again)"
            )
        return _built(existing, location)
    data = package_bytes(request_id, tables, generated_at=generated_at, extra=extra)
    digest = manifest_digest(data)
    assert digest is not None
    store.record_export_intent(request_id, digest, now=clock())
    if not outbox.publish(request_id, data):
        return build(
            outbox, store, request_id, tables, generated_at=generated_at, extra=extra, clock=clock
        )
    return _built(data, location)


def check(outbox: Outbox, request_id: str, manifest_sha256: str) -> str | None:
    """What is wrong with a built package, in words (never a value), or None if it is intact."""
    location = outbox.location(request_id)
    try:
        data = outbox.read(request_id)
    except (OSError, DsrError) as exc:
        return f"cannot be read in {location}: {exc}"
    if data is None:
        return f"is missing from {location}"
    if manifest_digest(data) != manifest_sha256:
        return f"in {location} is not the one dsr built (its manifest does not match the record)"
    problems = verify_package(data)
    if problems:
        return f"in {location} is damaged: {problems[0]}"
    return None


def _built(data: bytes, location: str) -> Built:
    info = package_info(data)
    made = datetime.fromisoformat(read_manifest(data)["generated_at"])
    return Built(location, info.manifest_sha256, info.files, info.rows, made)


class FolderOutbox:
    """`<outbox>/<request id>.zip` in the workspace, a folder git ignores."""

    def __init__(self, root: Path, outbox: str) -> None:
        self._root = root
        self._folder = resolve_outbox(root, outbox)
        problem = placement_problem(root, outbox, self._folder)
        if problem:
            raise DsrError(f"{SETTINGS_FILE}: exports.outbox: {problem}")

    def location(self, request_id: str) -> str:
        path = package_path(self._folder, request_id)
        inside = path.is_relative_to(self._root)
        return path.relative_to(self._root).as_posix() if inside else str(path)

    def read(self, request_id: str) -> bytes | None:
        path = package_path(self._folder, request_id)
        return path.read_bytes() if path.is_file() else None

    def publish(self, request_id: str, data: bytes) -> bool:
        return publish_package(self._folder, request_id, data)

    def expire(self, request_id: str) -> bool:
        return expire_package(self._folder, request_id)


def placement_problem(root: Path, outbox: str, folder: Path) -> str | None:
    """Why packages must not be written to `folder`: a relative outbox that resolves outside
    the workspace (a symbolic link), or a folder git would track (packages would be
    committed). An absolute outbox outside the workspace is a deliberate choice."""
    if not Path(outbox).is_absolute():
        real = folder.resolve()
        if not real.is_relative_to(root.resolve()):
            return (
                f"'{outbox}' resolves to {real}, outside the workspace (a symbolic link?): "
                "export packages hold personal data; give an absolute path if that is intended"
            )
    if _git_tracks(root, folder / "package.zip"):
        return (
            f"git would track '{outbox}': export packages hold personal data and must never "
            "be committed; add it to .gitignore"
        )
    return None


def _git_tracks(root: Path, path: Path) -> bool:
    """True when `path` is in a git work tree and not ignored; False outside git or when git
    is not installed."""
    try:
        inside = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--is-inside-work-tree"],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if inside.returncode != 0 or inside.stdout.strip() != "true":
            return False
        ignored = subprocess.run(
            ["git", "-C", str(root), "check-ignore", "-q", "--no-index", str(path)],
            capture_output=True,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return ignored.returncode == 1  # 0: ignored; 1: not ignored; 128: an error


class StoreOutbox:
    """Packages kept in the shared state store, beside the records that say they exist."""

    def __init__(self, store: StateStore, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock

    def location(self, request_id: str) -> str:
        return STORE_LOCATION

    def read(self, request_id: str) -> bytes | None:
        return self._store.package(request_id)

    def publish(self, request_id: str, data: bytes) -> bool:
        return self._store.put_package(request_id, data, now=self._clock())

    def expire(self, request_id: str) -> bool:
        return self._store.delete_package(request_id)


def outbox_for(
    settings: Settings, root: Path, store: StateStore, clock: Callable[[], datetime]
) -> Outbox:
    """The state store when it is shared (`state.url`), else the workspace's folder."""
    if settings.state_url is not None:
        return StoreOutbox(store, clock)
    return FolderOutbox(root, settings.outbox)
