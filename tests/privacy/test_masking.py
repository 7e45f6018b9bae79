"""Masking strategies and their checks against a column's constraints (pure)."""

from __future__ import annotations

import pytest

from reconciler.connectors.reflection import ColumnInfo, SchemaInfo
from reconciler.desired.model import (
    ErasureStrategy,
    MaskStrategy,
    System,
    SystemRole,
    Table,
)
from reconciler.plan.constraints import check_masks
from reconciler.privacy.identity import IdentityKey
from reconciler.privacy.masking import HASH_LENGTH, REDACTED, is_masked, mask_value

KEY = IdentityKey("k", b"secret", development=False)


@pytest.mark.parametrize("strategy", list(MaskStrategy))
def test_masked_values_are_recognised_and_idempotent(strategy: MaskStrategy) -> None:
    masked = mask_value(strategy, "ana@example.com", KEY)
    assert masked != "ana@example.com"
    assert is_masked(strategy, masked)
    assert not is_masked(strategy, "ana@example.com")
    assert mask_value(strategy, masked, KEY) == masked  # masking twice changes nothing


def test_hash_keeps_unique_values_unique_and_hides_them() -> None:
    a = mask_value(MaskStrategy.HASH, "a@example.com", KEY)
    b = mask_value(MaskStrategy.HASH, "b@example.com", KEY)
    assert a != b and len(a) == len(b) == HASH_LENGTH
    assert "example" not in a
    other_key = IdentityKey("k", b"other", development=False)
    assert mask_value(MaskStrategy.HASH, "a@example.com", other_key) != a
    assert mask_value(MaskStrategy.REDACT, "x", KEY) == REDACTED


def col(name: str, **kw: object) -> ColumnInfo:
    base: dict[str, object] = dict(
        nullable=True, unique=False, primary_key=False, type="string", length=None
    )
    base.update(kw)
    return ColumnInfo(name, **base)  # type: ignore[arg-type]


def check(strategy: MaskStrategy, column: ColumnInfo) -> list[str]:
    table = Table(
        "t",
        primary_key="id",
        identities={"email": "e"},
        erasure=ErasureStrategy.MASK,
        mask={column.name: strategy},
        reason="kept",
    )
    system = System("s", SystemRole.SOURCE, "sqlite://", tables={"t": table})
    schema = SchemaInfo(
        {
            "t": {
                "id": col("id", primary_key=True, type="integer"),
                "e": col("e"),
                column.name: column,
            }
        },
        (),
    )
    return [d.message for d in check_masks(system, schema)]


def test_null_on_not_null_is_refused() -> None:
    assert check(MaskStrategy.NULL, col("c", nullable=False)) == [
        '"null" would break NOT NULL on s.t.c; use redact or hash'
    ]


def test_redact_on_unique_is_refused_but_hash_is_fine() -> None:
    assert "redact would break UNIQUE" in check(MaskStrategy.REDACT, col("c", unique=True))[0]
    assert check(MaskStrategy.HASH, col("c", unique=True)) == []


def test_too_short_and_wrong_type() -> None:
    assert check(MaskStrategy.HASH, col("c", length=20)) == [
        f"hash writes {HASH_LENGTH} characters, but s.t.c holds at most 20"
    ]
    assert check(MaskStrategy.HASH, col("c", length=HASH_LENGTH)) == []
    assert "needs a text column" in check(MaskStrategy.REDACT, col("c", type="integer"))[0]
    assert check(MaskStrategy.NULL, col("c", type="integer")) == []


def test_missing_table_and_column() -> None:
    table = Table(
        "gone", primary_key="id", identities={"email": "mail"}, erasure=ErasureStrategy.DELETE
    )
    system = System("s", SystemRole.SOURCE, "sqlite://", tables={"gone": table})
    problems = check_masks(system, SchemaInfo({}, ()))
    assert [str(p) for p in problems] == [
        "policies/systems.yaml: systems.s.tables.gone: no table gone in s"
    ]


def test_values_are_withheld_from_stored_messages() -> None:
    from reconciler.privacy.withhold import withhold_values

    assert withhold_values('invalid input syntax for type bigint: "+55 12 3923-5555"') == (
        'invalid input syntax for type bigint: "…"'
    )
    assert (
        withhold_values("Duplicate entry 'c5@x.example' for key") == "Duplicate entry '…' for key"
    )
    assert "ana@example.com" not in withhold_values("raised by trigger for ana@example.com")
    assert "7946" not in withhold_values("bad phone +44 20 7946 0123 here")
    assert withhold_values("no such table: no_such_table") == "no such table: no_such_table"
