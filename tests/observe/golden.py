"""Test helpers for the observe pure-step golden cases (tests only).

A case (`cases/*.yaml`) is one system's mapped `tables` in systems.yaml syntax, the `rows` of
each table as lists of mappings (tables the data map does not name may hold rows too: they
are read only through the `foreign_keys` that reference mapped tables), the `subjects` by
request id as `[type, raw value]` pairs, which `subjects_from` hashes with `KEY`, the database
`foreign_keys` as `[table, column, referred_table, referred_column]`, and what is expected:
`expect` maps `request/table` to `keys`, `pending` and `referenced_by` (default {}); a match
not listed must not exist. `xfail: reason` marks a case that records a known bug.

`match_tables` drives the pure functions of `observe/match.py` exactly as
`observe/collect.py::_match_tables` does, but hands each step the whole table instead of the
rows its query would return (match.py promises the same answer for any superset).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from reconciler.connectors.reflection import ForeignKeyInfo
from reconciler.desired.build import build_systems
from reconciler.desired.model import Table, TableKind
from reconciler.desired.order import parents_first
from reconciler.desired.schemas import load_schema
from reconciler.observe import collect
from reconciler.observe.match import (
    TableMatch,
    count_references,
    identity_matches,
    linked_requests,
)
from reconciler.observe.model import Match
from reconciler.observe.queries import columns_of
from reconciler.observe.subjects import Subject, Wanted
from reconciler.privacy.identity import IdentityKey, hash_identity

CASES_DIR = Path(__file__).parent / "cases"
KEY = IdentityKey("t1", b"observe-golden-test-key", development=False)

Rows = Mapping[str, Sequence[Mapping[str, Any]]]


def case_paths() -> list[Path]:
    return sorted(CASES_DIR.glob("*.yaml"))


CASE_KEYS = {"description", "tables", "rows", "subjects", "foreign_keys", "expect", "xfail"}


def load(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = yaml.safe_load(path.read_text())
    unknown = set(case) - CASE_KEYS
    assert not unknown, f"{path}: unknown keys {sorted(unknown)}"
    return case


def tables_from(tables: dict[str, Any]) -> dict[str, Table]:
    """A system's mapped tables from systems.yaml syntax, validated by the data map's schema."""
    system = {"role": "source", "url": "sqlite://", "tables": tables}
    jsonschema.Draft202012Validator(load_schema("systems")).validate({"systems": {"s": system}})
    return build_systems({"s": system})["s"].tables


def subjects_from(subjects: dict[str, list[list[str]]]) -> list[Subject]:
    return [
        Subject(rid, tuple((kind, hash_identity(kind, raw, KEY)) for kind, raw in pairs), None)
        for rid, pairs in sorted(subjects.items())
    ]


def foreign_keys_from(fks: list[list[str]]) -> list[ForeignKeyInfo]:
    return [
        ForeignKeyInfo(table, (column,), referred, (referred_column,), None)
        for table, column, referred, referred_column in fks
    ]


def match_tables(
    tables: Mapping[str, Table],
    rows: Rows,
    subjects: list[Subject],
    foreign_keys: Sequence[ForeignKeyInfo] = (),
) -> dict[tuple[str, str], Match]:
    """`collect._match_tables`, with each query replaced by the whole table."""
    wanted = Wanted(subjects, KEY)
    linked: dict[str, set[str]] = defaultdict(set)
    for t in tables.values():
        if t.subject:
            linked[t.subject.table].add(t.subject.references)
    incoming: dict[str, list[ForeignKeyInfo]] = defaultdict(list)
    by_link: dict[str, list[ForeignKeyInfo]] = defaultdict(list)
    for fk in foreign_keys:
        if fk.referred_table in tables and len(fk.columns) == 1:
            linked[fk.referred_table].add(fk.referred_columns[0])
            if collect._read_by_link(fk, tables):
                by_link[fk.table].append(fk)
            else:
                incoming[fk.referred_table].append(fk)

    done: dict[str, TableMatch] = {}
    refs: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for name in parents_first(tables):
        spec = tables[name]
        if spec.kind is TableKind.AUDIT_LOG or not spec.primary_key:
            continue
        found = TableMatch(spec, linked[name])
        if spec.identities:
            columns = columns_of(spec, sorted(linked[name] | set(spec.mask)))
            tuples = [tuple(row.get(c) for c in columns) for row in rows.get(name, ())]
            for row, requests in identity_matches(spec, columns, tuples, wanted):
                found.add(row, requests)
        elif spec.subject:
            parent = done.get(spec.subject.table)
            parents = parent.values.get(spec.subject.references) if parent else None
            if parents:
                for row in rows.get(name, ()):
                    found.add(row, linked_requests(spec, row, parents))
                for fk in by_link[name]:
                    pairs = [(None, row.get(fk.columns[0])) for row in rows.get(name, ())]
                    name_ = f"{fk.table}.{fk.columns[0]}"
                    count_references(name_, pairs, parents, refs[spec.subject.table])
        done[name] = found
        for fk in incoming[name] if found.keys else ():
            parents = found.values.get(fk.referred_columns[0])
            if parents:
                itself = fk.table == name
                child_key = spec.primary_key if itself else None
                pairs = [
                    (row.get(child_key) if child_key else None, row[fk.columns[0]])
                    for row in rows.get(fk.table, ())
                ]
                own = found.keys if itself else None
                count_references(f"{fk.table}.{fk.columns[0]}", pairs, parents, refs[name], own)
    matches: dict[tuple[str, str], Match] = {}
    for name, found in done.items():
        matches |= found.matches(refs[name])
    return matches


def run(case: dict[str, Any]) -> dict[tuple[str, str], Match]:
    return match_tables(
        tables_from(case["tables"]),
        case.get("rows", {}),
        subjects_from(case["subjects"]),
        foreign_keys_from(case.get("foreign_keys", [])),
    )


def as_expected(matches: Mapping[tuple[str, str], Match]) -> dict[str, dict[str, Any]]:
    """Matches in the form of a case's `expect`, keys sorted."""
    return {
        f"{rid}/{table}": {
            "keys": sorted(m.keys, key=repr),
            "pending": sorted(m.pending, key=repr),
            "referenced_by": dict(sorted(m.referenced_by.items())),
        }
        for (rid, table), m in sorted(matches.items())
    }


def expected(case: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        where: {
            "keys": sorted(e["keys"], key=repr),
            "pending": sorted(e["pending"], key=repr),
            "referenced_by": dict(sorted(e.get("referenced_by", {}).items())),
        }
        for where, e in sorted(case["expect"].items())
    }


def raw_identities(case: dict[str, Any]) -> list[str]:
    """Every raw identifier a case names for its subjects."""
    return [raw for pairs in case["subjects"].values() for _, raw in pairs]
