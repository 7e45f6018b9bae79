"""Tampering, as issue 9 tried it, through the CLI on the workload's real state store: a saved
plan edited to remove a protected admin (its plan_id recomputed) is refused; the audit chain
cut short, a record deleted or edited and the chain recomputed without the key, or the chain
emptied while tombstones point at receipts: `dsr audit verify` reports each, and `--head`
catches the cut against a witnessed head."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from store.test_audit_keyed import sql, unkeyed_rechain

from faults.conftest import Fault
from faults.workload import Runner, build_template, copy_of
from reconciler.plan import planfile
from reconciler.plan.permissions import user_id
from reconciler.store.records import GENESIS_HASH

ADMIN = "erin@contoso.example"  # protected in access.yaml


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Runner:
    return build_template(tmp_path_factory.mktemp("template"))


@pytest.fixture
def applied(template: Runner, tmp_path: Path) -> tuple[Runner, str]:
    """The workload applied; and the audit head its apply printed (what a CI log keeps)."""
    runner = copy_of(template, tmp_path)
    result = runner.dsr("apply", "--auto-approve")
    assert result.exit_code == 0, result.output
    head = re.search(r"audit head (\d+:[0-9a-f]{64})", result.stderr)
    assert head is not None, result.stderr
    runner.converge()
    assert runner.verify().exit_code == 0
    return runner, head.group(1)


def store_url(runner: Runner) -> str:
    return f"sqlite:///{runner.ws}/state/dsr.db"


def refused(runner: Runner, *args: str) -> str:
    """`dsr audit verify ARGS` fails with clean error lines, never a traceback."""
    return "\n".join(Runner.failed_cleanly(runner.dsr("audit", "verify", *args)))


def roles(runner: Runner) -> set[tuple[str, str]]:
    with sqlite3.connect(runner.db) as db:
        return set(db.execute("SELECT user_email, role FROM user_roles"))


@pytest.mark.fault("tampering: saved plan edited to remove a protected admin, plan_id recomputed")
def test_an_edited_saved_plan_is_refused(template: Runner, tmp_path: Path, fault: Fault) -> None:
    runner = copy_of(template, tmp_path)
    saved = tmp_path / "plan.json"
    assert runner.dsr("plan", "--out", str(saved)).exit_code == 0
    data = json.loads(saved.read_text())
    [removal] = [c for c in data["changes"] if c["action"] == "remove_user"]
    removal.update(
        id=f"remove_user:insights:{user_id(ADMIN)}",
        target=f"{ADMIN} (roles: admin)",
        params={"user": ADMIN},
    )
    data["plan_id"] = planfile.from_dict(data).id  # an unkeyed digest: anyone can recompute it
    saved.write_text(json.dumps(data))
    before = roles(runner)
    result = runner.dsr("apply", str(saved), "--auto-approve")
    assert "nothing was applied" in "\n".join(Runner.failed_cleanly(result))
    assert roles(runner) == before and (ADMIN, "admin") in before
    fault.tried(detail="refused, nothing applied; the admin keeps the role")


@pytest.mark.fault("tampering: audit tail cut off and the head moved back")
def test_a_cut_tail_is_detected(applied: tuple[Runner, str], fault: Fault) -> None:
    runner, witnessed = applied
    url = store_url(runner)
    [(kept,)] = sql(url, "SELECT hash FROM audit WHERE seq = 5")
    sql(url, "DELETE FROM audit WHERE seq > 5")
    sql(url, "UPDATE audit_head SET seq = 5, hash = :h", h=kept)
    assert "error:" in refused(runner)
    assert "cut off" in refused(runner, "--head", witnessed)
    fault.tried(2, detail="dsr audit verify, and --head against the head apply printed")


@pytest.mark.fault("tampering: audit record deleted or edited, chain recomputed without the key")
@pytest.mark.parametrize("change", ["delete", "edit"])
def test_a_recomputed_chain_is_detected(
    applied: tuple[Runner, str], fault: Fault, change: str
) -> None:
    runner, _ = applied
    url = store_url(runner)
    if change == "delete":
        sql(url, "DELETE FROM audit WHERE seq = 2")
        sql(url, "UPDATE audit SET seq = seq - 1 WHERE seq > 2")
    else:
        sql(url, "UPDATE audit SET details = :d WHERE seq = 2", d='{"rows":0}')
    unkeyed_rechain(url)
    assert "content does not match its hash" in refused(runner)
    fault.tried(detail="delete and edit; reported by dsr audit verify")


@pytest.mark.fault("tampering: audit chain emptied while tombstones point at receipts")
def test_an_emptied_chain_is_detected(applied: tuple[Runner, str], fault: Fault) -> None:
    runner, _ = applied
    url = store_url(runner)
    sql(url, "DELETE FROM audit")
    sql(url, "UPDATE audit_head SET seq = 0, hash = :h", h=GENESIS_HASH)
    sql(url, "DELETE FROM store_meta WHERE key LIKE 'audit_%'")
    shown = refused(runner)
    assert "the tombstone of DSR-F-ANA points at a receipt that is not in the audit log" in shown
    assert "the export package of DSR-F-CARL has no build record" in shown
    fault.tried(detail="tombstone and export record both point at nothing")
