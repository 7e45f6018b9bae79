"""The orders the data map implies: tables parents first or children first, systems in
ingestion order. The one topological sort of dsr lives here.

Pure functions of the data map (and, for children first, of the foreign keys a database
declares). Observing reads parents before children (a child is reached through its parent's
matched keys); erasing writes children before parents (a parent row cannot go while a child
still references it); refreshes run in ingestion order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from reconciler.desired.model import System, Table


def topological(names: Iterable[str], before: Mapping[str, Iterable[str]]) -> list[str]:
    """Depth-first order in which every name follows the names in `before[name]`; stable
    for the given order, and tolerant of cycles (a cycle is broken where it closes). Names
    not among `names` are ignored."""
    listed = list(names)
    order: list[str] = []
    state: dict[str, int] = {}
    known = set(listed)

    def visit(n: str) -> None:
        if state.get(n) or n not in known:
            return
        state[n] = 1
        for p in sorted(before.get(n, ())):
            visit(p)
        state[n] = 2
        order.append(n)

    for n in listed:
        visit(n)
    return order


def parents_first(tables: Mapping[str, Table]) -> list[str]:
    """Tables ordered so that every table comes after the table its subject link points to."""
    links = {name: [t.subject.table] for name, t in tables.items() if t.subject is not None}
    return topological(sorted(tables), links)


def children_first(
    tables: Mapping[str, Table], foreign_keys: Iterable[tuple[str, str]] = ()
) -> list[str]:
    """Mapped tables ordered so that a table comes before every table it references, by the
    data map's subject links and by the database's foreign keys, given as (table, referred
    table) pairs."""
    parents: dict[str, set[str]] = defaultdict(set)
    for table, referred in foreign_keys:
        if table in tables and referred in tables and table != referred:
            parents[table].add(referred)
    # A subject link usually follows a foreign key; where it runs against one (customer ->
    # address, the address reached through the customer), the database's order wins.
    for name, spec in tables.items():
        if spec.subject is not None and name not in parents[spec.subject.table]:
            parents[name].add(spec.subject.table)
    return list(reversed(topological(sorted(tables), parents)))


def ingestion_order(systems: Mapping[str, System]) -> list[str]:
    """Systems ordered so that every system comes after the systems it ingests."""
    return topological(sorted(systems), {n: s.ingests for n, s in systems.items()})


def upstream_of(systems: Mapping[str, System], name: str) -> set[str]:
    """Every system `name` ingests, directly or through others."""
    seen: set[str] = set()
    todo = list(systems[name].ingests)
    while todo:
        n = todo.pop()
        if n in seen or n not in systems:
            continue
        seen.add(n)
        todo += systems[n].ingests
    return seen
