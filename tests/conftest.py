"""Shared fixtures: fresh real databases (SQLite, PostgreSQL, MariaDB) and the demo workspace.

Every database a fixture hands out is new and empty, and is dropped afterwards, so a test may
do anything in it. No database is mocked. A server that cannot be reached skips its tests,
unless DSR_REQUIRE_SERVERS=1 (set by CI), which fails them: CI never passes by skipping.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, event, make_url, text

from demo.contoso import build_demo

REPO_ROOT = Path(__file__).resolve().parent.parent

SERVERS = {
    "postgres": (
        "PostgreSQL",
        "DSR_TEST_POSTGRES_URL",
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
    ),
    "mariadb": ("MariaDB", "DSR_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
}


@pytest.fixture(scope="session", autouse=True)
def _not_on_a_ci_runner() -> Iterator[None]:
    """Tests run as on a laptop even when the suite itself runs in CI: `CI` set changes what
    `dsr apply` accepts (a local state file is refused). Session-wide, so that module-scoped
    fixtures see it too; tests of that behaviour set `CI` themselves."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("CI", "GITHUB_ACTIONS", "GITLAB_CI"):
            mp.delenv(name, raising=False)
        yield


def make_engine(url: str) -> Engine:
    """An engine on `url`; on SQLite, with foreign keys enforced on every connection."""
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _enforce_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA foreign_keys=ON")

    return engine


@contextmanager
def _fresh_server_database(kind: str) -> Iterator[str]:
    """Create an empty database on the server for `kind`, yield its URL, drop it afterwards."""
    label, variable, default = SERVERS[kind]
    base = os.environ.get(variable, default)
    admin = create_engine(base, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
    name = f"dsr_t_{secrets.token_hex(6)}"
    quoted = admin.dialect.identifier_preparer.quote(name)
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {quoted}"))
    except Exception as exc:  # any failure to reach the server or create a database
        admin.dispose()
        where = make_url(base).render_as_string(hide_password=True)
        reason = f"{label} not reachable at {where}: {exc.__class__.__name__}: {exc}"
        reason = f"{reason.splitlines()[0]}; set {variable}"
        if os.environ.get("DSR_REQUIRE_SERVERS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        force = " WITH (FORCE)" if kind == "postgres" else ""
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {quoted}{force}"))
        admin.dispose()


@pytest.fixture(
    params=[
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("mariadb", marks=pytest.mark.mariadb),
    ],
    ids=["sqlite", "postgres", "mariadb"],
)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, empty database on each backend in turn."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    with _fresh_server_database(request.param) as url:
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database."""
    with _fresh_server_database("postgres") as url:
        yield url


@pytest.fixture
def mariadb_url() -> Iterator[str]:
    """The URL of a fresh, empty MariaDB database."""
    with _fresh_server_database("mariadb") as url:
        yield url


@pytest.fixture
def demo_workspace(tmp_path: Path) -> Path:
    """A copy of the repository's demo workspace policies, with the demo databases built."""
    (tmp_path / "policies").mkdir()
    shutil.copy(REPO_ROOT / "dsr.yaml", tmp_path / "dsr.yaml")
    for name in ("systems.yaml", "access.yaml"):
        shutil.copy(REPO_ROOT / "policies" / name, tmp_path / "policies" / name)
    build_demo(tmp_path)
    return tmp_path


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium, installed (apt) when missing and this is allowed; else a skip with
    the reason, which DSR_REQUIRE_SERVERS=1 (CI) turns into a failure."""
    found = shutil.which("chromium")
    if found is None and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium"],
            env=env,
            capture_output=True,
            check=False,
        )
        found = shutil.which("chromium")
    if found is None:
        reason = "Debian's chromium is not installed and could not be (apt-get install chromium)"
        if os.environ.get("DSR_REQUIRE_SERVERS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return found
