"""What dsr reports on stderr while it works: progress, warnings and errors, as lines for
people or, with `--log-format json`, as one JSON object per line for log collectors.

Nothing here may carry a raw identifier or a row value: events hold names, counts and hashes,
like everything else dsr writes.
"""

from __future__ import annotations

import json as jsonlib
from datetime import UTC, datetime
from typing import Any

import click


class EventLog:
    def __init__(self, *, json: bool = False) -> None:
        self.json = json

    def event(self, kind: str, message: str, *, level: str = "info", **fields: Any) -> None:
        """One event: `kind` names it for machines, `message` says it for people."""
        if self.json:
            record = {
                "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "level": level,
                "event": kind,
                "message": message,
                **fields,
            }
            click.echo(jsonlib.dumps(record, sort_keys=False, default=str), err=True)
        elif level == "info":
            click.echo(message, err=True)
        else:
            click.echo(f"{level}: {message}", err=True)

    def info(self, message: str, **fields: Any) -> None:
        self.event("info", message, **fields)

    def warning(self, message: str, **fields: Any) -> None:
        self.event("warning", message, level="warning", **fields)

    def error(self, message: str, **fields: Any) -> None:
        self.event("error", message, level="error", **fields)
