"""Withholding values from messages that dsr stores or prints.

A database's or a refresh job's error message can quote the value that failed (an e-mail
address in a duplicate-key error, a phone number in a type error). Such messages end up in
the audit log, which is never erased, so whatever may be a value is withheld first. Pure.
"""

from __future__ import annotations

import re

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
