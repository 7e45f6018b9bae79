"""`make demo` as a user runs it, in a scratch copy of the demo workspace: it must converge
to a plan with no changes, and no raw identifier of the subjects it erased may appear in
anything dsr printed or wrote (request files, state store, audit log)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

from reconciler.outbox.package import verify_package

REPO = Path(__file__).resolve().parents[2]


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
                "demo",
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
        for which in ("crm-only", "both", "export", "export-2")
    ]
    assert all("@" in s for s in subjects) and len(set(subjects)) == 4
    erased, exported = subjects[:2], subjects[2:]

    # One export was approved by a tenant admin and built; the other waits for approval.
    package = ws / "state/outbox/DSR-DEMO-0004.zip"
    assert verify_package(package) == []
    assert sorted(p.name for p in (ws / "state/outbox").iterdir()) == ["DSR-DEMO-0004.zip"]
    with zipfile.ZipFile(package) as z:
        customers = json.loads(z.read("crm/customers.json"))
    assert [c["email"] for c in customers] == [exported[0]]
    # The platform user erased in the demo has no user data left.
    with sqlite3.connect(ws / "state/demo/insights.db") as db:
        assert db.execute(
            "SELECT count(*) FROM segments WHERE created_by = 'dave@contoso.example'"
        ).fetchone() == (0,)

    # The late request and the mistyped one end honestly, and the report says so.
    status = json.loads(
        subprocess.run(
            [sys.executable, "-m", "reconciler", "status", "--format", "json"],
            cwd=ws,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    by_id = {r["id"]: r for r in status["requests"]}
    late, typo = by_id["DSR-DEMO-0006"], by_id["DSR-DEMO-0007"]
    assert (late["state"], late["days_left"]) == ("completed", None)
    assert late["late_by_days"] > 0
    assert (typo["state"], typo["late_by_days"]) == ("no_data_found", 0)
    report = (ws / "state/report.html").read_text()
    assert "DSR-DEMO-0006" in report and "DSR-DEMO-0007" in report

    written = [output, report]
    for path in (ws / "policies").rglob("*.yaml"):
        written.append(path.read_text())
    with sqlite3.connect(ws / "state/dsr.db") as db:
        for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
            written += [repr(row) for row in db.execute(f'SELECT * FROM "{table}"')]
    blob = "\n".join(written).lower()
    for email in subjects:  # outside the outbox, no subject's address appears anywhere
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
                assert not values & {s.lower() for s in erased}, (system, q)


def test_make_demo_runs_again_after_the_readme_walkthrough(tmp_path: Path) -> None:
    """The README tells a new user to try dsr in the demo workspace after `make demo`: the
    commands it shows (plan, status, audit, filing an erasure and an export of their own) must
    not break the next `make demo`."""
    ws = tmp_path / "ws"
    (ws / "policies").mkdir(parents=True)
    shutil.copy(REPO / "dsr.yaml", ws)
    for name in ("systems.yaml", "access.yaml"):
        shutil.copy(REPO / "policies" / name, ws / "policies")
    make = ["make", "--no-print-directory", "-C", str(REPO), "demo", f"WS={ws}"]
    first = subprocess.run(make, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stdout + first.stderr
    dsr = [str(REPO / ".venv/bin/dsr"), "-C", str(ws)]
    for args, stdin in (
        (["plan"], None),
        (["status"], None),
        (["audit", "show"], None),
        (["new", "erasure", "--email", "-", "--requested-by", "dpo@contoso.example"], "a@x.io"),
        (["new", "export", "--email", "-", "--requested-by", "dpo@contoso.example"], "a@x.io"),
        (["apply", "--auto-approve"], None),
    ):
        step = subprocess.run(dsr + args, input=stdin, capture_output=True, text=True)
        assert step.returncode == 0, (args, step.stdout + step.stderr)
    second = subprocess.run(make, capture_output=True, text=True, check=False)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "audit log intact" in second.stdout
