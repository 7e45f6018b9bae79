"""Named points where a fault test may kill dsr for real, to prove every step boundary is
crash-safe (`make faults`).

`DSR_KILL_AT=<point>[:<n>]` makes the process SIGKILL itself the n-th time (default the
first) it passes `<point>`. Unset (as always outside the fault tests) a point costs one
dictionary lookup. The points, in the order a run passes them: `run_started`,
`journal_started` (a batch of changes is journalled as started), `change_done` (the batch's
effects are in the systems, not yet audited), `audited` (its audit records, receipts and
journal entries are written, in one transaction), `package_write` (a package's partial file
is written), `package_rename` (the package is in place, not yet recorded), `verified` (one
verification passed, not yet recorded), `receipt` (a batch's receipts and tombstones are
written), `run_ended`. The executor passes each batch point once per batch (see
`apply/batches.py`).
"""

from __future__ import annotations

import os
import signal

POINTS = (
    "run_started",
    "journal_started",
    "change_done",
    "audited",
    "package_write",
    "package_rename",
    "verified",
    "receipt",
    "run_ended",
)

_passed: dict[str, int] = {}


def kill_point(name: str) -> None:
    """Dies here (SIGKILL, no clean-up) when DSR_KILL_AT names this point and pass."""
    wanted = os.environ.get("DSR_KILL_AT")
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _passed[name] = _passed.get(name, 0) + 1
    if _passed[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
