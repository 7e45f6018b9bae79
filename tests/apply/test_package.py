"""Export packages: contents, determinism, exactly-once builds, killed builds, verification,
expiry, and where packages may live. Real files in tmp_path; no mocks.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import stat
import zipfile
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from reconciler.desired.checks import outbox_problem, resolve_outbox
from reconciler.desired.load import load_workspace
from reconciler.errors import DsrError, ValidationFailed
from reconciler.outbox.package import (
    ExportError,
    PackageInfo,
    TableRows,
    build_package,
    expire_package,
    package_info,
    package_path,
    read_manifest,
    verify_package,
)
from reconciler.privacy.withhold import Sensitive

ID = "DSR-20261120-EXP1"
AT = datetime(2026, 11, 29, 12, 30, 5, tzinfo=UTC)
EMAIL = "zoë.subject@example.com"
SECRET_NOTE = 'says "hi",\nthen leaves'  # a CSV cell with a quote, a comma and a line break

CUSTOMERS = TableRows(
    system="crm",
    table="customers",
    columns=("id", "email", "balance", "born", "seen", "photo", "note", "vip"),
    rows=(
        (
            7,
            Sensitive(EMAIL),
            Decimal("12.50"),
            date(1990, 2, 3),
            datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            b"\x00\xffpng",
            SECRET_NOTE,
            True,
        ),
        (8, "second@example.com", None, None, None, None, None, False),
    ),
)
ORDERS = TableRows(
    system="crm",
    table="orders",
    columns=("id", "customer_id", "total"),
    rows=((1, 7, 9.5), (2, 7, float("nan")), (3, 7, 0)),
)
CONSENT = TableRows(system="insights", table="consent", columns=("id", "purpose"), rows=())
TABLES = [CUSTOMERS, ORDERS, CONSENT]
RAW_VALUES = [EMAIL, "second@example.com", "says", "then leaves"]


def build(outbox: Path, tables: list[TableRows] | None = None, **kwargs: Any) -> PackageInfo:
    kwargs.setdefault("generated_at", AT)
    return build_package(outbox, ID, TABLES if tables is None else tables, **kwargs)


def entries(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_package_contents(tmp_path: Path) -> None:
    outbox = tmp_path / "state" / "outbox"
    info = build(outbox, extra={"expires_on": date(2026, 12, 29), "subject_kind": "customer"})
    path = outbox / f"{ID}.zip"
    files = entries(path)
    assert list(files) == sorted(files)
    assert sorted(files) == [
        "README.txt",
        "crm/customers.csv",
        "crm/customers.json",
        "crm/orders.csv",
        "crm/orders.json",
        "insights/consent.csv",
        "insights/consent.json",
        "manifest.json",
    ]
    assert info == PackageInfo(path, sha(files["manifest.json"]), files=8, rows=5)
    assert package_info(path) == info
    assert sorted(p.name for p in outbox.iterdir()) == [f"{ID}.zip"]  # no partial left
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    manifest = json.loads(files["manifest.json"])
    assert manifest == read_manifest(path)
    assert manifest["format_version"] == 1
    assert manifest["request_id"] == ID
    assert manifest["generated_at"] == "2026-11-29T12:30:05+00:00"
    assert manifest["extra"] == {"expires_on": "2026-12-29", "subject_kind": "customer"}
    assert manifest["readme"] == {"name": "README.txt", "sha256": sha(files["README.txt"])}
    given = {(t.system, t.table): t for t in TABLES}
    assert [(t["system"], t["table"]) for t in manifest["tables"]] == sorted(given)
    for table in manifest["tables"]:
        source = given[(table["system"], table["table"])]
        assert table["rows"] == len(source.rows)
        assert table["columns"] == list(source.columns)
        assert {f["format"] for f in table["files"]} == {"json", "csv"}
        for entry in table["files"]:
            assert entry["sha256"] == sha(files[entry["name"]])
        as_json = json.loads(files[f"{table['system']}/{table['table']}.json"])
        assert len(as_json) == len(source.rows)
        assert all(list(row) == list(source.columns) for row in as_json)
        records = list(
            csv.reader(
                io.StringIO(
                    files[f"{table['system']}/{table['table']}.csv"].decode("utf-8"), newline=""
                )
            )
        )
        assert records[0] == list(source.columns)
        assert len(records) - 1 == len(source.rows)
    assert verify_package(path) == []


def test_values_are_json_safe_and_exported_as_they_are(tmp_path: Path) -> None:
    files = entries(build(tmp_path).path)
    customers = json.loads(files["crm/customers.json"])
    assert customers[0] == {
        "id": 7,
        "email": EMAIL,  # the text itself, though it travelled as a self-masking Sensitive
        "balance": "12.50",
        "born": "1990-02-03",
        "seen": "2026-01-02T03:04:05+00:00",
        "photo": base64.b64encode(b"\x00\xffpng").decode(),
        "note": SECRET_NOTE,
        "vip": True,
    }
    assert customers[1]["balance"] is None
    assert json.loads(files["crm/orders.json"])[1]["total"] == "nan"
    rows = list(csv.reader(io.StringIO(files["crm/customers.csv"].decode("utf-8"), newline="")))
    assert rows[1] == [
        "7",
        EMAIL,
        "12.50",
        "1990-02-03",
        "2026-01-02T03:04:05+00:00",
        base64.b64encode(b"\x00\xffpng").decode(),
        SECRET_NOTE,
        "true",
    ]
    assert rows[2] == ["8", "second@example.com", "", "", "", "", "", "false"]


def test_readme_and_manifest_summarise_without_values(tmp_path: Path) -> None:
    files = entries(build(tmp_path, extra={"expires_on": date(2026, 12, 29)}).path)
    readme = files["README.txt"].decode()
    assert f"Personal data export for request {ID}" in readme
    assert "Art. 15" in readme and "Art. 20" in readme
    assert "Produced on 2026-11-29 at 12:30 UTC" in readme
    assert "  crm/customers     2 rows" in readme
    assert "  crm/orders        3 rows" in readme
    assert "  insights/consent  0 rows" in readme
    assert "Total: 3 tables, 5 rows." in readme
    assert "This package expires on 2026-12-29 and is deleted then." in readme
    for value in RAW_VALUES:
        assert value not in readme
        assert value not in files["manifest.json"].decode()


def test_an_empty_export_says_so(tmp_path: Path) -> None:
    info = build(tmp_path, [])
    assert (info.files, info.rows) == (2, 0)
    assert "No personal data about the data subject was found" in (
        entries(info.path)["README.txt"].decode()
    )
    assert verify_package(info.path) == []


def test_the_same_inputs_give_a_byte_identical_package(tmp_path: Path) -> None:
    first = build(tmp_path / "a")
    second = build(tmp_path / "b", list(reversed(TABLES)))  # the order given does not matter
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.manifest_sha256 == second.manifest_sha256
    # The same instant in another zone is the same input.
    third = build(tmp_path / "c", generated_at=AT.astimezone(timezone(timedelta(hours=-5))))
    assert third.path.read_bytes() == first.path.read_bytes()
    later = build(tmp_path / "d", generated_at=AT + timedelta(hours=1))
    assert later.path.read_bytes() != first.path.read_bytes()


def test_a_package_is_built_exactly_once(tmp_path: Path) -> None:
    first = build(tmp_path)
    before = first.path.stat()
    content = first.path.read_bytes()
    again = build(tmp_path, [ORDERS], generated_at=AT + timedelta(days=1))
    after = first.path.stat()
    assert again == first
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_size,
    )
    assert first.path.read_bytes() == content


def test_a_killed_build_is_finished_by_the_next(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    partial = outbox / f".{ID}.zip.partial"
    partial.write_bytes(b"PK\x03\x04 half a zip, then the power went")
    info = build(outbox)
    assert sorted(p.name for p in outbox.iterdir()) == [f"{ID}.zip"]
    assert verify_package(info.path) == []
    assert info.path.read_bytes() == build(tmp_path / "clean").path.read_bytes()


def test_a_partial_left_beside_a_finished_package_is_removed(tmp_path: Path) -> None:
    info = build(tmp_path)
    content = info.path.read_bytes()
    partial = tmp_path / f".{ID}.zip.partial"
    partial.write_bytes(b"garbage")
    assert build(tmp_path) == info
    assert not partial.exists()
    assert info.path.read_bytes() == content


def rewrite(path: Path, change: dict[str, bytes | None]) -> None:
    """Rewrite the zip at `path` with entries replaced, added, or (None) removed."""
    files = {**entries(path), **change}
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            if data is not None:
                archive.writestr(name, data)


def test_verify_detects_a_tampered_file(tmp_path: Path) -> None:
    path = build(tmp_path).path
    orders = json.loads(entries(path)["crm/orders.json"])
    rewrite(path, {"crm/orders.json": json.dumps(orders[:2]).encode()})
    assert verify_package(path) == [
        "crm/orders.json: its SHA-256 does not match manifest.json",
        "crm/orders.json: holds 2 rows; manifest.json says 3",
    ]


def test_verify_detects_a_changed_value_missing_and_extra_files(tmp_path: Path) -> None:
    path = build(tmp_path).path
    csv_text = entries(path)["crm/customers.csv"].replace(b"12.50", b"99.99")
    rewrite(
        path,
        {"crm/customers.csv": csv_text, "insights/consent.json": None, "crm/notes.txt": b"x"},
    )
    assert verify_package(path) == [
        "crm/customers.csv: its SHA-256 does not match manifest.json",
        "insights/consent.json: listed in manifest.json but not in the package",
        "crm/notes.txt: not listed in manifest.json",
    ]


def test_verify_reports_an_unreadable_package(tmp_path: Path) -> None:
    path = tmp_path / f"{ID}.zip"
    path.write_bytes(b"not a zip")
    [problem] = verify_package(path)
    assert problem.startswith(f"{path}: not a readable export package")
    with pytest.raises(ExportError):
        read_manifest(path)


def test_expire_deletes_the_package_and_any_partial(tmp_path: Path) -> None:
    info = build(tmp_path)
    partial = tmp_path / f".{ID}.zip.partial"
    partial.write_bytes(b"garbage")
    assert expire_package(tmp_path, ID) is True
    assert not info.path.exists() and not partial.exists()
    assert expire_package(tmp_path, ID) is False
    assert expire_package(tmp_path / "never-made", ID) is False


@pytest.mark.parametrize(
    "bad", ["../DSR-1", "DSR-1/../../x", "a/b", "/etc/DSR-1", "..", "", ".DSR-1", "DSR-1\0"]
)
def test_ids_that_could_leave_the_outbox_are_refused(tmp_path: Path, bad: str) -> None:
    outbox = tmp_path / "outbox"
    with pytest.raises(ExportError, match="is not a request id"):
        package_path(outbox, bad)
    with pytest.raises(ExportError, match="is not a request id"):
        build_package(outbox, bad, TABLES, generated_at=AT)
    with pytest.raises(ExportError, match="is not a request id"):
        expire_package(outbox, bad)
    assert list(tmp_path.iterdir()) == []


def test_bad_input_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build(tmp_path, generated_at=datetime(2026, 11, 29, 12, 0))
    with pytest.raises(ValueError, match="cannot name a file"):
        build(tmp_path, [TableRows("crm", "../x", ("id",), ((1,),))])
    with pytest.raises(ValueError, match="given more than once"):
        build(tmp_path, [ORDERS, ORDERS])
    short = TableRows("crm", "orders", ("id", "total"), ((1,),))
    with pytest.raises(ValueError, match="one value per column") as raised:
        build(tmp_path, [short])
    assert "1" not in str(raised.value).replace("crm/orders", "")
    assert list(tmp_path.iterdir()) == []


def test_table_rows_never_show_their_values() -> None:
    assert EMAIL not in repr(CUSTOMERS)
    assert "rows" not in repr(CUSTOMERS)


# -- where the outbox may be --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outbox", "problem"),
    [
        ("state/outbox", None),
        ("./exports", None),
        (
            "../outbox",
            "'../outbox' must not contain '..': export packages must stay in the workspace",
        ),
        (
            "state/../../outbox",
            "'state/../../outbox' must not contain '..': export packages must "
            "stay in the workspace",
        ),
        (".", "must be a folder inside the workspace, not the workspace itself"),
        (
            "/var/outbox",
            "'/var/outbox' is outside the workspace: export packages hold personal "
            "data and must stay in it (for example state/outbox)",
        ),
    ],
)
def test_outbox_must_be_inside_the_workspace(
    tmp_path: Path, outbox: str, problem: str | None
) -> None:
    assert outbox_problem(tmp_path, outbox) == problem
    if problem is None:
        assert resolve_outbox(tmp_path, outbox) == tmp_path / outbox
    else:
        with pytest.raises(DsrError, match="dsr.yaml: exports.outbox: "):
            resolve_outbox(tmp_path, outbox)


def test_an_absolute_outbox_under_the_workspace_is_allowed(tmp_path: Path) -> None:
    inside = tmp_path / "state" / "outbox"
    assert outbox_problem(tmp_path, str(inside)) is None
    assert outbox_problem(tmp_path, str(tmp_path)) is not None
    assert outbox_problem(tmp_path / "ws", str(tmp_path / "ws-other")) is not None


def test_the_loader_reports_an_outbox_outside_the_workspace(demo_workspace: Path) -> None:
    settings = demo_workspace / "dsr.yaml"
    text = settings.read_text(encoding="utf-8")
    line = text.splitlines().index("exports: {outbox: state/outbox, expire_after_days: 30}") + 1
    settings.write_text(text.replace("outbox: state/outbox", "outbox: ../outbox"))
    with pytest.raises(ValidationFailed) as failed:
        load_workspace(demo_workspace)
    assert [str(d) for d in failed.value.diagnostics] == [
        f"dsr.yaml:{line}: exports.outbox: '../outbox' must not contain '..': export packages "
        "must stay in the workspace",
    ]
    absolute = demo_workspace / "state" / "outbox"
    settings.write_text(text.replace("outbox: state/outbox", f"outbox: {absolute}"))
    assert load_workspace(demo_workspace).settings.outbox == str(absolute)
    settings.write_text(text.replace("outbox: state/outbox", "outbox: /srv/outbox"))
    with pytest.raises(ValidationFailed) as failed:
        load_workspace(demo_workspace)
    assert [str(d) for d in failed.value.diagnostics] == [
        f"dsr.yaml:{line}: exports.outbox: '/srv/outbox' is outside the workspace: export "
        "packages hold personal data and must stay in it (for example state/outbox)",
    ]


def test_files_are_only_written_in_the_outbox(tmp_path: Path) -> None:
    outbox = tmp_path / "ws" / "state" / "outbox"
    build(outbox)
    written = [
        Path(folder, name).relative_to(tmp_path)
        for folder, _, names in os.walk(tmp_path)
        for name in names
    ]
    assert written == [Path("ws/state/outbox", f"{ID}.zip")]


def test_readme_counts_read_as_english(tmp_path: Path) -> None:
    one = TableRows("crm", "orders", ("id",), ((1,),))
    readme = entries(build(tmp_path, [one]).path)["README.txt"].decode()
    assert "  crm/orders  1 row\n" in readme
    assert "Total: 1 table, 1 row." in readme


def test_csv_cells_that_would_run_as_formulas_are_neutralised_and_json_keeps_them(
    tmp_path: Path,
) -> None:
    """A `full_name` of `=HYPERLINK(...)` opened as a live formula in the subject's
    spreadsheet (OWASP: CSV injection)."""
    risky = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "ok"]
    rows = tuple((i, v, -5) for i, v in enumerate(risky))
    table = TableRows("crm", "customers", ("id", "full_name", "balance"), rows)
    info = build_package(tmp_path, ID, [table], generated_at=AT)
    with zipfile.ZipFile(info.path) as archive:
        cells = list(csv.reader(io.StringIO(archive.read("crm/customers.csv").decode())))
        objects = json.loads(archive.read("crm/customers.json"))
    assert [r[1] for r in cells[1:]] == [f"'{v}" for v in risky[:-1]] + ["ok"]
    assert {r[2] for r in cells[1:]} == {"-5"}  # numbers stay numbers
    assert [o["full_name"] for o in objects] == risky
    assert verify_package(info.path) == []
