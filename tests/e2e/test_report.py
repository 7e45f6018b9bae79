"""`dsr report` in a real browser: Debian's headless Chromium loads the page from disk (no
network, no external assets), runs its script, and the deadline chart has one bar per open
request with its days; a screenshot is taken. The page holds no raw identifier."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from conftest import CHROMIUM_FLAGS

from demo.contoso import pick_subject

from .cli import dsr


def test_the_report_page_draws_one_bar_per_open_request_in_a_browser(
    demo_workspace: Path, chromium: str, tmp_path: Path
) -> None:
    subjects = {}
    for where, rid, received in (
        ("crm-only", "DSR-R-1", "2026-10-01"),  # overdue, not applied yet
        ("both", "DSR-R-2", None),
    ):
        subjects[rid] = pick_subject(demo_workspace, where)
        args = ["new", "erasure", "--email", "-", "--requested-by", "dpo@x.example", "--id", rid]
        if received:
            args += ["--received", received]
        assert dsr(demo_workspace, *args, input=subjects[rid]).exit_code == 0
    page = tmp_path / "report.html"
    written = dsr(demo_workspace, "report", "--out", str(page))
    assert written.exit_code == 0, written.output
    text = page.read_text()
    assert all(raw not in text for raw in subjects.values())
    assert not re.search(r"(src|href)=\"https?:", text)  # self-contained
    embedded = json.loads(
        re.search(r'<script type="application/json" id="dsr-data">(.*?)</script>', text, re.S)[1]
    )
    expected = {(b["request"], b["days_left"]) for b in embedded["deadlines"]}
    assert {r for r, _ in expected} == {"DSR-R-1", "DSR-R-2"}

    profile = tmp_path / "profile"
    dom = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    bars = {
        (m["request"], int(m["days"]))
        for m in re.finditer(
            r'<rect [^>]*data-request="(?P<request>[^"]+)" data-days="(?P<days>-?\d+)"', dom
        )
    }
    assert bars == expected  # drawn by the page's own script, in the browser
    assert 'class="bar overdue"' in dom

    shot = tmp_path / "report.png"
    subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--window-size=1100,1300",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
