"""`dsr-no-raw-identifiers`: refuse raw e-mail addresses and phone numbers in request files.

A request names its subject by keyed hashes only: `dsr new` writes nothing else. A raw
identifier added by hand (a note in `legal_hold:`, a comment, a pasted address) would put
personal data into the git history, where no erasure reaches it. Only the fields naming the
people who act on a request may hold an address: `requested_by:` and an approval's `by:`.

Each finding is printed as `file:line: ...`, naming the field but never the value: this must
never print what it matched, or the check would copy the address into CI logs. Exit 0 when
every file is clean, 1 otherwise. Used as a pre-commit hook on policies/requests/*.yaml; it
checks whatever files it is given, and reads nothing else.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import yaml

ALLOWED_FIELDS = frozenset({"requested_by", "by"})
ALLOWED_NOTE = "only requested_by and by may hold one"

EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)
# A run of digits with the separators people write in phone numbers: +44 20 7946 0958,
# (555) 123-4567, 0049-30-1234567. Not preceded by a word character, '-' or '.', so that the
# digits inside request ids (DSR-20261129-7KQ2), hashes and version numbers do not count.
PHONE = re.compile(r"(?<![\w.+-])(?:\+|00)?\(?\d[\d \t().-]*\d(?![\w-])")
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True, slots=True)
class Span:
    start: int  # character offsets into the file's text
    end: int
    field: str  # dotted path of the value, e.g. approvals.0.by; "" for a key


@dataclass(frozen=True, slots=True)
class Finding:
    line: int  # 1-based
    kind: str  # "e-mail address" | "phone number"
    where: str


def looks_like_phone(text: str) -> bool:
    digits = sum(c.isdigit() for c in text)
    if not 7 <= digits <= 15 or DATE.fullmatch(text):
        return False
    separated = text[0] in "+(" or text.startswith("00") or any(c in text for c in " \t().-")
    return separated or digits >= 9


def scalar_spans(node: yaml.Node, path: tuple[str, ...] = ()) -> Iterator[Span]:
    """The character span of every scalar in the document, with its field path."""
    if isinstance(node, yaml.ScalarNode):
        yield Span(node.start_mark.index, node.end_mark.index, ".".join(path))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from scalar_spans(item, (*path, str(i)))
    elif isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else "?"
            if isinstance(key, yaml.ScalarNode):
                yield Span(key.start_mark.index, key.end_mark.index, "")
            yield from scalar_spans(value, (*path, str(name)))


def check_text(text: str) -> list[Finding]:
    try:
        spans = [s for doc in yaml.compose_all(text) if doc for s in scalar_spans(doc)]
    except yaml.YAMLError:
        spans = []  # not YAML: every match is reported (dsr validate reports the syntax)
    line_starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]

    def line_of(offset: int) -> int:
        lo, hi = 0, len(line_starts)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if line_starts[mid] <= offset else (lo, mid)
        return lo + 1

    def where(start: int, end: int) -> str | None:
        """None when allowed; otherwise where the match is, for the message."""
        inside = [s for s in spans if s.start <= start and end <= s.end]
        if not inside:
            return "a comment (outside any value)"
        span = min(inside, key=lambda s: s.end - s.start)
        if not span.field:
            return "a key"
        if span.field.rsplit(".", 1)[-1] in ALLOWED_FIELDS:
            return None
        return f"field {span.field}"

    findings = []
    for kind, pattern in (("e-mail address", EMAIL), ("phone number", PHONE)):
        for m in pattern.finditer(text):
            if kind == "phone number" and not looks_like_phone(m.group()):
                continue
            place = where(m.start(), m.end())
            if place is not None:
                findings.append(Finding(line_of(m.start()), kind, place))
    return sorted(findings, key=lambda f: (f.line, f.kind))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dsr-no-raw-identifiers",
        description="Refuse raw e-mail addresses and phone numbers in dsr request files "
        "(allowed only in requested_by: and by:).",
    )
    parser.add_argument("files", nargs="*", help="request files (policies/requests/*.yaml)")
    args = parser.parse_args(argv)
    failed = 0
    for name in args.files:
        try:
            with open(name, encoding="utf-8") as handle:
                text = handle.read()
        except (OSError, UnicodeDecodeError) as exc:
            print(f"{name}: cannot read as UTF-8 text ({type(exc).__name__})")
            failed += 1
            continue
        findings = check_text(text)
        for f in findings:
            print(f"{name}:{f.line}: raw {f.kind} in {f.where}; {ALLOWED_NOTE}")
        failed += bool(findings)
    if failed:
        print(
            f"{failed} request file{'s' if failed != 1 else ''} with raw identifiers: name the "
            "subject by keyed hash only (`dsr new ... --email -` reads it from stdin)"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
