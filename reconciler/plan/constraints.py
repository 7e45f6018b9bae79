"""Checks of the data map and of planned deletes against the real schema of a system.

A masking strategy that would break a column's constraints, or a delete that would break a
foreign key from rows that stay, is reported before anything runs, not as a database error
halfway through. Pure: takes the reflected schema and the observed matches.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.connectors.reflection import ColumnInfo, SchemaInfo
from reconciler.desired.files import SYSTEMS_FILE
from reconciler.desired.model import ErasureStrategy, MaskStrategy, System, Table, TableKind
from reconciler.errors import Diagnostic
from reconciler.observe.model import Match
from reconciler.privacy.masking import min_length


def check_masks(system: System, schema: SchemaInfo) -> list[Diagnostic]:
    """Every mapped table and column exists, and every mask fits its column: the customer
    tables, the platform's user-data tables, and its permissions table."""
    problems = _check_tables(system.name, system.tables, schema, f"systems.{system.name}.tables")
    problems += _check_tables(
        system.name, system.user_data, schema, f"systems.{system.name}.user_data"
    )
    perms = system.permissions
    if perms is not None:
        field = f"systems.{system.name}.permissions"
        columns = schema.tables.get(perms.table)
        if columns is None:
            problems.append(
                Diagnostic(SYSTEMS_FILE, None, field, f"no table {perms.table} in {system.name}")
            )
        else:
            problems += [
                Diagnostic(
                    SYSTEMS_FILE, None, field, f"no column {c} in {system.name}.{perms.table}"
                )
                for c in (perms.user, perms.role)
                if c not in columns
            ]
    return problems


def _check_tables(
    system: str, tables: Mapping[str, Table], schema: SchemaInfo, base: str
) -> list[Diagnostic]:
    problems = []
    for name, spec in sorted(tables.items()):
        if spec.kind is TableKind.AUDIT_LOG:
            continue
        columns = schema.tables.get(name)
        if columns is None:
            problems.append(
                Diagnostic(SYSTEMS_FILE, None, f"{base}.{name}", f"no table {name} in {system}")
            )
            continue
        used = [spec.primary_key, *spec.identities.values(), *spec.mask]
        if spec.subject:
            used.append(spec.subject.column)
        problems += [
            Diagnostic(SYSTEMS_FILE, None, f"{base}.{name}", f"no column {col} in {system}.{name}")
            for col in sorted({c for c in used if c})
            if col not in columns
        ]
        for col, strategy in sorted(spec.mask.items()):
            info = columns.get(col)
            if info is not None:
                field = f"{base}.{name}.on_erasure.mask.{col}"
                problems += [
                    Diagnostic(SYSTEMS_FILE, None, field, message)
                    for message in _mask_problems(strategy, info, f"{system}.{name}.{col}")
                ]
    return problems


def _mask_problems(strategy: MaskStrategy, info: ColumnInfo, where: str) -> list[str]:
    out = []
    if info.primary_key:
        out.append(f"{where} is the primary key; it cannot be masked")
    if strategy is MaskStrategy.NULL and not info.nullable:
        out.append(f'"null" would break NOT NULL on {where}; use redact or hash')
    if strategy is MaskStrategy.REDACT and info.unique:
        out.append(
            f"redact would break UNIQUE on {where} (every masked row would hold the same "
            'marker); use hash, or "null" if the column allows it'
        )
    if strategy is not MaskStrategy.NULL and info.type != "string":
        out.append(f'{strategy.value} needs a text column, but {where} is {info.type}; use "null"')
    elif info.length is not None and info.length < min_length(strategy):
        out.append(
            f"{strategy.value} writes {min_length(strategy)} characters, but {where} holds "
            f"at most {info.length}"
        )
    return out


def foreign_key_problems(
    system: System,
    schema: SchemaInfo | None,
    rid: str,
    table: str,
    m: Match,
    child_matches: Mapping[str, Match],
) -> list[str]:
    """Why deleting `m.pending` rows of `table` for request `rid` would break a foreign key
    from retained or unmapped rows, each with what to change; refused before anything runs.
    `child_matches`: the request's matches in the other tables of the system."""
    problems = []
    for ref, count in sorted(m.referenced_by.items()):
        if not count:
            continue
        child, _, col = ref.rpartition(".")
        fk = next(
            (
                f
                for f in (schema.foreign_keys if schema else ())
                if f.table == child and f.columns == (col,) and f.referred_table == table
            ),
            None,
        )
        spec = system.tables.get(child)
        child_match = child_matches.get(child)
        # Rows of a table deleted too are the subject's own (the observer counts only other
        # rows for a table that references itself).
        deleted_too = (
            child != table
            and spec is not None
            and spec.erasure is ErasureStrategy.DELETE
            and child_match is not None
            and len(child_match.keys) >= count
        )
        ondelete = fk.ondelete if fk else None
        if deleted_too:
            continue
        nullable = bool(
            schema and schema.tables.get(child, {}).get(col) and schema.tables[child][col].nullable
        )
        if ondelete == "SET NULL" and nullable:
            continue
        what = "other" if child == table else "retained" if spec is not None else "unmapped"
        if ondelete == "CASCADE":
            problems.append(
                f"{rid}: deleting {_rows(len(m.pending))} of {system.name}.{table} would "
                f"cascade-delete {_rows(count, what)} of {system.name}.{child} "
                f"(foreign key {child}.{col} ON DELETE CASCADE); change the foreign key to "
                f"ON DELETE SET NULL, or mask {table} instead of deleting it in {SYSTEMS_FILE}"
            )
            continue
        problems.append(
            f"{rid}: deleting {_rows(len(m.pending))} of {system.name}.{table} would break "
            f"the foreign key {child}.{col} -> {table}: {_rows(count, what)} of "
            f"{system.name}.{child} still reference them. Change systems.{system.name}."
            f"tables.{table}.on_erasure in {SYSTEMS_FILE} to mask instead of delete, or make "
            f"{child}.{col} nullable with ON DELETE SET NULL in the database"
        )
    return problems


def _rows(n: int, what: str = "") -> str:
    """`1 row`, `3 retained rows`."""
    return f"{n} {what + ' ' if what else ''}row{'s' if n != 1 else ''}"
