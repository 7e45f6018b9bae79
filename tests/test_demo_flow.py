"""`make demo` as a user runs it, in a scratch copy of the demo workspace: it must converge
to a plan with no changes, and no raw identifier of the subjects it erased may appear in
anything dsr printed or wrote (request files, state store, audit log)."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_make_demo_converges_without_leaking(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    (ws / "policies").mkdir(parents=True)
    shutil.copy(REPO / "dsr.yaml", ws)
    for name in ("systems.yaml", "access.yaml"):
        shutil.copy(REPO / "policies" / name, ws / "policies")
    run = subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "demo", f"WS={ws}"],
        capture_output=True,
        text=True,
        check=False,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "No changes. The actual state matches the desired state." in output
    assert "audit log intact" in output

    subjects = [
        subprocess.run(
            [
                sys.executable,
                "-m",
                "reconciler.demo",
                "pick-subject",
                "--workspace",
                str(ws),
                "--in",
                which,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for which in ("crm-only", "both")
    ]
    assert all("@" in s for s in subjects)

    written = [output]
    for path in (ws / "policies").rglob("*.yaml"):
        written.append(path.read_text())
    with sqlite3.connect(ws / "state/dsr.db") as db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            written += [repr(row) for row in db.execute(f'SELECT * FROM "{table}"')]
    blob = "\n".join(written).lower()
    for email in subjects:
        assert email.lower() not in blob
        assert email.split("@")[0].lower() not in blob

    # ... and the subjects are gone from every mapped table of every system.
    checks = {
        "crm": ["SELECT email FROM customers"],
        "shop": ["SELECT email FROM customers"],
        "insights": [
            "SELECT email FROM profiles",
            "SELECT email FROM consent",
            "SELECT actor FROM system_logs",
        ],
        "apps": ["SELECT email FROM consent_view"],
    }
    for system, queries in checks.items():
        with sqlite3.connect(ws / f"state/demo/{system}.db") as db:
            for q in queries:
                values = {str(v).strip().lower() for (v,) in db.execute(q)}
                assert not values & {s.lower() for s in subjects}, (system, q)
