"""Finding data subjects in the systems of the data map: one pass per table for all of them.

A request file holds only keyed hashes, so a row matches when the keyed hash of its
normalised identity value equals one of the request's hashes. Identity tables are streamed
once each (memory bounded by the batch size), hashing each value once and looking it up
for every pending subject together; tables that reach a subject through a foreign key are
then read with batched `IN (...)` queries on the parents' matched keys, pushed to the
database. Raw values live only in the loop's local variables: what leaves this module is
primary keys, counts and booleans. This module must not write to any system.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.connectors import Connector
from reconciler.connectors.schema import ForeignKeyInfo, SchemaInfo
from reconciler.errors import ConnectorError
from reconciler.identity import IdentityKey, hash_identity
from reconciler.masking import is_masked
from reconciler.model import (
    Completed,
    Desired,
    ErasureStrategy,
    Match,
    RequestType,
    SubjectKind,
    System,
    Table,
    TableKind,
)


@dataclass(frozen=True, slots=True)
class Subject:
    request_id: str
    identities: tuple[tuple[str, str], ...]  # (type, keyed hash)
    systems: tuple[str, ...] | None  # None: every system

    def in_scope(self, system: str) -> bool:
        return self.systems is None or system in self.systems


def erasure_subjects(desired: Desired, completed: Mapping[str, Completed]) -> list[Subject]:
    """Every subject whose erasure is desired: open requests and completed ones (tombstones),
    even when their request file is gone."""
    out: dict[str, Subject] = {}
    for c in completed.values():
        if c.subject_kind == SubjectKind.CUSTOMER.value:
            out[c.request_id] = Subject(c.request_id, c.identities, c.systems)
    for r in desired.requests.values():
        if r.type is not RequestType.ERASURE or r.subject_kind is not SubjectKind.CUSTOMER:
            continue
        if r.cancelled and r.id not in completed:
            out.pop(r.id, None)
            continue
        out[r.id] = Subject(r.id, tuple((i.type, i.hash) for i in r.identities), r.systems)
    return [out[k] for k in sorted(out)]


@dataclass(frozen=True, slots=True)
class SystemFindings:
    schema: SchemaInfo | None
    matches: dict[tuple[str, str], Match]
    error: str | None = None


def find_subjects(
    system: System, conn: Connector, subjects: list[Subject], key: IdentityKey
) -> SystemFindings:
    """Reflects the system's schema and finds every subject's rows in every mapped table."""
    here = [s for s in subjects if s.in_scope(system.name)]
    if not here or not system.tables:
        return SystemFindings(None, {})
    try:
        schemas = {t.rpartition(".")[0] or None for t in system.tables}
        schema = conn.reflect(schemas)
        return SystemFindings(schema, _scan_system(system, conn, here, key, schema))
    except ConnectorError as exc:
        return SystemFindings(None, {}, error=str(exc))


def _scan_system(
    system: System,
    conn: Connector,
    subjects: list[Subject],
    key: IdentityKey,
    schema: SchemaInfo,
) -> dict[tuple[str, str], Match]:
    index: dict[tuple[str, str], set[str]] = defaultdict(set)  # (type, hash) -> requests
    for s in subjects:
        for pair in s.identities:
            index[pair].add(s.request_id)

    # Columns whose values children need: data-map links and database foreign keys.
    needed: dict[str, set[str]] = defaultdict(set)
    for t in system.tables.values():
        if t.subject:
            needed[t.subject.table].add(t.subject.references)
    incoming: dict[str, list[ForeignKeyInfo]] = defaultdict(list)
    for fk in schema.foreign_keys:
        if fk.referred_table in system.tables and len(fk.columns) == 1:
            incoming[fk.referred_table].append(fk)
            needed[fk.referred_table].add(fk.referred_columns[0])

    # per (table, column): value -> requests whose matched rows hold it
    values: dict[tuple[str, str], dict[Any, set[str]]] = defaultdict(lambda: defaultdict(set))
    matches: dict[tuple[str, str], Match] = {}
    for table in parents_first(system.tables):
        spec = system.tables[table]
        if spec.kind is TableKind.AUDIT_LOG or not spec.primary_key:
            continue
        if table not in schema.tables:
            raise ConnectorError(system.name, f"table {table} (in the data map) does not exist")
        extra = sorted(needed[table] | set(spec.mask))
        found: dict[str, set[Any]] = defaultdict(set)
        unmasked: dict[str, set[Any]] = defaultdict(set)
        for pk, reqs, row in _rows_of(spec, conn, index, values, extra, key):
            for r in reqs:
                found[r].add(pk)
                if spec.mask and not all(is_masked(m, row[c]) for c, m in spec.mask.items()):
                    unmasked[r].add(pk)
                for col in needed[table]:
                    if row[col] is not None:
                        values[(table, col)][row[col]].add(r)
        refs = _references(conn, incoming[table], values, table) if found else {}
        for r, keys in found.items():
            matches[(r, table)] = Match(
                keys=frozenset(keys),
                pending=frozenset(_pending(spec, keys, unmasked[r])),
                referenced_by=refs.get(r, {}),
            )
    return matches


def _rows_of(
    spec: Table,
    conn: Connector,
    index: Mapping[tuple[str, str], set[str]],
    values: Mapping[tuple[str, str], Mapping[Any, set[str]]],
    extra: list[str],
    key: IdentityKey,
) -> Iterable[tuple[Any, set[str], dict[str, Any]]]:
    """(primary key, matching requests, the row's needed columns) for each matching row."""
    assert spec.primary_key
    if spec.identities:
        idents = sorted(spec.identities.items())
        cols = [spec.primary_key, *(c for _, c in idents), *extra]
        for batch in conn.scan(spec.name, cols):
            for raw in batch:
                row = dict(zip(cols, raw, strict=True))
                reqs: set[str] = set()
                for kind, col in idents:
                    value = row[col]
                    if value is None or value == "":
                        continue
                    reqs |= index.get((kind, hash_identity(kind, str(value), key)), set())
                if reqs:
                    yield row[spec.primary_key], reqs, row
    elif spec.subject:
        link = spec.subject
        by_value = values.get((link.table, link.references), {})
        if not by_value:
            return
        cols = list(dict.fromkeys([spec.primary_key, link.column, *extra]))
        for raw in conn.select_where_in(spec.name, cols, link.column, list(by_value)):
            row = dict(zip(cols, raw, strict=True))
            yield row[spec.primary_key], set(by_value.get(row[link.column], ())), row


def _references(
    conn: Connector,
    fks: list[ForeignKeyInfo],
    values: Mapping[tuple[str, str], Mapping[Any, set[str]]],
    table: str,
) -> dict[str, dict[str, int]]:
    """Per request, per `child.column`: rows that reference this table's matched rows."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for fk in fks:
        by_value = values.get((table, fk.referred_columns[0]), {})
        if not by_value:
            continue
        col = fk.columns[0]
        for (ref,) in conn.select_where_in(fk.table, [col], col, list(by_value)):
            for r in by_value.get(ref, ()):
                name = f"{fk.table}.{col}"
                out[r][name] = out[r].get(name, 0) + 1
    return out


def _pending(spec: Table, keys: set[Any], unmasked: set[Any]) -> set[Any]:
    if spec.kind is TableKind.SYSTEM_LOG or spec.erasure is ErasureStrategy.DELETE:
        return keys
    if spec.erasure is ErasureStrategy.MASK:
        return unmasked
    return set()


def parents_first(tables: Mapping[str, Table]) -> list[str]:
    """Tables ordered so that every table comes after the table its subject link points to."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in seen or name in trail or name not in tables:
            return
        link = tables[name].subject
        if link is not None:
            visit(link.table, (*trail, name))
        seen.add(name)
        order.append(name)

    for name in sorted(tables):
        visit(name, ())
    return order
