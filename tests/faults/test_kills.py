"""SIGKILL during `dsr apply`, for real, at every named kill point and at random ones; then
apply again until nothing is left to do, and the result must be the uninterrupted run's.

The workload (`workload.py`): two erasures (one completes with a retained table, one waits on
the shop's owner), an approved export and three permission changes. After each kill: the
systems' rows and the request states equal the reference run's; one receipt per completed
request; one package per export, built once; `dsr audit verify` passes.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from faults.conftest import FULL, SEED, Fault
from faults.workload import REPO_ROOT, Runner, build_template, copy_of, package_is_sound
from reconciler.faults import POINTS

COUNTER = REPO_ROOT / "tests/faults/count_points.py"
RANDOM_TRIALS = 20 if FULL else 2
# make test kills where a kill once lost or doubled a record; make faults at every point.
QUICK = {
    "change_done": ("first",),  # a package built, its record and build record not yet written
    "receipt": ("first",),  # the last change done; the requests' states not yet recorded
    "journal_started": ("last",),  # an erasure's rows all gone, its receipt not yet written
    "package_rename": ("first",),
}


@dataclass(frozen=True)
class Outcome:
    rows: dict[str, list[tuple[Any, ...]]]
    states: dict[str, str]
    receipts: Counter[str]
    builds: Counter[str]
    packages: list[str]


def outcome(runner: Runner) -> Outcome:
    return Outcome(
        runner.system_rows(),
        runner.request_states(),
        runner.receipts(),
        runner.builds(),
        runner.packages(),
    )


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Runner:
    return build_template(tmp_path_factory.mktemp("template"))


@pytest.fixture(scope="module")
def reference(
    template: Runner, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Outcome, dict[str, int]]:
    """The uninterrupted run's result, and how often it passes each kill point."""
    runner = copy_of(template, tmp_path_factory.mktemp("reference"))
    counts = runner.ws.parent / "counts.json"
    code, out, err = runner.run(
        "apply", "--auto-approve", env={"DSR_FAULTS_COUNT": str(counts)}, script=COUNTER
    )
    assert code == 0, out + err
    runner.converge()
    passes: dict[str, int] = json.loads(counts.read_text())
    done = outcome(runner)
    assert done.states == {"DSR-F-ANA": "completed", "DSR-F-BEA": "waiting", "DSR-F-CARL": "ready"}
    assert set(passes) == set(POINTS), f"the workload never passes {set(POINTS) - set(passes)}"
    return done, passes


def kill_and_recover(
    template: Runner, reference: Outcome, root: Path, point: str, nth: int
) -> None:
    runner = copy_of(template, root)
    code, out, err = runner.run("apply", "--auto-approve", env={"DSR_KILL_AT": f"{point}:{nth}"})
    assert code == -9, f"not killed at {point}:{nth} (exit {code}): {err[-300:]}"
    runner.converge()
    after = outcome(runner)
    assert after.rows == reference.rows, f"{point}:{nth}: the systems' rows differ"
    assert after.states == reference.states, f"{point}:{nth}: request states differ"
    assert after.receipts == reference.receipts == Counter({"DSR-F-ANA": 1}), after.receipts
    assert after.builds == Counter({"DSR-F-CARL": 1}), after.builds
    assert after.packages == ["DSR-F-CARL.zip"], after.packages
    assert package_is_sound(runner.ws / "state/outbox/DSR-F-CARL.zip")
    verified = runner.verify()
    assert verified.exit_code == 0, verified.output


def passes_to_kill(point: str, passes: int) -> list[int]:
    """Which passes of `point` to kill at: the first and the last at full size; reduced, the
    ones that once duplicated or lost a record."""
    if FULL:
        return sorted({1, passes})
    return sorted({1 if which == "first" else passes for which in QUICK[point]})


@pytest.mark.fault("SIGKILL at every named kill point during apply, then apply to the end")
@pytest.mark.parametrize("point", POINTS if FULL else sorted(QUICK))
def test_a_kill_at_a_named_point_converges(
    template: Runner,
    reference: tuple[Outcome, dict[str, int]],
    tmp_path: Path,
    fault: Fault,
    point: str,
) -> None:
    done, passes = reference
    for nth in passes_to_kill(point, passes[point]):
        kill_and_recover(template, done, tmp_path / str(nth), point, nth)
        fault.tried(
            detail=f"{len(POINTS) if FULL else len(QUICK)} of {len(POINTS)} points, "
            f"{'first and last pass' if FULL else 'chosen passes'}; rows and states as "
            "uninterrupted, 1 receipt, 1 package, audit verify ok"
        )


@pytest.mark.fault("SIGKILL at random points (seeded point and pass), then apply to the end")
@pytest.mark.parametrize("trial", range(RANDOM_TRIALS))
def test_a_kill_at_a_random_point_converges(
    template: Runner,
    reference: tuple[Outcome, dict[str, int]],
    tmp_path: Path,
    fault: Fault,
    trial: int,
) -> None:
    done, passes = reference
    rng = random.Random(f"{SEED}:{trial}")
    point = rng.choice(sorted(passes))
    nth = rng.randint(1, passes[point])
    kill_and_recover(template, done, tmp_path, point, nth)
    fault.tried(detail=f"seed {SEED}; as uninterrupted each time")
