"""The fault suite's table: each test records what it tried (a row), how many trials and a
detail; pytest's own reports decide whether the row held. `pytest_terminal_summary` prints
the one table (`make faults`).

Every test here also has its outputs grepped for the raw identifiers it used (`workload.RAW`):
what dsr printed, every file under each workspace it ran on (export packages excepted), and a
dump of the state store. That grep is a row of its own.

DSR_FAULTS_FULL=1 (set by `make faults`) runs the slow parts at full size; without it they
run reduced, inside `make test`.
"""

from __future__ import annotations

import os
import random
import sqlite3
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field

import pytest
import sqlalchemy as sa

from faults import workload

FULL = os.environ.get("DSR_FAULTS_FULL") == "1"
SEED = int(os.environ.get("DSR_FAULTS_SEED", "9"))
GREP_ROW = "grep every output, file written and state dump for the raw identifiers used"


@dataclass
class Row:
    trials: int = 0
    failures: list[str] = field(default_factory=list)
    skips: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)


ROWS: dict[str, Row] = {}  # in the order tests first name them


@dataclass
class Fault:
    """A test's handle on its row of the table."""

    label: str
    rng: random.Random

    def tried(self, n: int = 1, detail: str | None = None) -> None:
        row = ROWS.setdefault(self.label, Row())
        row.trials += n
        if detail and detail not in row.details:
            row.details.append(detail)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fault(label): the row of the fault table a test fills")


def _label(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("fault")
    return str(marker.args[0]) if marker else None


# The table's order: the list.
MODULES = ("test_kills", "test_concurrency", "test_bad_inputs", "test_tampering", "test_outbox")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def order(item: pytest.Item) -> int:
        name = item.module.__name__.rpartition(".")[2] if item.module else ""
        return MODULES.index(name) if name in MODULES else len(MODULES)

    for item in sorted(items, key=order):  # stable: tests keep their order within a module
        if (label := _label(item)) is not None:
            ROWS.setdefault(label, Row())


@pytest.fixture
def fault(request: pytest.FixtureRequest) -> Fault:
    label = _label(request.node)
    assert label is not None, "mark the test with @pytest.mark.fault(label)"
    return Fault(label, random.Random(f"{SEED}:{request.node.nodeid}"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    label = _label(item)
    if label is None:
        return report
    row = ROWS.setdefault(label, Row())
    if report.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        message = crash.message.splitlines()[0] if crash is not None else str(report.longrepr)
        row.failures.append(f"{item.name}: {message}"[:160])
    elif report.skipped and call.excinfo is not None:
        row.skips.append(str(call.excinfo.value).splitlines()[0][:120])
    return report


# -- the grep -------------------------------------------------------------------------------


def _dump_store(runner: workload.Runner) -> list[str]:
    """Every row of the state store, as text; packages kept in the store excepted."""
    if runner.store_url is not None:
        engine = sa.create_engine(runner.store_url)
        try:
            with engine.connect() as conn:
                return [
                    repr(tuple(r))
                    for name in sa.inspect(conn).get_table_names()
                    if name != "export_packages"
                    for r in conn.execute(sa.text(f'SELECT * FROM "{name}"'))
                ]
        finally:
            engine.dispose()
    path = runner.ws / "state/dsr.db"
    if not path.exists():
        return []
    with sqlite3.connect(path) as db:
        return [line for line in db.iterdump() if 'INSERT INTO "export_packages"' not in line]


def grep(runners: list[workload.Runner]) -> tuple[int, list[str]]:
    """(how many outputs were searched, what leaked where)."""
    texts: list[tuple[str, str]] = []
    for runner in runners:
        texts += [("dsr output", out) for out in runner.outputs]
        for path in sorted(runner.ws.rglob("*")):
            if not path.is_file() or path in runner.placed or path.suffix == ".zip":
                continue  # a file the test placed there, or an export package
            texts.append((str(path.relative_to(runner.ws)), path.read_bytes().decode("latin-1")))
        texts += [("state store", row) for row in _dump_store(runner)]
    leaks = [
        f"{raw!r} in {where}"
        for where, text in texts
        for raw in workload.RAW
        if raw.lower() in text.lower()
    ]
    return len(texts), sorted(set(leaks))


def grep_now(runners: list[workload.Runner], test: str) -> None:
    """Greps these runners now (a test whose state store is dropped at its end calls it)."""
    try:
        searched, leaks = grep(runners)
    finally:
        for runner in runners:
            runner.dirty = False
            runner.outputs.clear()
    row = ROWS.setdefault(GREP_ROW, Row())
    row.trials += searched
    if leaks:
        row.failures.append(f"{test}: {leaks[0]}")
        pytest.fail(f"raw identifiers leaked: {leaks}")


@pytest.fixture(autouse=True)
def _grep_outputs(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test, every runner used since the last grep (fixtures' runners too)."""
    yield
    runners = [r for r in workload.Runner.live if r.dirty]
    if runners:
        grep_now(runners, request.node.name)


# -- the table ------------------------------------------------------------------------------


def table(rows: dict[str, Row]) -> list[str]:
    header = ("what was tried", "trials", "held", "detail")
    body = []
    for label, row in rows.items():
        if row.failures:
            held, detail = "NO", "; ".join(row.failures[:2])
        elif not row.trials:  # a row skipped entirely (say, no PostgreSQL) did not hold
            held, detail = "NO", "not run: " + ("; ".join(row.skips[:1]) or "deselected")
        else:
            held, detail = "yes", "; ".join(row.details)
        body.append((label, str(row.trials), held, detail))
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return [line(header), rule, *(line(r) for r in body)]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    rows = {k: v for k, v in ROWS.items() if k != GREP_ROW}
    if not rows:
        return
    if GREP_ROW in ROWS:
        rows[GREP_ROW] = ROWS[GREP_ROW]
        rows[GREP_ROW].details = [f"{len(workload.RAW)} identifiers; none found"]
    size = "full size" if FULL else "reduced size (DSR_FAULTS_FULL=1 for full)"
    terminalreporter.section(f"fault suite: what was tried and what held ({size})")
    for line in table(rows):
        terminalreporter.write_line(line)
