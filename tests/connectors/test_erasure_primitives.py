"""The SQL connector's erasure primitives against real SQLite, PostgreSQL and MariaDB.

reflect, scan, select/count/delete_where_in, update_by_key and run_sql, on a small shop
schema built with SQLAlchemy in the fresh database the `db_url` fixture hands out.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import sqlalchemy as sa

from reconciler.connectors.reflection import ColumnInfo, ForeignKeyInfo
from reconciler.connectors.sql import SqlConnector, create_engine, normalise_ondelete
from reconciler.errors import ConnectorError

CUSTOMERS = [(i, f"c{i}@x.example", f"+44 {i:04d}" if i % 2 else None) for i in range(1, 11)]
ORDERS = [(1, 1), (2, 1), (3, 2), (4, 3)]  # (id, customer_id)
LINES = [(1, 1), (2, 3)]  # (id, order_id): orders 1 and 3 have lines, 2 and 4 none


def build_shop(url: str) -> None:
    meta = sa.MetaData()
    customers = sa.Table(
        "customers",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("email", sa.String(200), nullable=False, unique=True),
        sa.Column("phone", sa.String(40)),
        sa.Column("name", sa.Text),
    )
    orders = sa.Table(
        "orders",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey(customers.c.id, ondelete="SET NULL")),
        sa.Column("total", sa.Numeric(10, 2)),
        sa.Column("placed_at", sa.DateTime),
    )
    lines = sa.Table(
        "order_lines",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("order_id", sa.Integer, sa.ForeignKey(orders.c.id), nullable=False),
        sa.Column("sku", sa.String(20)),
    )
    devices = sa.Table(
        "devices",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("serial", sa.String(50)),
        sa.Column("code", sa.String(10)),
        sa.Column("a", sa.Integer),
        sa.Column("b", sa.Integer),
        sa.Column("born", sa.Date),
        sa.Column("active", sa.Boolean),
        sa.Column("blob", sa.LargeBinary),
        sa.UniqueConstraint("a", "b"),  # unique together, neither alone
    )
    sa.Index("ix_devices_serial", devices.c.serial, unique=True)
    sa.Index(
        "ix_devices_code",
        devices.c.code,
        unique=True,
        sqlite_where=devices.c.active,
        postgresql_where=devices.c.active,  # MariaDB has no partial index: unique there
    )
    sa.Table(
        "sessions",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("customer_id", sa.Integer, sa.ForeignKey(customers.c.id, ondelete="CASCADE")),
        sa.Column("device_id", sa.Integer, sa.ForeignKey(devices.c.id, ondelete="RESTRICT")),
        sa.Column("token", sa.String(64), sa.ForeignKey(devices.c.serial, ondelete="NO ACTION")),
    )
    odd = sa.Table(  # names that quoting and bound-parameter naming must survive
        "odd names",
        meta,
        sa.Column("key col", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("b_0", sa.String(20)),
        sa.Column("b_1", sa.String(20)),
    )
    engine = create_engine(url)
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            customers.insert(),
            [{"id": i, "email": e, "phone": p} for i, e, p in CUSTOMERS],
        )
        conn.execute(orders.insert(), [{"id": o, "customer_id": c} for o, c in ORDERS])
        conn.execute(
            lines.insert(),
            [{"id": i, "order_id": o, "sku": f"sku{i}"} for i, o in LINES],
        )
        conn.execute(
            odd.insert(),
            [{"key col": 1, "b_0": "x", "b_1": "y"}, {"key col": 2, "b_0": "p", "b_1": "q"}],
        )
    engine.dispose()


@pytest.fixture
def shop(db_url: str) -> Iterator[SqlConnector]:
    build_shop(db_url)
    conn = SqlConnector("shop", db_url)
    yield conn
    conn.close()


def rows_of(conn: SqlConnector, table: str, *columns: str) -> list[tuple[Any, ...]]:
    return sorted(row for batch in conn.scan(table, columns) for row in batch)


def dialect(conn: SqlConnector) -> str:
    return conn.engine.dialect.name  # "sqlite", "postgresql", "mysql" (MariaDB)


# --- reflect -------------------------------------------------------------------------------


def test_reflect_columns(shop: SqlConnector) -> None:
    info = shop.reflect([None])
    assert set(info.tables) == {
        "customers",
        "orders",
        "order_lines",
        "devices",
        "sessions",
        "odd names",
    }
    customers = info.tables["customers"]
    assert customers == {
        "id": ColumnInfo("id", False, True, True, "integer", None),
        "email": ColumnInfo("email", False, True, False, "string", 200),
        "phone": ColumnInfo("phone", True, False, False, "string", 40),
        "name": ColumnInfo("name", True, False, False, "string", None),
    }
    orders = info.tables["orders"]
    assert orders["customer_id"] == ColumnInfo("customer_id", True, False, False, "integer", None)
    assert orders["total"].type == "numeric"
    assert orders["placed_at"].type == "datetime"
    devices = info.tables["devices"]
    assert devices["serial"].unique  # by a unique index
    assert devices["code"].unique is (dialect(shop) == "mysql")  # partial index elsewhere
    assert not devices["a"].unique and not devices["b"].unique  # only together
    assert devices["born"].type == "date"
    # MariaDB's BOOLEAN is TINYINT(1), which loads as an int.
    assert devices["active"].type == ("integer" if dialect(shop) == "mysql" else "boolean")
    assert devices["blob"].type == "binary"
    assert info.tables["odd names"]["key col"].primary_key


def test_reflect_foreign_keys(shop: SqlConnector) -> None:
    info = shop.reflect([None])
    # InnoDB's NO ACTION is RESTRICT, and MariaDB shows neither: both reflect as None.
    restrict = None if dialect(shop) == "mysql" else "RESTRICT"
    assert set(info.foreign_keys) == {
        ForeignKeyInfo("orders", ("customer_id",), "customers", ("id",), "SET NULL"),
        ForeignKeyInfo("order_lines", ("order_id",), "orders", ("id",), None),
        ForeignKeyInfo("sessions", ("customer_id",), "customers", ("id",), "CASCADE"),
        ForeignKeyInfo("sessions", ("device_id",), "devices", ("id",), restrict),
        ForeignKeyInfo("sessions", ("token",), "devices", ("serial",), None),  # NO ACTION
    }


@pytest.mark.parametrize(
    ("declared", "normalised"),
    [
        ("CASCADE", "CASCADE"),
        ("set null", "SET NULL"),
        ("SET NULL (customer_id)", "SET NULL"),  # PostgreSQL 15 column list
        ("SET  DEFAULT", "SET DEFAULT"),
        ("Restrict", "RESTRICT"),
        ("NO ACTION", None),
        ("", None),
        (None, None),
    ],
)
def test_normalise_ondelete(declared: str | None, normalised: str | None) -> None:
    assert normalise_ondelete(declared) == normalised


def test_reflect_names_the_default_schema_as_asked(shop: SqlConnector) -> None:
    """Asked by name, the default schema gives `schema.table` names, foreign keys too; and
    those names work for the other primitives."""
    default = sa.inspect(shop.engine).default_schema_name
    assert default
    info = shop.reflect([default])
    assert f"{default}.customers" in info.tables and "customers" not in info.tables
    assert ForeignKeyInfo(
        f"{default}.orders", ("customer_id",), f"{default}.customers", ("id",), "SET NULL"
    ) in set(info.foreign_keys)
    assert shop.delete_where_in(f"{default}.order_lines", "id", [1, 2]) == 2
    assert rows_of(shop, f"{default}.order_lines", "id") == []


def test_reflect_unreachable_server_is_transient() -> None:
    conn = SqlConnector("crm", "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")
    try:
        with pytest.raises(ConnectorError, match="reading the schema") as info:
            conn.reflect([None])
        assert info.value.transient
    finally:
        conn.close()


# --- scan ----------------------------------------------------------------------------------


def test_scan_returns_every_row_once_in_batches(shop: SqlConnector) -> None:
    batches = list(shop.scan("customers", ["id", "email"], batch=3))
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    assert sorted(row for b in batches for row in b) == [(i, e) for i, e, _ in CUSTOMERS]
    # Rows are sequences that compare, index and unpack as tuples (SQLAlchemy's Row: not
    # copied into tuples, which would cost as much as reading them).
    assert all(isinstance(row, Sequence) and not isinstance(row, str) for b in batches for row in b)


def test_scan_uses_a_server_side_cursor(shop: SqlConnector) -> None:
    cursors: list[str] = []

    def record(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        if "customers" in statement:
            cursors.append(type(cursor).__name__)

    sa.event.listen(shop.engine, "before_cursor_execute", record)
    assert sum(len(b) for b in shop.scan("customers", ["id"], batch=3)) == 10
    expected = {"sqlite": "Cursor", "postgresql": "ServerCursor", "mysql": "SSCursor"}
    assert cursors == [expected[dialect(shop)]]


def test_scan_stopped_early_releases_its_connection(shop: SqlConnector) -> None:
    stream = shop.scan("customers", ["id"], batch=3)
    assert len(next(stream)) == 3
    stream.close()
    assert shop.delete_where_in("customers", "id", [10]) == 1  # not blocked by the scan
    assert shop.engine.pool.checkedout() == 0


def test_scan_missing_table_is_a_connector_error(shop: SqlConnector) -> None:
    with pytest.raises(ConnectorError, match="scanning nowhere") as info:
        next(shop.scan("nowhere", ["id"]))
    assert not info.value.transient


# --- select / count --------------------------------------------------------------------------


def test_select_and_count_where_in_in_chunks(shop: SqlConnector) -> None:
    values = [2, 3, 5, 7, 9, 99, 3]  # more than `batch`, one absent, one repeated
    got = shop.select_where_in("customers", ["id", "phone"], "id", values, batch=2)
    assert sorted(got, key=lambda r: r[0]) == [(2, None), (3, "+44 0003"), (5, "+44 0005"),
                                               (7, "+44 0007"), (9, "+44 0009")]  # fmt: skip
    assert shop.count_where_in("customers", "id", values, batch=2) == 5
    by_email = shop.select_where_in("customers", ["id"], "email", ["c4@x.example"], batch=1)
    assert by_email == [(4,)]
    assert shop.count_where_in("orders", "customer_id", iter([1, 2, 3]), batch=1) == 4


def test_empty_values_make_no_query() -> None:
    conn = SqlConnector("crm", "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")
    try:  # the server does not exist: any query would fail
        assert conn.select_where_in("customers", ["id"], "id", []) == []
        assert conn.count_where_in("customers", "id", iter([])) == 0
        assert conn.delete_where_in("customers", "id", []) == 0
        assert conn.update_by_key("customers", "id", []) == 0
        conn.run_sql([])
    finally:
        conn.close()


def test_batch_must_be_positive(shop: SqlConnector) -> None:
    with pytest.raises(ValueError, match="batch"):
        shop.select_where_in("customers", ["id"], "id", [1], batch=0)
    with pytest.raises(ValueError, match="batch"):
        next(shop.scan("customers", ["id"], batch=0))


# --- delete --------------------------------------------------------------------------------


def test_delete_where_in_removes_exactly_those_rows(shop: SqlConnector) -> None:
    assert shop.delete_where_in("customers", "id", [5, 6, 7, 99, 6], batch=2) == 3
    assert rows_of(shop, "customers", "id") == [(i,) for i in (1, 2, 3, 4, 8, 9, 10)]
    assert shop.delete_where_in("customers", "id", [5, 6, 7]) == 0  # idempotent


def test_delete_forbidden_by_a_foreign_key_deletes_nothing(shop: SqlConnector) -> None:
    # Order 2 has no lines and goes in the first chunk; order 1 has a line (no ON DELETE).
    with pytest.raises(ConnectorError, match="deleting from orders") as info:
        shop.delete_where_in("orders", "id", [2, 1], batch=1)
    assert not info.value.transient
    assert rows_of(shop, "orders", "id") == [(1,), (2,), (3,), (4,)]  # 2 rolled back


def test_on_delete_set_null_nulls_the_children(shop: SqlConnector) -> None:
    assert shop.delete_where_in("customers", "id", [1]) == 1
    assert rows_of(shop, "orders", "id", "customer_id") == [(1, None), (2, None), (3, 2), (4, 3)]


# --- update --------------------------------------------------------------------------------


def test_update_by_key_changes_only_the_named_rows_and_columns(shop: SqlConnector) -> None:
    updated = shop.update_by_key(
        "customers",
        "id",
        [
            {"id": 1, "phone": None, "name": "erased"},
            {"id": 2, "phone": "+44 0000", "name": "erased"},
            {"id": 99, "phone": None, "name": "nobody"},  # no such row
        ],
    )
    assert updated == 2
    got = rows_of(shop, "customers", "id", "email", "phone", "name")
    assert got[:3] == [
        (1, "c1@x.example", None, "erased"),
        (2, "c2@x.example", "+44 0000", "erased"),
        (3, "c3@x.example", "+44 0003", None),
    ]
    assert got[3:] == [(i, e, p, None) for i, e, p in CUSTOMERS[3:]]
    # Setting the same values again still counts the rows (MariaDB: matched, not changed).
    assert shop.update_by_key("customers", "id", [{"id": 1, "name": "erased"}]) == 1


def test_update_by_key_is_atomic(shop: SqlConnector) -> None:
    rows = [{"id": 3, "email": "new@x.example"}, {"id": 4, "email": "c5@x.example"}]  # UNIQUE
    with pytest.raises(ConnectorError, match="updating customers") as info:
        shop.update_by_key("customers", "id", rows)
    assert "c5@x.example" not in str(info.value)  # MariaDB would quote the value
    assert rows_of(shop, "customers", "id", "email")[2:4] == [
        (3, "c3@x.example"),
        (4, "c4@x.example"),
    ]


def test_update_by_key_with_odd_column_names(shop: SqlConnector) -> None:
    """Column names with spaces, and names like the bound parameters' own, stay apart."""
    rows = [{"key col": 2, "b_0": "P", "b_1": "Q"}]
    assert shop.update_by_key("odd names", "key col", rows) == 1
    assert rows_of(shop, "odd names", "key col", "b_0", "b_1") == [(1, "x", "y"), (2, "P", "Q")]


def test_update_by_key_rejects_uneven_rows(shop: SqlConnector) -> None:
    with pytest.raises(ValueError, match="same columns"):
        shop.update_by_key("customers", "id", [{"id": 1, "phone": None}, {"id": 2, "name": ""}])
    with pytest.raises(ValueError, match="key column"):
        shop.update_by_key("customers", "id", [{"phone": None}])
    with pytest.raises(ValueError, match="no column"):
        shop.update_by_key("customers", "id", [{"id": 1}])


# --- run_sql -------------------------------------------------------------------------------


def test_run_sql_runs_statements_in_order(shop: SqlConnector) -> None:
    shop.run_sql(
        [
            # `%` and `:name` reach the database as written: nothing is bound.
            "INSERT INTO customers (id, email) VALUES (20, 'a%b:c@x.example')",
            "UPDATE customers SET phone = 'after' WHERE id = 20",
            "UPDATE customers SET name = phone WHERE id = 20",
        ]
    )
    assert shop.select_where_in("customers", ["email", "phone", "name"], "id", [20]) == [
        ("a%b:c@x.example", "after", "after")
    ]


def test_run_sql_is_one_transaction(shop: SqlConnector) -> None:
    with pytest.raises(ConnectorError, match="refresh statement 2 of 3"):
        shop.run_sql(
            [
                "INSERT INTO customers (id, email) VALUES (21, 'new@x.example')",
                "INSERT INTO customers (id, email) VALUES (22, 'c1@x.example')",  # UNIQUE
                "DELETE FROM customers",
            ]
        )
    assert shop.count_where_in("customers", "id", [21, 22]) == 0
    assert len(rows_of(shop, "customers", "id")) == 10


def test_run_sql_undoes_ddl_where_the_database_can(shop: SqlConnector) -> None:
    with pytest.raises(ConnectorError, match="refresh statement 3 of 3"):
        shop.run_sql(
            [
                "CREATE TABLE summary (n INTEGER)",
                "INSERT INTO summary SELECT count(*) FROM customers",
                "INSERT INTO nowhere VALUES (1)",
            ]
        )
    exists = sa.inspect(shop.engine).has_table("summary")
    assert exists is (dialect(shop) == "mysql")  # MariaDB commits around DDL


# --- a named schema on PostgreSQL ----------------------------------------------------------


def test_schema_qualified_tables_on_postgres(postgres_url: str) -> None:
    build_shop(postgres_url)
    engine = create_engine(postgres_url)
    with engine.begin() as c:
        c.execute(sa.schema.CreateSchema("app"))
    meta = sa.MetaData(schema="app")
    sa.Table("customers", meta, sa.Column("id", sa.Integer, primary_key=True), schema="public")
    items = sa.Table(
        "items",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("owner_id", sa.Integer, sa.ForeignKey("public.customers.id")),
        sa.Column("label", sa.String(30), nullable=False),
    )
    notes = sa.Table(
        "item_notes",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("item_id", sa.Integer, sa.ForeignKey(items.c.id, ondelete="CASCADE")),
    )
    meta.create_all(engine)
    with engine.begin() as c:
        c.execute(items.insert(), [{"id": i, "owner_id": i, "label": f"l{i}"} for i in (1, 2, 3)])
        c.execute(notes.insert(), [{"id": 10, "item_id": 1}, {"id": 11, "item_id": 2}])
    engine.dispose()

    conn = SqlConnector("shop", postgres_url)
    try:
        info = conn.reflect([None, "app"])
        assert {"customers", "app.items", "app.item_notes"} <= set(info.tables)
        assert info.tables["app.items"]["label"] == ColumnInfo(
            "label", False, False, False, "string", 30
        )
        assert {
            ForeignKeyInfo("app.items", ("owner_id",), "customers", ("id",), None),
            ForeignKeyInfo("app.item_notes", ("item_id",), "app.items", ("id",), "CASCADE"),
        } <= set(info.foreign_keys)
        # Asked for as public.*, the customers table is named so in foreign keys too.
        named = conn.reflect(["public", "app"])
        assert "public.customers" in named.tables
        assert ForeignKeyInfo("app.items", ("owner_id",), "public.customers", ("id",), None) in set(
            named.foreign_keys
        )

        assert rows_of(conn, "app.items", "id", "label") == [(1, "l1"), (2, "l2"), (3, "l3")]
        assert conn.delete_where_in("app.items", "id", [1, 3]) == 2
        assert rows_of(conn, "app.items", "id") == [(2,)]
        assert rows_of(conn, "app.item_notes", "id", "item_id") == [(11, 2)]  # cascaded
    finally:
        conn.close()
