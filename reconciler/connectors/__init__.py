"""Connectors: how dsr reads and changes a system. One Protocol, one SQL implementation.

The planner never sees a connector; commands open them, the observer and executor use them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from reconciler.connectors.pushdown import IdentityFilter, SqlHashing
from reconciler.connectors.reflection import SchemaInfo
from reconciler.desired.model import DEFAULT_TIMEOUTS, PermissionsMap, Timeouts


class Connector(Protocol):
    system: str

    def read_permissions(self, mapping: PermissionsMap) -> frozenset[tuple[str, str]]: ...

    def grant_role(self, mapping: PermissionsMap, user: str, role: str) -> int: ...

    def revoke_role(self, mapping: PermissionsMap, user: str, role: str) -> int: ...

    def remove_user(self, mapping: PermissionsMap, user: str) -> int: ...

    # Erasure primitives. Table names are `name` or `schema.name`; every write is one
    # transaction for the whole call.

    def reflect(self, schemas: Iterable[str | None]) -> SchemaInfo: ...

    def scan(
        self, table: str, columns: Sequence[str], *, batch: int = 5000
    ) -> Iterator[list[tuple[Any, ...]]]: ...

    # Identity matching pushed down (connectors/pushdown.py): whether the database can hash,
    # and the rows it finds may belong to a subject.

    def sql_hashing(self) -> SqlHashing: ...

    def scan_matching(
        self,
        table: str,
        columns: Sequence[str],
        filters: Sequence[IdentityFilter],
        *,
        batch: int = 5000,
    ) -> Iterator[list[tuple[Any, ...]]]: ...

    def select_where_in(
        self,
        table: str,
        columns: Sequence[str],
        column: str,
        values: Iterable[Any],
        *,
        batch: int = 500,
    ) -> list[tuple[Any, ...]]: ...

    def count_where_in(
        self, table: str, column: str, values: Iterable[Any], *, batch: int = 500
    ) -> int: ...

    def delete_where_in(
        self, table: str, column: str, values: Iterable[Any], *, batch: int = 500
    ) -> int: ...

    def update_by_key(self, table: str, key: str, rows: Iterable[Mapping[str, Any]]) -> int: ...

    def run_sql(self, statements: Sequence[str]) -> None: ...

    def close(self) -> None: ...


def connect(system: str, url: str, timeouts: Timeouts = DEFAULT_TIMEOUTS) -> Connector:
    """A connector to `system` at the SQLAlchemy `url` (resolved by `workspace.system_url`)."""
    from reconciler.connectors.sql import SqlConnector

    return SqlConnector(system, url, timeouts)
