"""`dsr validate` and `dsr plan` say how each identity table is matched, on the demo
workspace (SQLite: streamed, and why); `match:` in systems.yaml changes it, and asking for
pushdown where the database cannot hash is a problem with file:line."""

from __future__ import annotations

import json
from pathlib import Path

from e2e.cli import dsr

RAW_EMAIL = "ana.matching@example.com"
SQLITE = "stream (SQLite cannot compute SHA-256 in SQL)"


def _set_match(ws: Path, system: str, mode: str) -> None:
    path = ws / "policies" / "systems.yaml"
    text = path.read_text()
    assert f"\n  {system}:\n" in text
    path.write_text(text.replace(f"\n  {system}:\n", f"\n  {system}:\n    match: {mode}\n", 1))


def test_validate_says_how_each_identity_table_is_matched(demo_workspace: Path) -> None:
    result = dsr(demo_workspace, "validate")
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if x.startswith("Matched "))
    assert line.startswith(f"Matched by {SQLITE}: ")
    assert "crm.customers" in line and "shop.customers" in line
    as_json = json.loads(dsr(demo_workspace, "validate", "--format", "json").output)
    assert as_json["matching"]["crm"] == {"customers": SQLITE}


def test_match_stream_is_said(demo_workspace: Path) -> None:
    _set_match(demo_workspace, "crm", "stream")
    result = dsr(demo_workspace, "validate")
    assert result.exit_code == 0, result.output
    assert "by stream (match: stream): crm.customers" in result.output


def test_pushdown_where_the_database_cannot_hash_is_a_problem(demo_workspace: Path) -> None:
    _set_match(demo_workspace, "crm", "pushdown")
    result = dsr(demo_workspace, "validate")
    assert result.exit_code == 1
    assert (
        "policies/systems.yaml:9: systems.crm.match: match: pushdown, but SQLite" in result.output
    )
    assert "Traceback" not in result.output


def test_plan_says_how_each_identity_table_was_matched(demo_workspace: Path) -> None:
    filed = dsr(
        demo_workspace, "new", "erasure", "--email", "-", "--requested-by", "me", input=RAW_EMAIL
    )
    assert filed.exit_code == 0, filed.output
    result = dsr(demo_workspace, "plan")
    lines = result.output.splitlines()
    line = next(x for x in lines if x.startswith("Matched "))
    assert lines[lines.index(line) - 1].startswith("dsr plan · ")  # just under the header
    assert "crm.customers" in line and SQLITE in line
    markdown = dsr(demo_workspace, "plan", "--format", "markdown").output
    assert f"Matched by {SQLITE}" in markdown
    assert RAW_EMAIL not in result.output + markdown
