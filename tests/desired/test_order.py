"""The orders the data map implies: parents first, children first, ingestion order."""

from __future__ import annotations

from reconciler.connectors.reflection import ColumnInfo, ForeignKeyInfo, SchemaInfo
from reconciler.desired.model import (
    ErasureStrategy,
    SubjectLink,
    System,
    SystemRole,
    Table,
)
from reconciler.desired.order import (
    children_first,
    ingestion_order,
    parents_first,
    topological,
    upstream_of,
)


def test_database_foreign_keys_decide_the_delete_order() -> None:
    # The address is reached through the customer, but the customer references the address.
    system = System(
        "s",
        SystemRole.SOURCE,
        "sqlite://",
        tables={
            "customer": Table("customer", "id", {"email": "email"}, erasure=ErasureStrategy.DELETE),
            "address": Table(
                "address",
                "id",
                subject=SubjectLink("id", "customer", "address_id"),
                erasure=ErasureStrategy.DELETE,
            ),
            "rental": Table(
                "rental",
                "id",
                subject=SubjectLink("customer_id", "customer", "id"),
                erasure=ErasureStrategy.DELETE,
            ),
        },
    )
    col = ColumnInfo("id", False, True, True, "integer", None)
    schema = SchemaInfo(
        {"customer": {"id": col}, "address": {"id": col}, "rental": {"id": col}},
        (
            ForeignKeyInfo("customer", ("address_id",), "address", ("id",), None),
            ForeignKeyInfo("rental", ("customer_id",), "customer", ("id",), None),
        ),
    )
    fks = [(fk.table, fk.referred_table) for fk in schema.foreign_keys]
    assert children_first(system.tables, fks) == ["rental", "customer", "address"]
    assert children_first(system.tables)[-1] == "customer"  # without a schema: links only


def test_parents_first_follows_links_and_survives_a_cycle() -> None:
    tables = {
        "lines": Table("lines", "id", subject=SubjectLink("order_id", "orders", "id")),
        "orders": Table("orders", "id", subject=SubjectLink("customer_id", "customers", "id")),
        "customers": Table("customers", "id", {"email": "email"}),
        "a": Table("a", "id", subject=SubjectLink("b_id", "b", "id")),
        "b": Table("b", "id", subject=SubjectLink("a_id", "a", "id")),
    }
    order = parents_first(tables)
    assert order.index("customers") < order.index("orders") < order.index("lines")
    assert sorted(order) == sorted(tables)  # a cycle is broken, nothing is lost


def test_ingestion_order_and_upstream() -> None:
    systems = {
        "apps": System("apps", SystemRole.DOWNSTREAM, "x", ingests=("insights",)),
        "insights": System("insights", SystemRole.PLATFORM, "x", ingests=("crm", "shop")),
        "crm": System("crm", SystemRole.SOURCE, "x"),
        "shop": System("shop", SystemRole.SOURCE, "x"),
    }
    order = ingestion_order(systems)
    assert order.index("crm") < order.index("insights") < order.index("apps")
    assert order.index("shop") < order.index("insights")
    assert upstream_of(systems, "apps") == {"insights", "crm", "shop"}
    assert upstream_of(systems, "crm") == set()


def test_topological_is_stable_and_ignores_unknown_names() -> None:
    assert topological(["c", "b", "a"], {}) == ["c", "b", "a"]
    assert topological(["b", "a"], {"b": ["a", "zzz"]}) == ["a", "b"]
