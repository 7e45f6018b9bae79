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
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.connectors import Connector
from reconciler.connectors.reflection import ForeignKeyInfo, SchemaInfo
from reconciler.desired.approvals import approval_status
from reconciler.desired.model import (
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
from reconciler.errors import ConnectorError
from reconciler.privacy.identity import IdentityKey, hash_identity
from reconciler.privacy.masking import is_masked


@dataclass(frozen=True, slots=True)
class Subject:
    request_id: str
    identities: tuple[tuple[str, str], ...]  # (type, keyed hash)
    systems: tuple[str, ...] | None  # None: every system
    kind: SubjectKind = SubjectKind.CUSTOMER

    def in_scope(self, system: str) -> bool:
        return self.systems is None or system in self.systems


def pending_subjects(
    desired: Desired, completed: Mapping[str, Completed], built: Collection[str]
) -> list[Subject]:
    """Every subject dsr must look for: erasures, open and completed (tombstones, even when
    their request file is gone), and approved exports not yet built."""
    out: dict[str, Subject] = {}
    for c in completed.values():
        out[c.request_id] = Subject(
            c.request_id, c.identities, c.systems, SubjectKind(c.subject_kind)
        )
    for r in desired.requests.values():
        if r.cancelled and r.id not in completed:
            out.pop(r.id, None)
            continue
        if r.type is RequestType.EXPORT and (
            r.id in built or not approval_status(r, desired.access)[0]
        ):
            continue
        identities = tuple((i.type, i.hash) for i in r.identities)
        out[r.id] = Subject(r.id, identities, r.systems, r.subject_kind)
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
    customers = [s for s in here if s.kind is SubjectKind.CUSTOMER]
    users = [s for s in here if s.kind is SubjectKind.USER]
    if not (customers and system.tables) and not (users and system.permissions):
        return SystemFindings(None, {})
    try:
        schemas = {t.rpartition(".")[0] or None for t in {**system.tables, **system.user_data}}
        schema = conn.reflect(schemas)
        matches = _scan_system(system.name, system.tables, conn, customers, key, schema)
        if users and system.permissions is not None:
            matches |= _scan_system(system.name, system.user_data, conn, users, key, schema)
            matches |= _find_roles(system, conn, users, key)
        return SystemFindings(schema, matches)
    except ConnectorError as exc:
        return SystemFindings(None, {}, error=str(exc))


def _find_roles(
    system: System, conn: Connector, users: list[Subject], key: IdentityKey
) -> dict[tuple[str, str], Match]:
    """The roles each user subject holds in the permissions table: keys are (user, role)."""
    assert system.permissions is not None
    index = _index(users)
    found: dict[str, set[Any]] = defaultdict(set)
    for user, role in conn.read_permissions(system.permissions):
        for r in index.get(("email", hash_identity("email", user, key)), ()):
            found[r].add((user, role))
    table = system.permissions.table
    return {(r, table): Match(frozenset(k), frozenset(k)) for r, k in found.items()}


def _index(subjects: list[Subject]) -> dict[tuple[str, str], set[str]]:
    index: dict[tuple[str, str], set[str]] = defaultdict(set)  # (type, hash) -> requests
    for s in subjects:
        for pair in s.identities:
            index[pair].add(s.request_id)
    return index


def users_in_access(
    desired: Desired, key: IdentityKey, completed: Mapping[str, Completed]
) -> frozenset[str]:
    """User erasures, open or completed, whose subject is (again) a user in access.yaml."""
    if desired.access is None:
        return frozenset()
    listed = {hash_identity("email", u, key) for u in desired.access.users}
    erasures = {
        c.request_id: c.identities
        for c in completed.values()
        if c.subject_kind == SubjectKind.USER.value
    } | {
        r.id: tuple((i.type, i.hash) for i in r.identities)
        for r in desired.requests.values()
        if r.type is RequestType.ERASURE and r.subject_kind is SubjectKind.USER
    }
    return frozenset(
        rid
        for rid, identities in erasures.items()
        if any(kind == "email" and h in listed for kind, h in identities)
    )


def _scan_system(
    system: str,
    tables: Mapping[str, Table],
    conn: Connector,
    subjects: list[Subject],
    key: IdentityKey,
    schema: SchemaInfo,
) -> dict[tuple[str, str], Match]:
    if not subjects or not tables:
        return {}
    index = _index(subjects)

    # Columns whose values children need: data-map links and database foreign keys.
    needed: dict[str, set[str]] = defaultdict(set)
    for t in tables.values():
        if t.subject:
            needed[t.subject.table].add(t.subject.references)
    incoming: dict[str, list[ForeignKeyInfo]] = defaultdict(list)
    for fk in schema.foreign_keys:
        if fk.referred_table in tables and len(fk.columns) == 1:
            incoming[fk.referred_table].append(fk)
            needed[fk.referred_table].add(fk.referred_columns[0])

    # per (table, column): value -> requests whose matched rows hold it
    values: dict[tuple[str, str], Linked] = defaultdict(Linked)
    matches: dict[tuple[str, str], Match] = {}
    for table in parents_first(tables):
        spec = tables[table]
        if spec.kind is TableKind.AUDIT_LOG or not spec.primary_key:
            continue
        if table not in schema.tables:
            raise ConnectorError(system, f"table {table} (in the data map) does not exist")
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
                        values[(table, col)].add(row[col], r)
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
    values: Mapping[tuple[str, str], Linked],
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
        parents = values.get((link.table, link.references))
        if not parents:
            return
        cols = list(dict.fromkeys([spec.primary_key, link.column, *extra]))
        for raw in conn.select_where_in(spec.name, cols, link.column, parents.raw):
            row = dict(zip(cols, raw, strict=True))
            yield row[spec.primary_key], parents.requests(row[link.column]), row


def _references(
    conn: Connector,
    fks: list[ForeignKeyInfo],
    values: Mapping[tuple[str, str], Linked],
    table: str,
) -> dict[str, dict[str, int]]:
    """Per request, per `child.column`: rows that reference this table's matched rows."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for fk in fks:
        parents = values.get((table, fk.referred_columns[0]))
        if not parents:
            continue
        col = fk.columns[0]
        for (ref,) in conn.select_where_in(fk.table, [col], col, parents.raw):
            for r in parents.requests(ref):
                name = f"{fk.table}.{col}"
                out[r][name] = out[r].get(name, 0) + 1
    return out


class Linked:
    """The values of one column in the matched rows of a table, and whose rows hold them.

    Children are queried with the raw values; the rows the database returns are matched
    back on a common form, because the database compared the two columns on its own terms
    (an INT against a VARCHAR, a case-insensitive collation, CHAR padding)."""

    def __init__(self) -> None:
        self.raw: list[Any] = []
        self._by_key: dict[str, set[str]] = defaultdict(set)

    def add(self, value: Any, request: str) -> None:
        key = _link_key(value)
        if key not in self._by_key:
            self.raw.append(value)
        self._by_key[key].add(request)

    def requests(self, value: Any) -> set[str]:
        return set(self._by_key.get(_link_key(value), ()))

    def __bool__(self) -> bool:
        return bool(self.raw)


def _link_key(value: Any) -> str:
    return str(value).rstrip().casefold()


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
