"""Contoso's refresh job, as the CI tests' data map names it: `python contoso_refresh.py SYSTEM
SYSTEMS_DIR` rebuilds the demo platform SYSTEM (insights or apps) from the databases under
SYSTEMS_DIR/state/demo/.

It belongs to Contoso's systems, not to dsr: it runs with the interpreter of the dsr repository
(the one running the tests), never with the job's venv, which holds only the dsr-reconciler
wheel. With CONTOSO_REFRESH_GATE set (a path), it first creates GATE.waiting and waits for GATE
to exist, at most two minutes: a test holds an apply there, inside its lock, to kill it.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: demo/

from demo.contoso import refresh  # noqa: E402

GATE_SECONDS = 120


def main() -> None:
    system, systems_dir = sys.argv[1], Path(sys.argv[2])
    gate = os.environ.get("CONTOSO_REFRESH_GATE")
    if gate:
        Path(f"{gate}.waiting").write_text(str(os.getpid()))
        deadline = time.monotonic() + GATE_SECONDS
        while not Path(gate).exists() and time.monotonic() < deadline:
            time.sleep(0.1)
    refresh(systems_dir, system)
    print(f"refreshed {system}")


if __name__ == "__main__":
    main()
