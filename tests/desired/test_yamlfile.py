"""Parsing policy files: the one pass over libyaml's events gives exactly what the careful path
(screen, compose, index, construct) gives: the same data, lines and duplicate-key problems,
and every file it does not handle itself goes the careful way, with the same errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from reconciler.desired import diagnostics, yamlfile
from reconciler.desired.yamlfile import parse_yaml
from reconciler.errors import Diagnostic

REPO_ROOT = Path(__file__).resolve().parents[2]


def careful(text: str) -> tuple[Any, Any, dict[Any, int], list[Diagnostic]]:
    """The node-tree path the one pass replaces: data, plain data, lines, duplicates."""
    lines: dict[Any, int] = {(): 1}
    duplicates: list[Diagnostic] = []
    yamlfile._screen(text)
    data = yamlfile._load(text, "f.yaml", lines, duplicates)
    return data, yamlfile._plain(data), lines, duplicates


TEXTS = [
    "",
    "# only a comment\n",
    "---\n",
    "a: 1\n",
    "on: yes\noff: no\ny: n\n",
    "when: 2026-11-20\nwhen_quoted: '2026-11-20'\nat: 2026-11-20T10:00:00Z\n",
    "n: null\ntilde: ~\nempty:\nf: 1.5\ninf: .inf\nhex: 0x1f\noct: 0o17\nneg: -3\nplus: +4\n",
    "t: true\nT: True\nquoted: 'true'\nnum: '12'\n",
    "list:\n  - a\n  - 2\n  - [x, 'y', 3]\n  - {k: v, n: 1}\n  -\n  - - nested\n",
    "users:\n  u@example.com: {roles: [admin, viewer], protected: true}\n",
    "a: 1\nb: 2\na: 3\nb:\n  c: 4\na: 5\n",
    "k: |\n  block\n  text\nf: >\n  folded\n  text\n",
    "'quoted key': 1\n\"dq\": 2\n? explicit\n: 3\n",
    "s: !!str 12\ni: !!int '7'\nb: !!binary aGVsbG8=\n",
    "m: !!map {a: 1}\nq: !!seq [1]\n",
    "merge:\n  <<: {a: 1}\n  b: 2\n",
    "top\n",
    "- a\n- b: 1\n  c: [2]\n",
    "key with spaces: value, with comma\nurl: http://x.example/a?b=c#d\n",
    "= : 1\n. : 2\n",
]


@pytest.mark.parametrize("text", TEXTS)
def test_one_pass_equals_the_careful_path(text: str) -> None:
    doc, duplicates = parse_yaml(text, "f.yaml")
    assert doc is not None
    data, plain, lines, expected_duplicates = careful(text)
    assert doc.data == data
    assert doc.plain == plain
    assert [type(v) for v in _leaves(doc.data)] == [type(v) for v in _leaves(data)]
    assert doc.lines == lines
    assert duplicates == expected_duplicates


def _leaves(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _leaves(item)]
    if isinstance(value, list):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value]


def test_a_key_given_three_times_names_its_first_line_each_time() -> None:
    _, duplicates = parse_yaml("a: 1\nb: 2\na: 3\na: 4\n", "f.yaml")
    assert [str(d) for d in duplicates] == [
        "f.yaml:3: a: duplicate key 'a' (first on line 1)",
        "f.yaml:4: a: duplicate key 'a' (first on line 1)",
    ]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("".join(f"k{i}: v{i}\n" for i in range(500)) + "late: &x 1\n", 501),
        ("a:\n  b: [1, 2]\n  c: *x\n", 3),
        ("a:\n  - x\n  - &y {k: v}\n", 3),
    ],
    ids=["anchor-after-500-lines", "alias-in-mapping", "anchor-in-list"],
)
def test_anchors_and_aliases_are_refused_at_their_line(text: str, line: int) -> None:
    doc, found = parse_yaml(text, "f.yaml")
    assert doc is None
    assert [str(d) for d in found] == [
        f"f.yaml:{line}: invalid YAML: anchors and aliases (&name, *name) are not allowed in "
        "policy files: write the values out"
    ]


def test_an_invalid_date_is_one_line_at_its_line() -> None:
    doc, found = parse_yaml("a: 1\nreceived: 2026-02-30\n", "f.yaml")
    assert doc is None
    assert [str(d) for d in found] == [
        "f.yaml:2: invalid YAML: '2026-02-30' is not a valid date (day is out of range for month)"
    ]


def test_each_schema_is_compiled_once_for_any_number_of_files() -> None:
    diagnostics._checker.cache_clear()
    diagnostics._validator.cache_clear()
    for i in range(20):
        doc, _ = parse_yaml(f"roles: [admin]\nusers: {{u{i}: {{roles: [admin]}}}}\n", "a.yaml")
        assert doc is not None and diagnostics.validate(doc, "access") == []
        bad, _ = parse_yaml(f"roles: [admin]\nusers: {{u{i}: {{role: admin}}}}\n", "a.yaml")
        assert bad is not None and diagnostics.validate(bad, "access")
    assert diagnostics._checker.cache_info().misses == 1
    assert diagnostics._validator.cache_info().misses == 1


def test_a_valid_workspace_loads_without_importing_jsonschema() -> None:
    """The `jsonschema` package (a tenth of a second to import) is for files with problems;
    `dsr plan` on a valid workspace starts without it."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "import reconciler.cli\n"
        "from reconciler.desired.load import load_workspace\n"
        f"load_workspace(Path({str(REPO_ROOT)!r}))\n"
        "print('jsonschema' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
