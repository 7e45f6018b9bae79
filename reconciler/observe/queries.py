"""The query step of observing: what is read from a system, through its connector, to find
data subjects. Reads only; rows come back as mappings of column to value for `match.py`.

An identity table is read once for every subject together, in batches (memory bounded by
the batch size): only the rows the database finds may match (pushdown, `filters` given), or
every row (streaming); a table reached through a link is read with batched `IN (...)` queries on the
parents' matched values; rows referencing matched rows through a database foreign key are
read the same way, to count them, unless they are a linked table's rows already read on the
same column and values (`collect.py` counts those from that read).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from reconciler.connectors import Connector
from reconciler.connectors.pushdown import IdentityFilter
from reconciler.connectors.reflection import ForeignKeyInfo
from reconciler.desired.model import Table

Row = dict[str, Any]


def columns_of(spec: Table, extra: Iterable[str]) -> list[str]:
    """The columns to read of a mapped table: its key, how it reaches the subject, and
    `extra` (masked columns, columns that children link by)."""
    assert spec.primary_key
    reach = list(spec.identities.values())
    if spec.subject is not None:
        reach.append(spec.subject.column)
    return list(dict.fromkeys([spec.primary_key, *reach, *extra]))


BATCH = 10_000  # rows per fetch of an identity table


def identity_rows(
    conn: Connector,
    spec: Table,
    columns: Sequence[str],
    filters: Sequence[IdentityFilter] | None = None,
) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of an identity table, those columns only (tuples in their order), in
    batches: with `filters`, those the database finds may match (pushdown); without, every
    row. Tuples, not mappings: most rows read by streaming are dropped at once."""
    if filters is None:
        return conn.scan(spec.name, columns, batch=BATCH)
    return conn.scan_matching(spec.name, columns, filters, batch=BATCH)


def linked_rows(
    conn: Connector, spec: Table, columns: Sequence[str], parent_values: list[Any]
) -> list[Row]:
    """The rows of a linked table whose link column holds one of `parent_values`."""
    assert spec.subject is not None
    if not parent_values:
        return []
    found = conn.select_where_in(spec.name, columns, spec.subject.column, parent_values)
    return [dict(zip(columns, raw, strict=True)) for raw in found]


def referencing_rows(
    conn: Connector, fk: ForeignKeyInfo, key: str | None, parent_values: list[Any]
) -> list[tuple[Any, Any]]:
    """(primary key, foreign key value) of the rows of `fk.table` that reference
    `parent_values`; the key is None when it is not asked for (`key` None)."""
    if not parent_values:
        return []
    col = fk.columns[0]
    if key is None:
        return [(None, ref) for (ref,) in conn.select_where_in(fk.table, [col], col, parent_values)]
    found = conn.select_where_in(fk.table, [key, col], col, parent_values)
    return [(pk, ref) for pk, ref in found]
