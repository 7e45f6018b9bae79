"""The SQL connector against real SQLite, PostgreSQL and MariaDB databases.

Each test gets a fresh database from the `db_url` fixture (tests/conftest.py), which the
fixture creates and drops.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from reconciler.connectors.sql import SqlConnector, resolve_url
from reconciler.errors import ConnectorError, DsrError
from reconciler.model import PermissionsMap, System, SystemRole

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


def test_resolve_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rel = System("a", SystemRole.SOURCE, "sqlite:///state/demo/a.db")
    assert resolve_url(rel, tmp_path) == f"sqlite:///{tmp_path}/state/demo/a.db"
    absolute = System("a", SystemRole.SOURCE, "sqlite:////srv/a.db")
    assert resolve_url(absolute, tmp_path) == "sqlite:////srv/a.db"
    env = System("crm", SystemRole.SOURCE, "env:CRM_URL")
    monkeypatch.setenv("CRM_URL", "postgresql+psycopg://u:secret@h/db")
    assert resolve_url(env, tmp_path) == "postgresql+psycopg://u:secret@h/db"
    monkeypatch.delenv("CRM_URL")
    with pytest.raises(DsrError, match="CRM_URL is not set"):
        resolve_url(env, tmp_path)
