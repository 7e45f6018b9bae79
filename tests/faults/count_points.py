"""Runs `dsr ARGS...` as `python -m reconciler` would, counting how often the run passes each
named kill point (`reconciler.faults.POINTS`); writes the counts as JSON to the file named by
DSR_FAULTS_COUNT. The random kill trials choose a point and a pass from these counts, so every
trial kills for real.

Usage: python tests/faults/count_points.py -C WORKSPACE apply --auto-approve
"""

from __future__ import annotations

import atexit
import json
import os
from collections import Counter

from reconciler import faults

counts: Counter[str] = Counter()
original = faults.kill_point


def counting(name: str) -> None:
    counts[name] += 1
    original(name)


# Bound before the executor and the outbox import it by name.
faults.kill_point = counting
atexit.register(
    lambda: open(os.environ["DSR_FAULTS_COUNT"], "w").write(json.dumps(dict(counts)))  # noqa: SIM115
)

from reconciler.cli import main  # noqa: E402

main()
