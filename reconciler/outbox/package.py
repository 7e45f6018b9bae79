"""Export packages (GDPR Art. 15, Art. 20): build one zip per request in the outbox, exactly once;
read, verify and expire it.

The executor calls this once an export's approval counts, with the subject's rows as they are
now; nothing here plans, observes or decides whether a package is due. A package is
`<outbox>/<request id>.zip`, holding `manifest.json` (format version, request id, generated
time, per table its columns, row count and the SHA-256 of each of its files), each table as
`<system>/<table>.json` and `<system>/<table>.csv`, and a short `README.txt`.

Exactly once and crash-safe: the zip is written to a hidden `.<id>.zip.partial` beside it,
fsynced, then published under its final name in one atomic step that never replaces a
package; a package that exists is never rebuilt, and a partial one left by a killed run is
discarded and built again. Deterministic: the same inputs give a byte-identical zip (entries
sorted, timestamps from `generated_at`, fixed attributes), so a rebuilt package has the same
digest.

Row values are personal data. They are written only into the zip in the outbox, whose files
and folder are created readable by their owner only; this module must never print, log or
put them in an exception message. What leaves it is paths, counts and digests.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import io
import json
import math
import os
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import IO, Any
from uuid import UUID

from reconciler.desired.files import REQUEST_ID
from reconciler.errors import DsrError
from reconciler.faults import kill_point

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
README = "README.txt"
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold
_FILE_MODE = 0o600  # the subject's data: readable by the outbox's owner only


class ExportError(DsrError):
    """An export package cannot be placed, written or read."""


@dataclass(frozen=True, slots=True)
class TableRows:
    """The subject's rows of one table, as they are now (retained and masked rows included)."""

    system: str
    table: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...] = field(repr=False)  # personal data: never in a repr


@dataclass(frozen=True, slots=True)
class PackageInfo:
    """A package in the outbox. `manifest_sha256`: lower-case hex SHA-256 of manifest.json's
    bytes, which the audit log records (the manifest holds every other file's digest).
    `files`: the entries in the zip, manifest and README included. `rows`: the data rows of
    all tables (each row once, though it is in both the JSON and the CSV file)."""

    path: Path
    manifest_sha256: str
    files: int
    rows: int


def package_path(outbox: Path, request_id: str) -> Path:
    """`<outbox>/<request_id>.zip`; `ExportError` for an id that is not a request id (and so
    might name a path elsewhere: `/`, `..`)."""
    if not REQUEST_ID.fullmatch(request_id):
        raise ExportError(
            f"'{request_id}' is not a request id (upper-case letters and digits in parts joined "
            "by '-'); export packages are named by request id"
        )
    return outbox / f"{request_id}.zip"


def _partial_path(outbox: Path, request_id: str) -> Path:
    # Hidden, and not ending in .zip: nobody takes it for a package.
    return package_path(outbox, request_id).with_name(f".{request_id}.zip.partial")


# -- building -----------------------------------------------------------------------------------


def build_package(
    outbox: Path,
    request_id: str,
    tables: Sequence[TableRows],
    *,
    generated_at: datetime,
    extra: Mapping[str, Any] | None = None,
) -> PackageInfo:
    """Build `<outbox>/<request_id>.zip` once; if it exists, return its info and change nothing.

    `generated_at` must be timezone-aware. `extra` is recorded in the manifest under "extra"
    (JSON-safe; never personal data); `expires_on` or `expires_at` in it is also shown in the
    README. A `.partial` left by a killed build is discarded and the package built again.
    (The executor goes through `boxes.build`, which also refuses a file it did not write.)
    """
    final = package_path(outbox, request_id)
    if final.exists():
        # A run killed between publishing and tidying up may have left the partial behind.
        with contextlib.suppress(OSError):
            _partial_path(outbox, request_id).unlink(missing_ok=True)
        return package_info(final)
    # Everything is built in memory first, so bad input leaves nothing in the outbox. A
    # subject's rows are small; a package is read back whole by its recipient anyway.
    data = package_bytes(request_id, tables, generated_at=generated_at, extra=extra)
    publish_package(outbox, request_id, data)
    return package_info(final)


def publish_package(outbox: Path, request_id: str, data: bytes) -> bool:
    """Write `data` as `<outbox>/<request_id>.zip`: to a hidden partial first, fsynced, then
    given its name in one atomic step that never replaces a file. False, writing nothing, if
    a package is there already (another run finished it meanwhile)."""
    final = package_path(outbox, request_id)
    partial = _partial_path(outbox, request_id)
    try:
        outbox.mkdir(parents=True, exist_ok=True, mode=0o700)
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        kill_point("package_write")
        published = _publish(partial, final)
    except OSError as exc:
        raise ExportError(f"{final}: cannot write the export package: {exc.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
    _fsync_directory(outbox)
    if published:
        kill_point("package_rename")
    return published


def package_bytes(
    request_id: str,
    tables: Sequence[TableRows],
    *,
    generated_at: datetime,
    extra: Mapping[str, Any] | None = None,
) -> bytes:
    """The package for `request_id` as bytes, for an outbox that is not a folder (the state
    store): the same deterministic zip `build_package` writes."""
    if not REQUEST_ID.fullmatch(request_id):
        package_path(Path("."), request_id)  # raises, naming the bad id
    return _zip_bytes(_entries(request_id, tables, generated_at, extra), generated_at)


def _zip_bytes(entries: Mapping[str, bytes], generated_at: datetime) -> bytes:
    buffer = io.BytesIO()
    _write_zip(buffer, entries, _zip_time(generated_at))
    return buffer.getvalue()


def _publish(partial: Path, final: Path) -> bool:
    """Give the finished partial its final name, atomically and never replacing a package.
    False if a package appeared meanwhile."""
    try:
        os.link(partial, final)
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: rename, after a last look
        if final.exists():
            return False
        os.replace(partial, final)
    return True


def _entries(
    request_id: str,
    tables: Sequence[TableRows],
    generated_at: datetime,
    extra: Mapping[str, Any] | None,
) -> dict[str, bytes]:
    """Every file of the package, name -> bytes."""
    if generated_at.tzinfo is None or generated_at.utcoffset() is None:
        raise ValueError("generated_at must be timezone-aware")
    generated = generated_at.astimezone(UTC)
    entries: dict[str, bytes] = {}
    listed: list[dict[str, Any]] = []
    for t in sorted(tables, key=lambda t: (t.system, t.table)):
        _check_table(t)
        base = f"{t.system}/{t.table}"
        if f"{base}.json" in entries:
            raise ValueError(f"table {base} is given more than once")
        files = {f"{base}.json": _table_json(t), f"{base}.csv": _table_csv(t)}
        entries.update(files)
        listed.append(
            {
                "system": t.system,
                "table": t.table,
                "columns": list(t.columns),
                "rows": len(t.rows),
                "files": [
                    {"name": name, "format": name.rpartition(".")[2], "sha256": _sha256(data)}
                    for name, data in files.items()
                ],
            }
        )
    entries[README] = _readme(request_id, listed, generated, extra or {}).encode()
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "request_id": request_id,
        "generated_at": generated.isoformat(),
        "readme": {"name": README, "sha256": _sha256(entries[README])},
        "tables": listed,
    }
    if extra:
        manifest["extra"] = _json_safe(dict(extra))
    entries[MANIFEST] = _json_bytes(manifest, sort_keys=True)
    return entries


def _check_table(t: TableRows) -> None:
    for name in (t.system, t.table):
        if not name or name in {".", ".."} or any(c in name for c in "/\\\0"):
            raise ValueError(f"'{name}' cannot name a file in an export package")
    if len(set(t.columns)) != len(t.columns):
        raise ValueError(f"{t.system}/{t.table}: a column is listed more than once")
    if any(len(row) != len(t.columns) for row in t.rows):  # the message never shows a row
        raise ValueError(f"{t.system}/{t.table}: a row does not have one value per column")


def _table_json(t: TableRows) -> bytes:
    objects = [dict(zip(t.columns, map(_json_safe, row), strict=True)) for row in t.rows]
    return _json_bytes(objects, sort_keys=False)  # columns in the table's order


def _table_csv(t: TableRows) -> bytes:
    text = io.StringIO(newline="")
    writer = csv.writer(text, lineterminator="\r\n")  # RFC 4180
    writer.writerow(t.columns)
    writer.writerows([_csv_cell(value) for value in row] for row in t.rows)
    return text.getvalue().encode()


def _json_bytes(value: Any, *, sort_keys: bool) -> bytes:
    text = json.dumps(value, ensure_ascii=False, indent=2, sort_keys=sort_keys, allow_nan=False)
    return (text + "\n").encode()


def _json_safe(value: Any) -> Any:
    """A database value as JSON: dates and times ISO 8601, decimals as text (exact), binary as
    base64, JSON columns recursively; anything else as its text."""
    if isinstance(value, str):
        return str.__str__(value)  # the text itself, even of a self-masking `Sensitive`
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Enum):
        return _json_safe(value.value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, Decimal | UUID | timedelta):
        return str(value)
    return str(value)


def _csv_cell(value: Any) -> str:
    safe = _json_safe(value)
    if safe is None:
        return ""
    if isinstance(safe, bool):
        return "true" if safe else "false"
    if isinstance(safe, dict | list):
        return _neutralised(json.dumps(safe, ensure_ascii=False, sort_keys=True))
    if isinstance(safe, int | float):
        return str(safe)  # a negative number is a number, not a formula
    return _neutralised(str(safe))


# A cell that starts with one of these opens as a formula in a spreadsheet (`=HYPERLINK(...)`);
# OWASP's CSV injection advice: prefix it with a single quote. The JSON file keeps the value
# exactly; the README says so.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _neutralised(text: str) -> str:
    return f"'{text}" if text.startswith(_FORMULA_STARTS) else text


def _readme(
    request_id: str, tables: list[dict[str, Any]], generated: datetime, extra: Mapping[str, Any]
) -> str:
    """A person's summary: what this is, per table the count, and when it expires. Counts and
    names only, never a value."""
    lines = [
        f"Personal data export for request {request_id}",
        "",
        f"Produced on {generated:%Y-%m-%d at %H:%M} UTC under the GDPR, Art. 15 (right of access)",
        "and Art. 20 (right to data portability). It holds the personal data that the systems",
        "below held about the data subject at that time, including rows that are kept under a",
        "legal obligation or masked, as they are now.",
        "",
        "Each table is given twice with the same rows: <system>/<table>.json (an array of",
        "objects, one per row, column -> value) and <system>/<table>.csv (UTF-8, with a header",
        "row). Dates and times are ISO 8601, decimals are text and binary values are base64.",
        "In the CSV files, a text that begins with =, +, -, @, a tab or a carriage return is",
        "written with a ' in front, so that a spreadsheet shows it instead of running it as a",
        "formula; the JSON files hold every value exactly.",
        "manifest.json lists every file with its row count and SHA-256 digest.",
        "",
    ]
    if tables:
        width = max(len(f"{t['system']}/{t['table']}") for t in tables)
        lines.append("Tables:")
        for t in tables:
            count = t["rows"]
            name = f"{t['system']}/{t['table']}"
            lines.append(f"  {name:<{width}}  {_count(count, 'row')}")
        total = sum(t["rows"] for t in tables)
        lines.append(f"Total: {_count(len(tables), 'table')}, {_count(total, 'row')}.")
    else:
        lines.append("No personal data about the data subject was found in the systems searched.")
    expires = extra.get("expires_on", extra.get("expires_at"))
    if expires is not None:
        lines += ["", f"This package expires on {_json_safe(expires)} and is deleted then."]
    return "\n".join(lines) + "\n"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _zip_time(generated_at: datetime) -> tuple[int, int, int, int, int, int]:
    t = generated_at.astimezone(UTC)
    stamp = (t.year, t.month, t.day, t.hour, t.minute, t.second)
    return max(stamp, _ZIP_EPOCH) if t.year < 2108 else (2107, 12, 31, 23, 59, 58)


def _write_zip(
    handle: IO[bytes], entries: Mapping[str, bytes], stamp: tuple[int, int, int, int, int, int]
) -> None:
    with zipfile.ZipFile(handle, "w") as archive:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # Unix, wherever it is built: the same bytes everywhere
            info.external_attr = (0o100000 | _FILE_MODE) << 16  # a regular file, owner-only
            archive.writestr(info, entries[name], compresslevel=9)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_directory(folder: Path) -> None:
    """Make a new or removed name durable where directories can be fsynced."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# -- reading, verifying, expiring ---------------------------------------------------------------


Package = Path | bytes  # a package in a folder, or its bytes (from the state store)


def _zip(source: Package) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)


def _name(source: Package) -> str:
    return "the package" if isinstance(source, bytes) else str(source)


def read_manifest(source: Package) -> dict[str, Any]:
    """The parsed manifest.json of a package; `ExportError` if it cannot be read."""
    path = _name(source)
    try:
        with _zip(source) as archive:
            manifest = json.loads(archive.read(MANIFEST))
    except KeyError:
        raise ExportError(f"{path}: not an export package: it has no {MANIFEST}") from None
    except (OSError, zipfile.BadZipFile, ValueError) as exc:
        raise ExportError(f"{path}: not a readable export package: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise ExportError(f"{path}: {MANIFEST} is not format_version {FORMAT_VERSION}")
    return manifest


def package_info(source: Package, path: Path | None = None) -> PackageInfo:
    """The info of an existing package, from its manifest (`path`: where it lives, when
    `source` is its bytes)."""
    where = source if isinstance(source, Path) else path or Path("-")
    path_text = _name(source)
    try:
        with _zip(source) as archive:
            manifest = archive.read(MANIFEST)
            files = len(archive.namelist())
    except KeyError:
        raise ExportError(f"{path_text}: not an export package: it has no {MANIFEST}") from None
    except (OSError, zipfile.BadZipFile) as exc:
        raise ExportError(f"{path_text}: not a readable export package: {exc}") from None
    tables = read_manifest(source).get("tables", [])
    try:
        rows = sum(int(t["rows"]) for t in tables)
    except (KeyError, TypeError, ValueError):
        raise ExportError(f"{path_text}: {MANIFEST} has a table without a row count") from None
    return PackageInfo(path=where, manifest_sha256=_sha256(manifest), files=files, rows=rows)


def verify_package(path: Package) -> list[str]:
    """Every way the package at `path` differs from its manifest: a listed file missing, a
    digest or row count that does not match, a CSV header that is not the columns, a file the
    manifest does not list. Empty when it is intact. Messages name files, never values."""
    try:
        manifest = read_manifest(path)
        with _zip(path) as archive:
            return _verify(archive, manifest)
    except (ExportError, OSError, zipfile.BadZipFile) as exc:
        return [str(exc)]
    except (KeyError, TypeError, ValueError, AttributeError):
        shape = f"the shape of format_version {FORMAT_VERSION}"
        return [f"{_name(path)}: {MANIFEST} does not have {shape}"]


def _verify(archive: zipfile.ZipFile, manifest: dict[str, Any]) -> list[str]:
    names = set(archive.namelist())
    problems: list[str] = []
    listed = {MANIFEST}
    files: list[tuple[dict[str, Any], dict[str, Any] | None]] = [(manifest["readme"], None)]
    files += [(f, table) for table in manifest["tables"] for f in table["files"]]
    for entry, table in files:
        name = entry["name"]
        listed.add(name)
        if name not in names:
            problems.append(f"{name}: listed in {MANIFEST} but not in the package")
            continue
        try:
            data = archive.read(name)
        except (zipfile.BadZipFile, OSError) as exc:  # a bad CRC, say
            problems.append(f"{name}: cannot be read: {exc}")
            continue
        if _sha256(data) != entry["sha256"]:
            problems.append(f"{name}: its SHA-256 does not match {MANIFEST}")
        if table is not None:
            problems += _check_rows(name, entry["format"], data, table)
    problems += [f"{name}: not listed in {MANIFEST}" for name in sorted(names - listed)]
    return problems


def _check_rows(name: str, fmt: str, data: bytes, table: dict[str, Any]) -> list[str]:
    expected, columns = table["rows"], table["columns"]
    try:
        if fmt == "json":
            rows = json.loads(data)
            if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
                return [f"{name}: not a JSON array of objects"]
            count = len(rows)
        elif fmt == "csv":
            records = list(csv.reader(io.StringIO(data.decode(), newline="")))
            if not records or records[0] != columns:
                return [f"{name}: its header is not the columns listed in {MANIFEST}"]
            count = len(records) - 1
        else:
            return [f"{name}: unknown format '{fmt}' in {MANIFEST}"]
    except (ValueError, csv.Error):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return [f"{name}: cannot be read as {fmt.upper()}"]
    if count != expected:
        return [f"{name}: holds {count} rows; {MANIFEST} says {expected}"]
    return []


def expire_package(outbox: Path, request_id: str) -> bool:
    """Delete the request's package and any partial one; True if something was deleted."""
    deleted = False
    for path in (package_path(outbox, request_id), _partial_path(outbox, request_id)):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ExportError(f"{path}: cannot delete the export package: {exc.strerror}") from None
        deleted = True
    if deleted:
        _fsync_directory(outbox)
    return deleted
