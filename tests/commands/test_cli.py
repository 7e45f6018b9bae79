"""The command line's start: what `import reconciler.cli` loads, and what `dsr --help` lists.

Each check runs a fresh interpreter, since this test session has long imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from reconciler.cli import COMMANDS, cli


def _imported_after(code: str) -> set[str]:
    probe = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_starting_the_cli_imports_no_database_driver_nor_deepdiff() -> None:
    loaded = _imported_after("import reconciler.cli")
    assert {"psycopg", "pymysql", "deepdiff"}.isdisjoint(loaded)
    assert not {m for m in loaded if m.startswith("reconciler.commands.")}


def test_a_command_loads_only_its_own_module() -> None:
    code = (
        "from reconciler.cli import cli\n"
        "try:\n"
        "    cli.main(['plan', '--help'], prog_name='dsr')\n"
        "except SystemExit:\n"
        "    pass"
    )
    loaded = _imported_after(code)
    assert "reconciler.commands.plan" in loaded
    assert "reconciler.commands.apply" not in loaded
    assert {"psycopg", "pymysql", "deepdiff"}.isdisjoint(loaded)
    # The SQL pushdown's dialects are loaded when a server's query is built, not at start.
    assert {"sqlalchemy.dialects.postgresql", "sqlalchemy.dialects.mysql"}.isdisjoint(loaded)


def test_help_lists_every_command_with_its_short_help() -> None:
    out = CliRunner().invoke(cli, ["--help"]).output
    listed = out.split("Commands:")[1].splitlines()
    assert sorted(line.split()[0] for line in listed if line.strip()) == sorted(COMMANDS)
    for line in listed:
        if line.strip():
            assert len(line.split()) > 1, f"no short help: {line!r}"
