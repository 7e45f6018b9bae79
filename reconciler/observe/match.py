"""From rows to matches: which rows of a table belong to which request's subject. Pure.

The query step (`queries.py`) hands rows over as mappings of column to value; nothing here
reads a database, so every function is tested on plain data (tests/observe/cases). A row of
an identity table belongs to a subject when the keyed hash of one of its identity values is
the subject's (decided here even for the rows a pushdown query chose: the query only
narrows what is read); a row of a linked table, when its link column holds a value of its parent's
matched rows. Raw values live only in the loop's local variables and in `Linked`: what leaves
this module is primary keys (in memory), counts and booleans.

Each function gives the same answer for the rows the database returned and for any superset
of them (a whole table): linked rows are matched again here on a common form of the value.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from reconciler.desired.model import ErasureStrategy, Table, TableKind
from reconciler.observe.model import Match
from reconciler.observe.subjects import Wanted
from reconciler.privacy.masking import is_masked

Row = Mapping[str, Any]


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
        if value is None:
            return set()
        return set(self._by_key.get(_link_key(value), ()))

    def __bool__(self) -> bool:
        return bool(self.raw)


def _link_key(value: Any) -> str:
    return str(value).rstrip().casefold()


def identity_matches(
    spec: Table, columns: Sequence[str], rows: Iterable[Sequence[Any]], wanted: Wanted
) -> Iterator[tuple[Row, set[str]]]:
    """The rows (tuples in the order of `columns`) whose identity values name some request,
    as mappings, with those requests. A type no subject is looked for by is not hashed, and
    a row that names nobody is dropped without becoming a mapping."""
    probes = [
        (columns.index(column), find)
        for kind, column in spec.identities.items()
        if (find := wanted.finder(kind)) is not None
    ]
    for raw in rows:
        found: set[str] | None = None
        for i, find in probes:
            value = raw[i]
            if value is None or value == "":
                continue
            names = find(value if type(value) is str else str(value))
            if names:
                found = set(names) if found is None else found | names
        if found:
            yield dict(zip(columns, raw, strict=True)), found


def linked_requests(spec: Table, row: Row, parents: Linked | None) -> set[str]:
    """The requests whose parent rows the row's link column points at."""
    assert spec.subject is not None
    return parents.requests(row[spec.subject.column]) if parents else set()


class TableMatch:
    """One table's matched rows, collected row by row: their keys per request, those not yet
    masked, and the values of the columns that children and foreign keys reach them by."""

    def __init__(self, spec: Table, linked_columns: Iterable[str]) -> None:
        assert spec.primary_key
        self.spec = spec
        self.linked_columns = sorted(set(linked_columns))
        self.keys: dict[str, set[Any]] = defaultdict(set)
        self.unmasked: dict[str, set[Any]] = defaultdict(set)
        self.values: dict[str, Linked] = defaultdict(Linked)

    def add(self, row: Row, requests: set[str]) -> None:
        if not requests:
            return
        spec = self.spec
        pk = row[spec.primary_key or ""]
        masked = not spec.mask or all(is_masked(m, row[c]) for c, m in spec.mask.items())
        for r in requests:
            self.keys[r].add(pk)
            if not masked:
                self.unmasked[r].add(pk)
            for col in self.linked_columns:
                if row[col] is not None:
                    self.values[col].add(row[col], r)

    def matches(
        self, referenced_by: Mapping[str, dict[str, int]] | None = None
    ) -> dict[tuple[str, str], Match]:
        """Per (request, table): the keys, what erasure must still change, and the rows of
        other tables that reference them (`count_references`)."""
        refs = referenced_by or {}
        return {
            (r, self.spec.name): Match(
                keys=frozenset(keys),
                pending=frozenset(_pending(self.spec, keys, self.unmasked[r])),
                referenced_by=refs.get(r, {}),
            )
            for r, keys in self.keys.items()
        }


def count_references(
    name: str,
    rows: Iterable[tuple[Any, Any]],
    parents: Linked,
    into: dict[str, dict[str, int]],
    own: Mapping[str, set[Any]] | None = None,
) -> None:
    """Adds to `into[request][name]` the referencing rows, given as (primary key, foreign key
    value) pairs, that point at each request's matched rows. `name` is `child_table.column`.
    `own`: for a table that references itself, the request's own rows, which go with the
    delete and are not counted (another customer's row that points at the subject is)."""
    for key, value in rows:
        for r in parents.requests(value):
            if own is not None and key in own.get(r, ()):
                continue
            into[r][name] = into[r].get(name, 0) + 1


def _pending(spec: Table, keys: set[Any], unmasked: set[Any]) -> set[Any]:
    if spec.kind is TableKind.SYSTEM_LOG or spec.erasure is ErasureStrategy.DELETE:
        return keys
    if spec.erasure is ErasureStrategy.MASK:
        return unmasked
    return set()
