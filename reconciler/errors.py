"""The one root error type and its kinds.

Expected errors derive from `DsrError`; the CLI boundary prints them as one line each and
exits 1. Anything else is a bug and is reported with its traceback. This module must not
print or exit.
"""

from __future__ import annotations

from dataclasses import dataclass


class DsrError(Exception):
    """An expected, user-facing error: one clear line, exit 1."""


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem in one input file: `file:line: field: message`."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class ValidationFailed(DsrError):
    """The workspace is invalid; carries every problem found, not just the first."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=lambda d: (d.file, d.line or 0, d.field))
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class ConnectorError(DsrError):
    """A system could not be reached or queried."""

    def __init__(self, system: str, message: str, *, transient: bool = False) -> None:
        self.system = system
        self.detail = message  # without the system's name, for messages that already say it
        self.transient = transient
        super().__init__(f"{system}: {message}")


class LockTimeout(DsrError):
    """Another run holds the state lock and did not release it in time."""


class Interrupted(DsrError):
    """The run was stopped (Ctrl-C, SIGTERM) at an action boundary: exit 130."""


class StalePlan(DsrError):
    """A saved plan no longer matches the actual or desired state it was made from."""
