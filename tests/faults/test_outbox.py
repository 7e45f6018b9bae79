"""The outbox under attack: a built package replaced, deleted or garbled is reported by
request id and not `ready`, and is built again with the subject's rows; a zip placed where a
package goes is never adopted, and one whose manifest lacks a field blocks no other request;
an outbox that is a symbolic link out of the workspace, or that git would track, is refused
and nothing is written there."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from faults.conftest import Fault
from faults.workload import Runner, build_template, copy_of, package_is_sound
from reconciler.outbox.package import TableRows, build_package, read_manifest

RID = "DSR-F-CARL"
PLACED_AT = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Runner:
    return build_template(tmp_path_factory.mktemp("template"))


def package_of(runner: Runner) -> Path:
    return runner.ws / "state/outbox" / f"{RID}.zip"


def placed_package(outbox: Path) -> Path:
    """A well-formed package dsr did not build (another subject's row)."""
    rows = TableRows("crm", "customers", ("id",), ((99,),))
    return build_package(outbox, RID, [rows], generated_at=PLACED_AT).path


def tables_of(path: Path) -> list[tuple[str, str, int]]:
    """Each table a package holds and its row count (a refresh may renumber platform rows)."""
    return [(t["system"], t["table"], t["rows"]) for t in read_manifest(path)["tables"]]


def others_done(runner: Runner) -> None:
    states = runner.request_states()
    assert states["DSR-F-ANA"] == "completed" and states["DSR-F-BEA"] == "waiting", states


@pytest.mark.fault("outbox: a built package replaced, deleted or garbled")
@pytest.mark.parametrize("harm", ["replaced", "deleted", "garbled"])
def test_a_harmed_package_is_reported_and_built_again(
    template: Runner, tmp_path: Path, fault: Fault, harm: str
) -> None:
    runner = copy_of(template, tmp_path)
    runner.converge()
    path = package_of(runner)
    rows_built = tables_of(path)
    if harm == "replaced":
        path.unlink()
        placed_package(path.parent)
    elif harm == "deleted":
        path.unlink()
    else:
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    status = runner.dsr("status")
    [line] = [x for x in status.stdout.splitlines() if x.strip().startswith(RID)]
    assert "PROBLEM: the package" in line and " ready " not in line, line
    assert runner.request_states()[RID] != "ready"
    planned = runner.dsr("plan", "--detailed-exitcode")
    assert planned.exit_code == 2 and f"{RID}" in planned.stdout, planned.output
    runner.converge()  # built again, from the subject's rows as they are now
    assert runner.request_states()[RID] == "ready"
    assert package_is_sound(path) and tables_of(path) == rows_built
    assert runner.verify().exit_code == 0
    fault.tried(detail="PROBLEM by request id, not ready, rebuilt with the subject's rows")


@pytest.mark.fault("outbox: a zip placed at the package's path before the build")
def test_a_placed_zip_is_never_adopted(template: Runner, tmp_path: Path, fault: Fault) -> None:
    runner = copy_of(template, tmp_path)
    placed = placed_package(runner.ws / "state/outbox")
    placed_bytes = placed.read_bytes()
    runner.placed.add(placed)
    applied = runner.dsr("apply", "--auto-approve")
    lines = Runner.failed_cleanly(applied)
    assert any(f"{RID}: a file dsr did not write is at state/outbox/{RID}.zip" in x for x in lines)
    assert placed.read_bytes() == placed_bytes
    audit = json.dumps(runner.audit())
    with zipfile.ZipFile(placed) as archive:
        digest = hashlib.sha256(archive.read("manifest.json")).hexdigest()
    assert digest not in audit and runner.request_states()[RID] != "ready"
    others_done(runner)
    fault.tried(detail="refused by request id; its digest never audited; other requests done")


@pytest.mark.fault("outbox: a placed zip whose manifest lacks a field")
def test_a_placed_zip_with_a_short_manifest_blocks_nothing_else(
    template: Runner, tmp_path: Path, fault: Fault
) -> None:
    runner = copy_of(template, tmp_path)
    outbox = runner.ws / "state/outbox"
    outbox.mkdir(parents=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("manifest.json", json.dumps({"format_version": 1, "tables": []}))
    (outbox / f"{RID}.zip").write_bytes(buffer.getvalue())
    runner.placed.add(outbox / f"{RID}.zip")
    for _ in range(2):  # run after run: the other requests are not held up
        lines = Runner.failed_cleanly(runner.dsr("apply", "--auto-approve"))
        assert any(RID in x and "did not write" in x for x in lines), lines
    others_done(runner)
    assert runner.verify().exit_code == 0
    fault.tried(detail="refused by request id, no traceback; the erasures completed")


@pytest.mark.fault("outbox: a symbolic link out of the workspace, or a folder git would track")
@pytest.mark.parametrize("where", ["symlink", "git-tracked"])
def test_a_misplaced_outbox_is_refused(
    template: Runner, tmp_path: Path, fault: Fault, where: str
) -> None:
    runner = copy_of(template, tmp_path / "copy")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if where == "symlink":
        (runner.ws / "state").mkdir(exist_ok=True)
        os.symlink(elsewhere, runner.ws / "state/outbox")
        why = "outside the workspace"
    else:
        if shutil.which("git") is None:
            pytest.skip("git is not installed")
        subprocess.run(["git", "init", "-q", str(runner.ws)], check=True)
        why = "git"
    lines = Runner.failed_cleanly(runner.dsr("apply", "--auto-approve"))
    refusal = [x for x in lines if RID in x and "exports.outbox" in x]
    assert refusal and why in refusal[0], lines
    assert list(elsewhere.iterdir()) == [] and not package_of(runner).exists()
    others_done(runner)
    fault.tried(detail="refused by request id, nothing written; the erasures completed")
