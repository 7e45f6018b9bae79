"""The SQL connector against real SQLite, PostgreSQL and MariaDB databases.

Each test gets a fresh database from the `db_url` fixture (tests/conftest.py), which the
fixture creates and drops.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from reconciler.connectors.sql import SqlConnector
from reconciler.desired.model import PermissionsMap
from reconciler.errors import ConnectorError

MAP = PermissionsMap(table="user roles", user="user email", role="role")  # quoting matters


def make_platform(url: str) -> None:
    engine = sa.create_engine(url)
    meta = sa.MetaData()
    sa.Table(
        "user roles",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user email", sa.String(200), nullable=False),
        sa.Column("role", sa.String(50), nullable=False),
        sa.UniqueConstraint("user email", "role"),
    )
    meta.create_all(engine)
    with engine.begin() as conn:
        conn.execute(
            meta.tables["user roles"].insert(),
            [
                {"user email": "ana@x.example", "role": "admin"},
                {"user email": "dave@x.example", "role": "contributor"},
                {"user email": "dave@x.example", "role": "viewer"},
                {"user email": "o'brien@x.example", "role": "viewer"},
            ],
        )
    engine.dispose()


def test_read_grant_revoke_remove(db_url: str) -> None:
    make_platform(db_url)
    conn = SqlConnector("insights", db_url)
    try:
        assert conn.read_permissions(MAP) == {
            ("ana@x.example", "admin"),
            ("dave@x.example", "contributor"),
            ("dave@x.example", "viewer"),
            ("o'brien@x.example", "viewer"),
        }
        assert conn.grant_role(MAP, "ben@x.example", "viewer") == 1
        assert conn.grant_role(MAP, "ben@x.example", "viewer") == 0  # idempotent
        assert conn.revoke_role(MAP, "o'brien@x.example", "viewer") == 1
        assert conn.revoke_role(MAP, "o'brien@x.example", "viewer") == 0
        assert conn.remove_user(MAP, "dave@x.example") == 2
        assert conn.remove_user(MAP, "dave@x.example") == 0
        assert conn.read_permissions(MAP) == {
            ("ana@x.example", "admin"),
            ("ben@x.example", "viewer"),
        }
    finally:
        conn.close()


def test_missing_table_is_a_connector_error(db_url: str) -> None:
    sa.create_engine(db_url).connect().close()  # the database exists (SQLite: the file)
    conn = SqlConnector("insights", db_url)
    try:
        with pytest.raises(ConnectorError, match="reading user roles") as info:
            conn.read_permissions(MAP)
        assert info.value.system == "insights"
        assert not info.value.transient
    finally:
        conn.close()


def test_unreachable_server_is_transient() -> None:
    conn = SqlConnector("crm", "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")
    try:
        with pytest.raises(ConnectorError) as info:
            conn.read_permissions(MAP)
        assert info.value.transient
    finally:
        conn.close()


def test_missing_sqlite_file_is_an_error_not_a_new_database(tmp_path: Path) -> None:
    missing = tmp_path / "state/demo/missing.db"
    conn = SqlConnector("crm", f"sqlite:///{missing}")
    with pytest.raises(ConnectorError, match="missing.db does not exist"):
        conn.read_permissions(MAP)
    assert not missing.exists()


def test_connection_problems_name_the_server_not_the_password(
    postgres_url: str, mariadb_url: str
) -> None:
    from sqlalchemy.engine import make_url

    pg = make_url(postgres_url).set(database="dsr_no_such_db")
    maria = make_url(mariadb_url)
    cases = [
        (pg.render_as_string(hide_password=False), "database dsr_no_such_db does not exist"),
        (
            maria.set(password="wrong-secret").render_as_string(hide_password=False),
            "as user root: authentication failed",
        ),
        (
            maria.set(database="dsr_no_such_db").render_as_string(hide_password=False),
            "database dsr_no_such_db does not exist",
        ),
    ]
    for url, expected in cases:
        conn = SqlConnector("crm", url)
        try:
            with pytest.raises(ConnectorError) as info:
                conn.read_permissions(MAP)
        finally:
            conn.close()
        assert expected in str(info.value)
        assert "wrong-secret" not in str(info.value)
