"""Observe the actual state of every system the desired state needs, and read back what dsr's
own state store says it did.

For each system: its permissions, its schema (reflected when erasures or exports need it) and
every pending subject's rows, table by table, parents before children: the query step
(`queries.py`) then the pure step (`match.py`). The rows that reference a matched row
through a database foreign key are counted from the linked read of the same table and
column when there is one, not read again. An identity table is matched by pushdown
or streaming (`method.py`), and each system records which. A system that cannot be read is
recorded with its error, not raised: the planner decides what that blocks. This module
reads; it never writes to a system or to the state store.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping
from dataclasses import replace

from reconciler.connectors import Connector
from reconciler.connectors.pushdown import IdentityFilter, KeyDigests, SqlHashing
from reconciler.connectors.reflection import ForeignKeyInfo, SchemaInfo
from reconciler.desired.model import Desired, MatchMode, SubjectKind, System, Table, TableKind
from reconciler.desired.order import parents_first
from reconciler.errors import ConnectorError, DsrError
from reconciler.observe import queries
from reconciler.observe.match import (
    TableMatch,
    count_references,
    identity_matches,
    linked_requests,
)
from reconciler.observe.method import HowMatched, Method, how_matched
from reconciler.observe.model import Match, Observed, ObservedSystem
from reconciler.observe.subjects import (
    Subject,
    Wanted,
    pending_subjects,
    subject_index,
    users_in_access,
)
from reconciler.outbox.boxes import Outbox, check
from reconciler.privacy.identity import IdentityKey, matching_hashes, pads
from reconciler.store import StateStore
from reconciler.store.records import ExportRecord, RefreshRecord, Tombstone

Progress = Callable[[ObservedSystem, float], None]  # a system observed, in so many seconds


def observe_all(
    desired: Desired,
    connectors: Mapping[str, Connector],
    store: StateStore,
    key: IdentityKey,
    *,
    progress: Progress | None = None,
    outbox: Callable[[], Outbox] | None = None,
) -> Observed:
    """Every system, and dsr's own record of completed erasures, refreshes and exports, each
    built package checked in `outbox` (None: packages are not looked at)."""
    exports = store.exports()
    problems = package_problems(exports, outbox) if outbox is not None else {}
    observed = observe(
        desired,
        connectors,
        key,
        completed=store.tombstones(),
        refreshes=store.last_refreshes(),
        exports=exports,
        rebuild=problems,
        progress=progress,
    )
    return replace(observed, facts=store.request_facts(), package_problems=problems)


def package_problems(
    exports: Mapping[str, ExportRecord], outbox: Callable[[], Outbox]
) -> dict[str, str]:
    """What is wrong with each package that was built and has not expired (`outbox` gives
    the outbox; a misplaced one is every package's problem)."""
    waiting = [e for e in exports.values() if e.expired_at is None]
    if not waiting:
        return {}
    try:
        box = outbox()
    except DsrError as exc:
        return {e.request_id: f"cannot be checked: {exc}" for e in waiting}
    found = {e.request_id: check(box, e.request_id, e.manifest_sha256) for e in waiting}
    return {rid: problem for rid, problem in found.items() if problem}


def observe(
    desired: Desired,
    connectors: Mapping[str, Connector],
    key: IdentityKey,
    *,
    completed: Mapping[str, Tombstone] | None = None,
    refreshes: Mapping[str, RefreshRecord] | None = None,
    exports: Mapping[str, ExportRecord] | None = None,
    rebuild: Collection[str] = (),
    progress: Progress | None = None,
) -> Observed:
    """`rebuild`: exports whose package is missing or altered: their subjects' rows are looked
    for again, as for a first build (else a rebuilt package would hold nothing)."""
    completed = dict(completed or {})
    exports = dict(exports or {})
    built = [rid for rid in exports if rid not in rebuild]
    subjects = pending_subjects(desired, completed, built)
    systems: dict[str, ObservedSystem] = {}
    for name, system in sorted(desired.systems.items()):
        started = time.monotonic()
        conn = connectors[name]
        perms = None
        error = None
        if system.permissions is not None:
            try:
                perms = conn.read_permissions(system.permissions)
            except ConnectorError as exc:
                error = exc.detail
        schema, matches, methods, find_error = _find_subjects(system, conn, subjects, key)
        if system.permissions is None and schema is None and not find_error:
            continue  # nothing of this system is reconciled now
        systems[name] = ObservedSystem(
            name,
            permissions=perms,
            schema=schema,
            matches=matches,
            error=error or find_error,
            matched_by={t: str(how) for t, how in sorted(methods.items())},
        )
        if progress is not None:
            progress(systems[name], time.monotonic() - started)
    return Observed(
        systems,
        completed=completed,
        refreshes=dict(refreshes or {}),
        exports=exports,
        users_in_access=users_in_access(desired, key, completed),
    )


Matches = dict[tuple[str, str], Match]
Methods = dict[str, HowMatched]  # identity table -> how it was matched


def _find_subjects(
    system: System, conn: Connector, subjects: list[Subject], key: IdentityKey
) -> tuple[SchemaInfo | None, Matches, Methods, str | None]:
    """Reflects the system's schema and finds every subject's rows in every mapped table;
    (None, {}, {}, None) when no subject concerns the system."""
    here = [s for s in subjects if s.in_scope(system.name)]
    customers = [s for s in here if s.kind is SubjectKind.CUSTOMER]
    users = [s for s in here if s.kind is SubjectKind.USER]
    if not (customers and system.tables) and not (users and system.permissions):
        return None, {}, {}, None
    try:
        schemas = {t.rpartition(".")[0] or None for t in {**system.tables, **system.user_data}}
        schema = conn.reflect(schemas)
        hashing = _Hashing(system, conn)
        matches = _match_tables(system.name, system.tables, conn, customers, key, schema, hashing)
        if users and system.permissions is not None:
            matches |= _match_tables(
                system.name, system.user_data, conn, users, key, schema, hashing
            )
            matches |= _match_roles(system, conn, users, key)
        return schema, matches, hashing.methods, None
    except ConnectorError as exc:
        return None, {}, {}, exc.detail


class _Hashing:
    """How a system's identity tables are matched, its database asked at most once."""

    def __init__(self, system: System, conn: Connector) -> None:
        self.system = system
        self.conn = conn
        self.methods: Methods = {}
        self._hashing: SqlHashing | None = None

    def how(self, spec: Table, schema: SchemaInfo) -> HowMatched:
        if self.system.match is not MatchMode.STREAM and self._hashing is None:
            self._hashing = self.conn.sql_hashing()
        how = how_matched(self.system.match, self._hashing, spec, schema.tables.get(spec.name))
        if how.problem:
            raise ConnectorError(self.system.name, f"{spec.name}: {how.problem}")
        self.methods[spec.name] = how
        return how


def _match_roles(
    system: System, conn: Connector, users: list[Subject], key: IdentityKey
) -> Matches:
    """The roles each user subject holds in the permissions table: keys are (user, role)."""
    assert system.permissions is not None
    index = subject_index(users)
    found: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for user, role in conn.read_permissions(system.permissions):
        for digest in matching_hashes("email", user, key):
            for r in index.get(("email", digest), ()):
                found[r].add((user, role))
    table = system.permissions.table
    return {(r, table): Match(frozenset(k), frozenset(k)) for r, k in found.items()}


def _match_tables(
    system: str,
    tables: Mapping[str, Table],
    conn: Connector,
    subjects: list[Subject],
    key: IdentityKey,
    schema: SchemaInfo,
    hashing: _Hashing,
) -> Matches:
    """Every subject's rows in `tables`: parents first, each table queried then matched."""
    if not subjects or not tables:
        return {}
    wanted = Wanted(subjects, key)
    # Columns whose values others reach a table by: data-map links and database foreign keys.
    linked: dict[str, set[str]] = defaultdict(set)
    for t in tables.values():
        if t.subject:
            linked[t.subject.table].add(t.subject.references)
    incoming: dict[str, list[ForeignKeyInfo]] = defaultdict(list)
    by_link: dict[str, list[ForeignKeyInfo]] = defaultdict(list)  # child -> counted in its read
    for fk in schema.foreign_keys:
        if fk.referred_table in tables and len(fk.columns) == 1:
            linked[fk.referred_table].add(fk.referred_columns[0])
            if _read_by_link(fk, tables):
                by_link[fk.table].append(fk)
            else:
                incoming[fk.referred_table].append(fk)

    done: dict[str, TableMatch] = {}
    # Per table, per request, the rows of other tables that reference its matched rows.
    refs: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for name in parents_first(tables):
        spec = tables[name]
        if spec.kind is TableKind.AUDIT_LOG or not spec.primary_key:
            continue
        if name not in schema.tables:
            raise ConnectorError(system, f"table {name} (in the data map) does not exist")
        found = TableMatch(spec, linked[name])
        columns = queries.columns_of(spec, sorted(linked[name] | set(spec.mask)))
        if spec.identities:
            how = hashing.how(spec, schema)
            filters = _filters(spec, wanted)
            if filters:  # else no subject is looked for by this table's identity types
                pushed = filters if how.method is Method.PUSHDOWN else None
                for batch in queries.identity_rows(conn, spec, columns, pushed):
                    for row, requests in identity_matches(spec, columns, batch, wanted):
                        found.add(row, requests)
        elif spec.subject:
            link = spec.subject
            parent = done.get(link.table)
            parents = parent.values.get(link.references) if parent else None
            if parents:
                rows = queries.linked_rows(conn, spec, columns, parents.raw)
                for row in rows:
                    found.add(row, linked_requests(spec, row, parents))
                # This read is the foreign key's too: the same rows, by the same values.
                for fk in by_link[name]:
                    pairs = [(None, row[link.column]) for row in rows]
                    name_ = f"{fk.table}.{fk.columns[0]}"
                    count_references(name_, pairs, parents, refs[link.table])
        done[name] = found
        for fk in incoming[name] if found.keys else ():
            parents = found.values.get(fk.referred_columns[0])
            if parents:
                # A table that references itself: the subject's own rows go with the delete.
                itself = fk.table == name
                child_key = spec.primary_key if itself else None
                pairs = queries.referencing_rows(conn, fk, child_key, parents.raw)
                name_ = f"{fk.table}.{fk.columns[0]}"
                count_references(name_, pairs, parents, refs[name], found.keys if itself else None)
    matches: Matches = {}
    for name, found in done.items():
        matches |= found.matches(refs[name])
    return matches


def _read_by_link(fk: ForeignKeyInfo, tables: Mapping[str, Table]) -> bool:
    """Whether the rows that reference matched rows through `fk` are exactly those of a
    mapped table's linked read: a table read through its data-map link, on the foreign key's
    column and referred column. Its rows are then counted from that read, not read again.
    Any other foreign key (an unmapped table, a table that references itself, a column other
    than the link's, a table matched by its identities or not read) is read on its own."""
    child = tables.get(fk.table)
    if child is None or child.subject is None or child.identities or fk.table == fk.referred_table:
        return False
    if child.kind is TableKind.AUDIT_LOG or not child.primary_key:
        return False
    link = child.subject
    return (link.table, link.column, link.references) == (
        fk.referred_table,
        fk.columns[0],
        fk.referred_columns[0],
    )


def _filters(spec: Table, wanted: Wanted) -> list[IdentityFilter]:
    """What a pushdown query of `spec` looks for: per identity column whose type some subject
    is looked for by, every key's pads and wanted digests."""
    return [
        IdentityFilter(
            column,
            kind,
            tuple(
                KeyDigests(pads(k.secret), frozenset(digests)) for k, digests in wanted.keys[kind]
            ),
        )
        for kind, column in spec.identities.items()
        if kind in wanted.keys
    ]
