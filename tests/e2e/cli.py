"""Driving the `dsr` command in-process, as the end-to-end tests do."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner, Result

from reconciler.cli import cli


def dsr(ws: Path, *args: str, input: str | None = None) -> Result:
    """`dsr -C ws ARGS`, exceptions raised rather than caught."""
    return CliRunner().invoke(cli, ["-C", str(ws), *args], input=input, catch_exceptions=False)


def file_request(ws: Path, kind: str, email: str, rid: str, *extra: str) -> None:
    """`dsr new KIND` for the subject at `email`, given on stdin as users do; must succeed."""
    result = dsr(
        ws,
        "new",
        kind,
        "--email",
        "-",
        "--requested-by",
        "dpo@x.example",
        "--id",
        rid,
        *extra,
        input=email,
    )
    assert result.exit_code == 0, result.output
