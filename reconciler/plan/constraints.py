"""Checks of the data map against the real schema of a system (from reflection).

A masking strategy that would break a column's constraints is reported before anything
runs, not as a database error halfway through. Pure: takes the reflected schema.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.connectors.reflection import ColumnInfo, SchemaInfo
from reconciler.desired.model import MaskStrategy, System, Table, TableKind
from reconciler.errors import Diagnostic
from reconciler.privacy.masking import min_length

SYSTEMS_FILE = "policies/systems.yaml"


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
