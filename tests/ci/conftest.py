"""Fixtures for proving the CI files `dsr init` writes, by running them.

- `ci_tools`, `wheelhouse`: the tools and the dsr wheels (tools.py); skipped with the reason
  when they cannot be installed here, failed instead under DSR_REQUIRE_SERVERS=1 (CI).
- `store`: a fresh PostgreSQL database as the shared state store, with the read-only role for
  plan jobs made by the SQL in the README; dropped afterwards.
- `contoso`: a workspace repository made by `dsr init` (a bare origin and a work clone), with
  the demo's data map and permissions, every system URL read from the environment, and
  Contoso's four systems built by the demo generator outside the repository (SQLite files
  named by absolute URLs, as production systems are named by their hosts).

A job never sees this repository's venv: its PATH has the host's Python, git, curl and bash,
and it installs dsr-reconciler from the wheelhouse with the templates' own pip command.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from click.testing import CliRunner, Result

from demo.contoso import build_demo, pick_subject
from reconciler.cli import cli

from .tools import REPO_ROOT, Tools, Unavailable, Wheelhouse, build_wheelhouse, install_tools

IDENTITY_KEY = "ci-test-identity-key-not-a-secret"
REQUESTER = "privacy@contoso.example"
APPROVER = "erin@contoso.example"  # an admin in the demo's access.yaml
DEMO_SYSTEMS = ("crm", "shop", "insights", "apps")
POSTGRES_URL = os.environ.get(
    "DSR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
CONTOSO_REFRESH = Path(__file__).with_name("contoso_refresh.py")
README_SECTION = "## CI: pull requests, scheduled applies"


def unavailable(reason: str) -> None:
    if os.environ.get("DSR_REQUIRE_SERVERS") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def ci_tools() -> Tools:
    try:
        return install_tools()
    except Unavailable as exc:
        unavailable(f"CI tools could not be installed: {exc}")
        raise


@pytest.fixture(scope="session")
def wheelhouse() -> Wheelhouse:
    try:
        return build_wheelhouse()
    except Unavailable as exc:
        unavailable(f"the dsr wheelhouse could not be built: {exc}")
        raise


def run(
    argv: list[str],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    check: bool = True,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv, cwd=cwd, env=env, text=True, capture_output=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"{argv} exited {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"
        )
    return done


def git(repo: Path, *args: str) -> str:
    identity = ["-c", "user.name=CI Test", "-c", "user.email=ci@contoso.example"]
    return run(["git", *identity, "-c", "init.defaultBranch=main", *args], cwd=repo).stdout.strip()


def host_python() -> str:
    """The interpreter behind this venv: what `python3` is on a runner without dsr."""
    return getattr(sys, "_base_executable", None) or sys.executable


def host_path(tmp: Path) -> str:
    """PATH for CI jobs: the host's python3 and python, then git, curl, bash and node from
    the system; no dsr."""
    bin_dir = tmp / "hostbin"
    if not bin_dir.exists():
        bin_dir.mkdir(parents=True)
        for name in ("python3", "python"):
            (bin_dir / name).symlink_to(host_python())
    path = f"{bin_dir}:/usr/local/bin:/usr/bin:/bin"
    assert shutil.which("dsr", path=path) is None, "a CI job must install dsr itself"
    return path


# --- the state store -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateStore:
    database: str
    role: str
    url: str  # as its owner: the apply job's DSR_STATE_URL
    readonly_url: str  # as the read-only role: the plan and status jobs' DSR_STATE_URL


def readonly_role_sql(database: str, owner: str, role: str) -> list[str]:
    """The README's SQL for the plan jobs' role, for this database, owner and role."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index(README_SECTION) :]
    block = re.search(r"```sql\n(.*?)```", section, re.S)
    assert block, f"README: no ```sql block under {README_SECTION!r}"
    sql = block.group(1)
    for name, value in (("dsr_state", database), ("dsr_apply", owner), ("dsr_plan", role)):
        assert re.search(rf"\b{name}\b", sql), f"README SQL: no {name}"
        sql = re.sub(rf"\b{name}\b", value, sql)
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


@contextlib.contextmanager
def state_store() -> Iterator[StateStore]:
    base = sa.make_url(POSTGRES_URL)
    admin = sa.create_engine(
        base, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5}
    )
    name = f"dsr_ci_{secrets.token_hex(5)}"
    role = f"{name}_plan"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        where = base.render_as_string(hide_password=True)
        unavailable(f"PostgreSQL not reachable at {where}: {str(exc).splitlines()[0]}")
    owner = base.username or "postgres"
    inside = sa.create_engine(base.set(database=name), isolation_level="AUTOCOMMIT")
    try:
        with inside.connect() as conn:
            for statement in readonly_role_sql(name, owner, role):
                conn.execute(sa.text(statement.replace("PASSWORD '...'", "")))
        yield StateStore(
            name,
            role,
            base.set(database=name).render_as_string(hide_password=False),
            base.set(database=name, username=role).render_as_string(hide_password=False),
        )
    finally:
        with inside.connect() as conn:
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r"
                ),
                {"r": role},
            )
            conn.execute(sa.text(f'DROP OWNED BY "{role}"'))
        inside.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


@pytest.fixture
def store() -> Iterator[StateStore]:
    with state_store() as made:
        yield made


# --- Contoso's workspace repository -----------------------------------------------------------


def env_name(system: str) -> str:
    return f"{system.upper()}_URL"


@dataclass
class Contoso:
    systems_dir: Path  # the demo databases, under state/demo/
    origin: Path  # the bare repository every runner clones
    work: Path  # the privacy engineer's clone
    urls: dict[str, str] = field(default_factory=dict)  # CRM_URL=sqlite:////... per system

    def dsr(
        self,
        *args: str,
        state_url: str | None = None,
        input: str | None = None,
        cwd: Path | None = None,
    ) -> Result:
        """dsr as a person runs it on their machine, on a clone (default: the work clone)."""
        env: dict[str, str | None] = {
            **self.urls,
            "DSR_IDENTITY_KEY": IDENTITY_KEY,
            "DSR_STATE_URL": state_url,  # None: unset
        }
        args = ("-C", str(cwd or self.work), *args)
        return CliRunner().invoke(cli, args, input=input, env=env, catch_exceptions=False)

    def subject(self, where: str) -> str:
        """A demo customer's address: it only ever travels into `dsr new` on stdin."""
        return pick_subject(self.systems_dir, where)

    def new_request(self, kind: str, request_id: str, where: str) -> None:
        """`dsr new KIND` about a demo customer (`where`: see `python -m demo pick-subject`)."""
        new = ["new", kind, "--email", "-", "--requested-by", REQUESTER, "--id", request_id]
        result = self.dsr(*new, input=self.subject(where) + "\n")
        assert result.exit_code == 0, result.output

    def branch(self, name: str) -> None:
        git(self.work, "checkout", "-q", "-B", name, "main")

    def commit_and_push(self, message: str) -> None:
        git(self.work, "add", "-A")
        git(self.work, "commit", "-q", "-m", message)
        git(self.work, "push", "-q", "origin", "HEAD")

    def merge(self, branch: str) -> None:
        git(self.work, "checkout", "-q", "main")
        git(self.work, "merge", "-q", "--no-ff", "-m", f"Merge {branch}", branch)
        git(self.work, "push", "-q", "origin", "main")

    def fresh_clone(self, into: Path) -> Path:
        """A new runner's checkout: nothing of any earlier run's files."""
        run(["git", "clone", "-q", str(self.origin), str(into)])
        return into


def add_system_lines(work: Path) -> None:
    """What the CI files ask of the user: a variable line per system, beside CRM_URL's."""
    others = [s for s in DEMO_SYSTEMS if s != "crm"]
    for name, suffix in (("dsr-plan.yml", "_READONLY"), ("dsr-apply.yml", "")):
        path = work / ".github" / "workflows" / name
        text = path.read_text()
        line = re.search(rf"^( +)CRM_URL: \$\{{\{{ secrets\.CRM_URL{suffix} \}}\}}\n", text, re.M)
        assert line, f"{name}: no CRM_URL line to follow"
        extra = "".join(
            f"{line.group(1)}{env_name(s)}: ${{{{ secrets.{env_name(s)}{suffix} }}}}\n"
            for s in others
        )
        path.write_text(text[: line.end()] + extra + text[line.end() :])
    path = work / ".gitlab-ci.yml"
    text = path.read_text()
    old = 'export DSR_STATE_URL="$DSR_STATE_URL_READONLY" CRM_URL="$CRM_URL_READONLY"'
    assert old in text
    new = old + "".join(f' {env_name(s)}="${env_name(s)}_READONLY"' for s in others)
    path.write_text(text.replace(old, new))


def make_contoso(tmp: Path) -> Contoso:
    systems_dir = tmp / "contoso-systems"
    build_demo(systems_dir)
    urls = {
        env_name(s): f"sqlite:///{systems_dir / 'state' / 'demo' / f'{s}.db'}" for s in DEMO_SYSTEMS
    }
    origin = tmp / "origin.git"
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)])
    work = tmp / "work"
    result = CliRunner().invoke(cli, ["init", str(work), "--ci", "both"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    git(work, "init", "-q", "-b", "main")
    git(work, "remote", "add", "origin", str(origin))
    # The demo's data map, with every URL from the environment and the refresh jobs run by
    # Contoso's own interpreter (contoso_refresh.py says why).
    systems = yaml.safe_load((REPO_ROOT / "policies" / "systems.yaml").read_text())
    for name, system in systems["systems"].items():
        system["url"] = f"env:{env_name(name)}"
        if "refresh" in system:
            command = [sys.executable, str(CONTOSO_REFRESH), name, str(systems_dir)]
            system["refresh"] = {"command": command}
    (work / "policies" / "systems.yaml").write_text(
        "# Contoso's data map; every URL comes from the environment (CI secrets).\n"
        + yaml.safe_dump(systems, sort_keys=False)
    )
    shutil.copy(REPO_ROOT / "policies" / "access.yaml", work / "policies" / "access.yaml")
    add_system_lines(work)
    # gitlab-ci-local keeps its builds and logs in the work tree.
    (work / ".gitignore").write_text("/.gitlab-ci-local/\n")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "Contoso's workspace: dsr init, the data map, permissions")
    git(work, "push", "-q", "-u", "origin", "main")
    git(work, "remote", "set-head", "origin", "main")
    return Contoso(systems_dir, origin, work, urls)


@pytest.fixture
def contoso(tmp_path: Path) -> Contoso:
    return make_contoso(tmp_path)
