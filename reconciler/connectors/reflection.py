"""What a connector reports about a system's tables: columns, keys and foreign keys.

Pure, frozen values built by `Connector.reflect` and read by the observer and the planner
(which columns may be nulled or masked, which foreign keys cascade, block or null a delete).
This module must not import SQLAlchemy or touch a database: it holds types only.
"""

from __future__ import annotations

from dataclasses import dataclass

# The closed sets of values below stay plain `str` fields so that callers can build these
# values from parsed files without casts.
COLUMN_TYPES = frozenset(
    {"string", "integer", "numeric", "datetime", "date", "boolean", "binary", "other"}
)
ON_DELETE = frozenset({"CASCADE", "SET NULL", "SET DEFAULT", "RESTRICT"})


@dataclass(frozen=True, slots=True)
class ColumnInfo:
    """One column. `unique` holds when the column alone is the primary key, or alone carries
    a UNIQUE constraint or a (non-partial) unique index. `length` is the declared length of
    a string column, None otherwise. `type` is one of COLUMN_TYPES."""

    name: str
    nullable: bool
    unique: bool
    primary_key: bool
    type: str
    length: int | None


@dataclass(frozen=True, slots=True)
class ForeignKeyInfo:
    """`table(columns)` references `referred_table(referred_columns)`. `ondelete` is one of
    ON_DELETE, or None for NO ACTION or when no ON DELETE clause was declared."""

    table: str
    columns: tuple[str, ...]
    referred_table: str
    referred_columns: tuple[str, ...]
    ondelete: str | None


@dataclass(frozen=True, slots=True)
class SchemaInfo:
    """Tables by name, named as the data map writes them: bare for the connection's default
    schema, `schema.table` for a schema asked for by name."""

    tables: dict[str, dict[str, ColumnInfo]]
    foreign_keys: tuple[ForeignKeyInfo, ...]
