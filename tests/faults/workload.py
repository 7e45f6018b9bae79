"""The fault suite's workload and the ways it drives `dsr`.

One workspace holds everything an apply can do: two erasures (one that completes, masking
orders and retaining their lines; one that waits on the shop's owner), an approved export and
permission changes (a grant, a revoke, a user removed; a protected admin). Its systems live
in one SQLite file outside the workspace (`tests/e2e/test_erasure.py`'s schema), so every
file under the workspace is written by dsr or by the test. A template is built once and
copied for each trial.

Every command goes through `Runner`, which keeps what dsr printed, so that the suite can grep
every output for the raw identifiers in `RAW`.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from click.testing import CliRunner, Result
from e2e.test_erasure import ANA, BEA, KEEP, build_schema, systems_yaml
from e2e.test_erasure import RAW as ERASURE_RAW

from reconciler.cli import cli

REPO_ROOT = Path(__file__).resolve().parents[2]
IDENTITY_KEY = "fault-suite-identity-key-of-32-bytes-or-more"
CARL = KEEP[0]  # exported
RAW = [*ERASURE_RAW, CARL, "carl.keep"]  # every raw identifier the suite hands to dsr
ERASURES = ("DSR-F-ANA", "DSR-F-BEA")
EXPORTS = ("DSR-F-CARL",)
ACCESS = """\
roles: [admin, contributor, viewer]
users:
  erin@contoso.example: {roles: [admin], protected: true}
  ana.admin@contoso.example: {roles: [admin]}
  ben@contoso.example: {roles: [contributor]}
"""
SETTINGS = """\
workspace: faults
identity: {key: env:DSR_IDENTITY_KEY, key_id: f1}
exports: {outbox: state/outbox, expire_after_days: 7}
"""
# What the test writes (inputs, not dsr's output), relative to the workspace.
INPUTS = ("dsr.yaml", "policies/systems.yaml", "policies/access.yaml")


@dataclass
class Runner:
    """Runs dsr on one workspace, in process or as a real process, and keeps every output."""

    ws: Path
    db: Path
    store_url: str | None = None  # a shared state store; None: the workspace's SQLite file
    outputs: list[str] = field(default_factory=list)
    placed: set[Path] = field(default_factory=set)  # files a test put there on purpose
    dirty: bool = True  # used since the grep last looked at it
    live: ClassVar[list[Runner]] = []  # every runner made, for the grep

    def __post_init__(self) -> None:
        Runner.live.append(self)

    @property
    def env(self) -> dict[str, str]:
        env = {
            **os.environ,
            "DSR_TEST_DB": f"sqlite:///{self.db}",
            "DSR_IDENTITY_KEY": IDENTITY_KEY,
        }
        if self.store_url is not None:
            env["DSR_STATE_URL"] = self.store_url
        return env

    def dsr(self, *args: str, input: str | None = None) -> Result:
        """In process (fast); `env` as a real process would have it."""
        self.dirty = True
        result = CliRunner().invoke(
            cli, ["-C", str(self.ws), *args], input=input, env=self.env, catch_exceptions=True
        )
        self.outputs += [result.stdout, result.stderr]
        return result

    def process(
        self, *args: str, env: dict[str, str] | None = None, script: Path | None = None
    ) -> subprocess.Popen[str]:
        """`python -m reconciler -C WS ARGS`, or `python SCRIPT -C WS ARGS`."""
        program = [str(script)] if script else ["-m", "reconciler"]
        self.dirty = True
        return subprocess.Popen(
            [sys.executable, *program, "-C", str(self.ws), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**self.env, **(env or {})},
            cwd=self.ws,
        )

    def run(
        self, *args: str, env: dict[str, str] | None = None, script: Path | None = None
    ) -> tuple[int, str, str]:
        proc = self.process(*args, env=env, script=script)
        out, err = proc.communicate(timeout=300)
        self.outputs += [out, err]
        return proc.returncode, out, err

    def converge(self, rounds: int = 4) -> None:
        """Apply until the plan has nothing left to do (a waiting request is not pending)."""
        for _ in range(rounds):
            applied = self.dsr("apply", "--auto-approve")
            assert applied.exit_code in (0, 2), applied.output
            if self.dsr("plan", "--detailed-exitcode").exit_code == 0:
                return
        raise AssertionError(f"no convergence after {rounds} applies")

    @staticmethod
    def failed_cleanly(result: Result) -> list[str]:
        """Exit 1 with no traceback (an unexpected exception escapes the CLI's error
        boundary); returns the non-empty output lines."""
        escaped = result.exception is not None and not isinstance(result.exception, SystemExit)
        assert not escaped, f"{result.exception!r} escaped: {result.output[-500:]}"
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output
        return [line for line in result.output.splitlines() if line.strip()]

    # -- what a run left behind ------------------------------------------------------------

    def system_rows(self) -> dict[str, list[tuple[Any, ...]]]:
        with sqlite3.connect(self.db) as db:
            names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            return {
                n: sorted(db.execute(f'SELECT * FROM "{n}"'), key=repr)  # noqa: S608
                for n in sorted(names)
                if not n.startswith("sqlite_")
            }

    def request_states(self) -> dict[str, str]:
        data = json.loads(self.dsr("status", "--format", "json").stdout)
        return {r["id"]: r["state"] for r in data["requests"]}

    def audit(self) -> list[dict[str, Any]]:
        shown = self.dsr("audit", "show", "--format", "json")
        assert shown.exit_code == 0, shown.output
        return [json.loads(line) for line in shown.stdout.splitlines() if line.strip()]

    def receipts(self) -> Counter[str]:
        """Receipts written, by request (an interrupted attempt is no receipt)."""
        return Counter(
            r["request"]
            for r in self.audit()
            if r["action"] == "complete" and r["outcome"] == "succeeded"
        )

    def builds(self) -> Counter[str]:
        """Packages built, by request (a build a kill interrupted is recorded as such)."""
        return Counter(
            r["request"]
            for r in self.audit()
            if r["action"] == "build_export" and r["outcome"] == "succeeded"
        )

    def packages(self) -> list[str]:
        outbox = self.ws / "state/outbox"
        return sorted(p.name for p in outbox.iterdir()) if outbox.is_dir() else []

    def verify(self) -> Result:
        return self.dsr("audit", "verify")


def build_template(root: Path) -> Runner:
    """The workload, requests filed and approved, nothing applied yet."""
    ws, db = root / "ws", root / "systems.db"
    (ws / "policies/requests").mkdir(parents=True)
    (ws / "dsr.yaml").write_text(SETTINGS)
    (ws / "policies/systems.yaml").write_text(systems_yaml())
    (ws / "policies/access.yaml").write_text(ACCESS)
    runner = Runner(ws, db)
    build_schema(f"sqlite:///{db}")
    for kind, email, rid in (
        ("erasure", ANA, ERASURES[0]),
        ("erasure", BEA, ERASURES[1]),
        ("export", CARL, EXPORTS[0]),
    ):
        filed = runner.dsr(
            "new", kind, "--email", "-", "--requested-by", "dpo@contoso.example",
            "--id", rid, "--received", "2026-11-20", input=email + "\n",
        )  # fmt: skip
        assert filed.exit_code == 0, filed.output
    approved = runner.dsr(
        "approve", EXPORTS[0], "--by", "erin@contoso.example", "--on", "2026-11-21"
    )
    assert approved.exit_code == 0, approved.output
    return runner


def copy_of(template: Runner, root: Path, store_url: str | None = None) -> Runner:
    """A fresh copy of a workspace and its systems' database, under `root`; with `store_url`,
    its state lives in that (shared) store."""
    shutil.copytree(template.ws, root / "ws")
    shutil.copy(template.db, root / "systems.db")
    if store_url is not None:
        settings = root / "ws/dsr.yaml"
        settings.write_text(settings.read_text() + "state: {url: env:DSR_STATE_URL}\n")
    return Runner(root / "ws", root / "systems.db", store_url)


def package_is_sound(path: Path) -> bool:
    with zipfile.ZipFile(path) as archive:
        return archive.testzip() is None and "manifest.json" in archive.namelist()
