"""Withholding values from what dsr stores or prints: a string type that masks itself, and the
scrubbing of error messages.

`Sensitive` carries personal data and secrets through the code: printed, formatted or logged
it shows `***`; only `.reveal()` gives the value, to the code that must use it.

A database's or a refresh job's error message can quote the value that failed (an e-mail
address in a duplicate-key error, a phone number in a type error). Such messages end up in
the audit log, which is never erased, so whatever may be a value is withheld first. Pure.
"""

from __future__ import annotations

import re


class Sensitive(str):
    """A string holding personal data or a secret; it masks itself when printed or logged.

    The raw value is still available with `.reveal()` (and `str` operations) for the code
    that must use it: bound SQL parameters, the HMAC, an export file.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        return "Sensitive('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def reveal(self) -> str:
        return str.__str__(self)


_PATTERNS = (
    (re.compile(r"'(?:[^'\\]|\\.|'')*'"), "'…'"),  # quoted literals (and quoted names)
    (re.compile(r'"(?:[^"\\]|\\.)*"'), '"…"'),
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "<e-mail withheld>"),
    (re.compile(r"\+?\d[\d ()./-]{5,}\d"), "<number withheld>"),
)


def withhold_values(text: str) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
