"""Four `dsr apply` processes started at once on one workspace, with the state store in
SQLite and in PostgreSQL: they take the lock in turn (one run carries out the changes, the
others wait for the lock and find nothing to do), converge to what one apply gives, and
nothing is applied twice (the audit log holds each change once)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from faults.conftest import Fault, grep_now
from faults.workload import Runner, build_template, copy_of

APPLIES = 4


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Runner:
    return build_template(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="module")
def reference(template: Runner, tmp_path_factory: pytest.TempPathFactory) -> Runner:
    runner = copy_of(template, tmp_path_factory.mktemp("reference"))
    runner.converge()
    return runner


def changes(runner: Runner) -> Counter[tuple[str, str, str]]:
    """Each audited change: (action, change id, outcome)."""
    return Counter(
        (r["action"], str(r["details"].get("change")), r["outcome"]) for r in runner.audit()
    )


def runs(url: str) -> list[tuple[str, str | None]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [
                (str(r.started_at), r.ended_at)
                for r in conn.execute(sa.text("SELECT started_at, ended_at FROM runs ORDER BY id"))
            ]
    finally:
        engine.dispose()


def concurrent_applies(runner: Runner, reference: Runner, store_url: str) -> str:
    procs = [
        runner.process("apply", "--auto-approve", "--lock-timeout", "300") for _ in range(APPLIES)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        runner.outputs += [out, err]
        results.append((proc.returncode, out, err))
    assert [code for code, _, _ in results] == [0] * APPLIES, results
    did = [out for _, out, _ in results if "Apply complete" in out]
    assert len(did) == 1, "not exactly one run carried out the changes"
    waited = sum("waiting up to" in err for _, _, err in results)
    recorded = runs(store_url)
    assert len(recorded) == 1 and recorded[0][1] is not None, recorded
    assert changes(runner) == changes(reference), "a change was applied twice, or not at all"
    assert runner.system_rows() == reference.system_rows()
    assert runner.request_states() == reference.request_states()
    assert runner.receipts() == reference.receipts() and runner.builds() == reference.builds()
    assert runner.verify().exit_code == 0
    return f"{APPLIES} at once: 1 run applied, {waited} waited for the lock, 3 found nothing to do"


@pytest.mark.fault("4 concurrent applies, SQLite state store")
def test_concurrent_applies_on_sqlite(
    template: Runner, reference: Runner, tmp_path: Path, fault: Fault
) -> None:
    runner = copy_of(template, tmp_path)
    detail = concurrent_applies(runner, reference, f"sqlite:///{runner.ws}/state/dsr.db")
    fault.tried(APPLIES, detail=detail + "; as one apply; each change audited once")


@pytest.mark.postgres
@pytest.mark.fault("4 concurrent applies, PostgreSQL state store")
def test_concurrent_applies_on_postgres(
    template: Runner, reference: Runner, tmp_path: Path, fault: Fault, postgres_url: str
) -> None:
    runner = copy_of(template, tmp_path, store_url=postgres_url)
    detail = concurrent_applies(runner, reference, postgres_url)
    grep_now([runner], "test_concurrent_applies_on_postgres")  # before the store is dropped
    fault.tried(APPLIES, detail=detail + "; as one apply; each change audited once")
