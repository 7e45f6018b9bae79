"""`make bench`: dsr's plan, no-op plan and apply against the floor and a per-request engine.

A benchmark, not a test: it measures and prints, and asserts nothing about time. For each
backend (SQLite in a temp file; PostgreSQL and MariaDB in a database created here and dropped
afterwards, skipped with a note when the server is not reachable) and each size N it builds a
CRM of N rows (N/2 customers with an e-mail and a phone, N/2 orders linked to them), then:

- **floor**: the mapped columns (customers' key, e-mail and phone; orders' key and link)
  streamed out once through a plain DB-API cursor: what any plan must at least read;
- **baseline**: what a per-request engine does, one query per request per table, the
  customer found by `lower(trim(email)) = ?` (no usable index), timed on a sample of
  requests and scaled to K;
- for each K: a workspace with K erasure requests (written as `dsr new` writes them), and
  **plan** (load the workspace, observe, plan: `Workspace.load`, `observe_all`,
  `planner.plan`), the **rows and bytes** that plan fetched from the database (counted on the
  client, in a run of its own), **apply** (`dsr apply`, the command, in a subprocess), then
  the **no-op plan** (the same plan once the erasures are done).

Then permissions: an access.yaml of U users, a quarter of them drifted from the platform.

Every measurement runs in a fresh subprocess: its peak RSS is that process's `ru_maxrss`
(`os.wait4`), and timings exclude the interpreter's start and imports, except for the
commands (`dsr apply`, `dsr plan`), which are timed whole, as users run them. One table goes
to stdout, each figure with its ratio to the floor; JSON goes to state/bench/. See
bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "state" / "bench"
URL_VARIABLE = "DSR_BENCH_CRM_URL"  # systems.yaml reads the CRM's URL from here (env:NAME)
KEY_ID = "bench"
DEV_KEY = "dsr-bench-development-key-not-a-secret-0001"  # >= 32 bytes, published: bench only
BATCH = 20_000  # rows per bulk insert
SAMPLE = 10  # requests the per-request baseline is timed on
SERVERS = {
    "postgres": ("DSR_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
    "mariadb": ("DSR_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/"),
}

# --- the CRM ---------------------------------------------------------------------------

metadata = sa.MetaData()
customers = sa.Table(
    "customers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("email", sa.String(120), nullable=False),
    sa.Column("phone", sa.String(40)),
    sa.Column("full_name", sa.String(120), nullable=False),
    sa.Column("city", sa.String(60)),
    sa.Column("created_at", sa.String(30)),
)
orders = sa.Table(
    "orders",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("customer_id", sa.Integer, sa.ForeignKey("customers.id", ondelete="SET NULL")),
    sa.Column("shipping_address", sa.String(200)),
    sa.Column("phone", sa.String(40)),
    sa.Column("email", sa.String(120)),
    sa.Column("total_cents", sa.Integer, nullable=False),
    sa.Column("placed_at", sa.String(30)),
)
# Created after the load: a CRM indexes the column it joins on; e-mails are matched
# normalised, which no index serves.
INDEXES = ("CREATE INDEX ix_orders_customer_id ON orders (customer_id)",)
CITIES = ("Leeds", "Lyon", "Porto", "Graz", "Turku", "Gent", "Bergen", "Cork", "Brno", "Pisa")

SYSTEMS_YAML = f"""\
# The benchmark's data map: one CRM, a source dsr may write to (as the demo's crm).
systems:
  crm:
    url: env:{URL_VARIABLE}
    role: source
    erase_at_source: true
    tables:
      customers:
        primary_key: id
        identities: {{email: email, phone: phone}}
        on_erasure: delete
      orders:
        primary_key: id
        subject: {{column: customer_id, references: customers.id}}
        on_erasure:
          mask: {{shipping_address: "null", phone: "null", email: redact}}
          reason: bookkeeping obligation, 10 years
"""

DSR_YAML = f"""\
workspace: bench
state: {{path: state/dsr.db}}
identity: {{key: env:DSR_BENCH_IDENTITY_KEY, key_id: {KEY_ID}, development_key: {DEV_KEY}}}
safety: {{max_revocations: 1000000}}
"""


def email_of(i: int) -> str:
    return f" Customer.{i}@Bench.Example"  # as typed: a space and capitals, matched normalised


def phone_of(i: int) -> str:
    return f"+44 7{i:09d}"


def crm_batches(n: int) -> Iterator[dict[str, list[tuple[Any, ...]]]]:
    """N rows: N/2 customers and one order each, in batches of BATCH customers. Deterministic."""
    people = n // 2
    for start in range(1, people + 1, BATCH):
        ids = range(start, min(start + BATCH, people + 1))
        yield {
            "customers": [
                (i, email_of(i), phone_of(i), f"Customer {i}", CITIES[i % 10], "2024") for i in ids
            ],
            "orders": [
                (i, i, f"{i} High Street, {CITIES[i % 10]}", phone_of(i), email_of(i), 1000, "2025")
                for i in ids
            ],
        }


def insert_sql(table: sa.Table, mark: str) -> str:
    cols = ", ".join(c.name for c in table.columns)
    return f"INSERT INTO {table.name} ({cols}) VALUES ({', '.join([mark] * len(table.columns))})"


def load_sqlite(url: str, n: int) -> None:
    con = sqlite3.connect(make_url(url).database or "")
    try:
        con.execute("PRAGMA journal_mode=OFF")  # build only: not persistent
        con.execute("PRAGMA synchronous=OFF")
        with con:
            for part in crm_batches(n):
                for table in metadata.sorted_tables:
                    con.executemany(insert_sql(table, "?"), part[table.name])
    finally:
        con.close()


def load_postgres(url: str, n: int) -> None:
    engine = sa.create_engine(url)
    try:
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            for part in crm_batches(n):
                for table in metadata.sorted_tables:
                    cols = ", ".join(c.name for c in table.columns)
                    with cur.copy(f"COPY {table.name} ({cols}) FROM STDIN") as copy:
                        for row in part[table.name]:
                            copy.write_row(row)
            raw.commit()
        finally:
            raw.close()
    finally:
        engine.dispose()


def load_mariadb(url: str, n: int) -> None:
    engine = sa.create_engine(url)
    try:
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute("SET foreign_key_checks=0, unique_checks=0")
            for part in crm_batches(n):
                for table in metadata.sorted_tables:
                    cur.executemany(insert_sql(table, "%s"), part[table.name])  # multi-row
            raw.commit()
        finally:
            raw.close()
    finally:
        engine.dispose()


LOADERS: dict[str, Callable[[str, int], None]] = {
    "sqlite": load_sqlite,
    "postgres": load_postgres,
    "mariadb": load_mariadb,
}


def build_crm(backend: str, url: str, n: int) -> None:
    engine = sa.create_engine(url)
    try:
        metadata.drop_all(engine)
        metadata.create_all(engine)
        LOADERS[backend](url, n)
        with engine.begin() as conn:
            for index in INDEXES:
                conn.exec_driver_sql(index)
            names = ", ".join(t.name for t in metadata.sorted_tables)
            conn.exec_driver_sql(f"ANALYZE TABLE {names}" if backend == "mariadb" else "ANALYZE")
    finally:
        engine.dispose()


@contextlib.contextmanager
def server_database(backend: str) -> Iterator[str]:
    """A new empty database on the server, dropped afterwards. Raises when unreachable."""
    variable, default = SERVERS[backend]
    base = os.environ.get(variable, default)
    admin = sa.create_engine(
        base, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5}
    )
    name = f"dsr_bench_{secrets.token_hex(4)}"
    quoted = admin.dialect.identifier_preparer.quote(name)
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {quoted}"))
    except Exception as exc:
        admin.dispose()
        where = make_url(base).render_as_string(hide_password=True)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise Unreachable(
            f"not reachable at {where} ({type(exc).__name__}: {first}); set {variable}"
        ) from None
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        force = " WITH (FORCE)" if backend == "postgres" else ""
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {quoted}{force}"))
        admin.dispose()


class Unreachable(Exception):
    pass


@contextlib.contextmanager
def database(backend: str, tmp: Path, n: int) -> Iterator[str]:
    if backend == "sqlite":
        path = tmp / f"crm-{n}.db"
        try:
            yield f"sqlite:///{path}"
        finally:
            path.unlink(missing_ok=True)
    else:
        with server_database(backend) as url:
            yield url


def server_version(backend: str, url: str) -> str:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = "select sqlite_version()" if backend == "sqlite" else "select version()"
            return str(conn.exec_driver_sql(query).scalar_one()).split(" on ")[0]
    finally:
        engine.dispose()


# --- workspaces ---------------------------------------------------------------------------


def subject_ids(people: int, k: int, salt: int) -> list[int]:
    """K customers spread over the table; a different `salt` gives a disjoint set."""
    return [1 + salt + (people * (2 * j + 1)) // (2 * k) for j in range(k)]


def write_workspace(root: Path, ids: list[int]) -> None:
    """dsr.yaml, policies/systems.yaml and one erasure request per id, as `dsr new` writes."""
    from reconciler.commands.new import render_request
    from reconciler.desired.model import RequestType, SubjectKind
    from reconciler.privacy.identity import IdentityKey, hash_identity

    key = IdentityKey(KEY_ID, DEV_KEY.encode(), development=True)
    if root.exists():
        shutil.rmtree(root)
    (root / "policies" / "requests").mkdir(parents=True)
    (root / "dsr.yaml").write_text(DSR_YAML)
    (root / "policies" / "systems.yaml").write_text(SYSTEMS_YAML)
    today = datetime.now(UTC).date()
    for j, i in enumerate(ids, start=1):
        rid = f"BENCH-{j:05d}"
        text = render_request(
            request_id=rid,
            request_type=RequestType.ERASURE,
            subject_kind=SubjectKind.CUSTOMER,
            identities=[("email", hash_identity("email", email_of(i), key))],
            received=today,
            requested_by="privacy@bench.example",
            systems=None,
            written=today,
            key_id=KEY_ID,
        )
        (root / "policies" / "requests" / f"{rid}.yaml").write_text(text)


ROLES = ("admin", "contributor", "viewer", "analyst")


def user_of(i: int) -> str:
    return f"user{i:06d}@bench.example"


def write_permissions(root: Path, users: int) -> None:
    """A platform (SQLite) whose user_roles table differs from access.yaml for a quarter of
    the users: one in four holds one role too many or one too few."""
    if root.exists():
        shutil.rmtree(root)
    (root / "policies").mkdir(parents=True)
    (root / "dsr.yaml").write_text(DSR_YAML)
    (root / "policies" / "systems.yaml").write_text(
        "systems:\n  platform:\n    url: sqlite:///platform.db\n    role: source\n"
        "    erase_at_source: true\n"
        "    permissions: {table: user_roles, user: user_email, role: role}\n"
    )
    lines = ["admin_role: admin", f"roles: [{', '.join(ROLES)}]", "users:"]
    held: list[tuple[str, str]] = []
    for i in range(users):
        want = ["admin"] if i < 3 else [ROLES[1 + i % 3]] + ([ROLES[1 + (i + 1) % 3]] * (i % 2))
        lines.append(f"  {user_of(i)}: {{roles: [{', '.join(want)}]}}")
        have = list(want)
        if i % 4 == 1:  # drifted
            have = have[:-1] if len(have) > 1 else [*have, "analyst"]
        held += [(user_of(i), role) for role in have]
    (root / "policies" / "access.yaml").write_text("\n".join(lines) + "\n")
    con = sqlite3.connect(root / "platform.db")
    try:
        con.execute(
            "CREATE TABLE user_roles (id INTEGER PRIMARY KEY, user_email TEXT NOT NULL, "
            "role TEXT NOT NULL, UNIQUE (user_email, role))"
        )
        with con:
            con.executemany("INSERT INTO user_roles (user_email, role) VALUES (?, ?)", held)
    finally:
        con.close()


# --- workers: one subprocess per measurement ------------------------------------------------


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in the subprocess: one measurement, as a JSON-able dict."""
    kind = spec["kind"]
    if kind == "floor":
        return floor(spec["url"], spec.get("tables", FLOOR_QUERIES))
    if kind == "baseline":
        return baseline(spec["url"], spec["ids"])
    if kind == "plan":
        return plan(Path(spec["root"]), count=spec.get("count", False))
    raise ValueError(kind)


FLOOR_QUERIES = (
    "SELECT id, email, phone FROM customers",
    "SELECT id, customer_id FROM orders",
)


def raw_connection(url: str) -> Any:
    """A plain DB-API connection, as the driver gives it."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return sqlite3.connect(parsed.database or "")
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    _engines.append(engine)  # the connection lives as long as its engine
    return engine.raw_connection()


_engines: list[sa.Engine] = []


def floor(url: str, queries: tuple[str, ...]) -> dict[str, Any]:
    """Streams `queries` out through a plain cursor, timed; then again, untimed, to size them."""
    con = raw_connection(url)
    try:
        out: dict[str, Any] = {"rows": 0, "bytes": 0}
        for sizing in (False, True):
            started = time.perf_counter()
            for query in queries:
                cur = con.cursor()
                cur.execute(query)
                while batch := cur.fetchmany(10_000):
                    if sizing:
                        out["rows"] += len(batch)
                        out["bytes"] += sum(map(row_bytes, batch))
                cur.close()
            if not sizing:
                out["s"] = time.perf_counter() - started
    finally:
        con.close()
    return out


def baseline(url: str, ids: list[int]) -> dict[str, Any]:
    """One query per table per request, as a per-request engine runs them."""
    con = raw_connection(url)
    mark = "?" if isinstance(con, sqlite3.Connection) else "%s"
    try:
        started = time.perf_counter()
        found = 0
        for i in ids:
            cur = con.cursor()
            cur.execute(
                f"SELECT id FROM customers WHERE lower(trim(email)) = {mark}",
                (email_of(i).strip().lower(),),
            )
            keys = [row[0] for row in cur.fetchall()]
            for key in keys:
                cur.execute(f"SELECT id FROM orders WHERE customer_id = {mark}", (key,))
                found += len(cur.fetchall())
            found += len(keys)
            cur.close()
        seconds = time.perf_counter() - started
    finally:
        con.close()
    return {"s": seconds, "requests": len(ids), "found": found}


def plan(root: Path, count: bool) -> dict[str, Any]:
    """What `dsr plan` does once imported: load, observe (read-only store), plan."""
    from reconciler.observe.collect import observe_all
    from reconciler.plan import planner
    from reconciler.workspace import Workspace, utcnow

    tally = Tally() if count else None
    started = time.perf_counter()
    ws = Workspace.load(root)
    loaded = time.perf_counter()
    with ws.store(readonly=True) as store, ws.connectors() as conns:
        observed = observe_all(ws.desired, conns, store, ws.identity_key())
    observed_at = time.perf_counter()
    result = planner.plan(ws.desired, observed, now=utcnow())
    done = time.perf_counter()
    errors = [o.error for o in observed.systems.values() if o.error] + list(result.errors)
    if errors:
        raise RuntimeError(f"plan failed: {errors[:3]}")
    rows: dict[str, int] = {}
    for change in result.changes:
        if change.action.writes:
            rows[change.action.value] = rows.get(change.action.value, 0) + change.rows
    out: dict[str, Any] = {
        "s": done - started,
        "load_s": loaded - started,
        "observe_s": observed_at - loaded,
        "plan_s": done - observed_at,
        "changes": len(result.changes),
        "rows": rows,
    }
    if tally is not None:
        out["transferred"] = tally.totals()
    return out


def row_bytes(row: Any) -> int:
    """An estimate of a row's size on the wire: text and bytes by length, numbers as 8."""
    size = 0
    for value in row:
        if isinstance(value, str | bytes | bytearray | memoryview):
            size += len(value)
        elif value is not None:
            size += 8
    return size


SCHEMA_WORDS = ("sqlite_master", "pragma", "pg_catalog", "information_schema", "show ")


class Tally:
    """Rows and bytes the client fetches, counted at the drivers' cursors (psycopg, PyMySQL,
    sqlite3), split into data, schema reflection and connection set-up by the statement that
    produced them (a SQLAlchemy `before_cursor_execute` listener; a statement it does not see
    is set-up).
    Slows fetching down: used in a run of its own, never a timed one."""

    def __init__(self) -> None:
        self.counts = {"data": [0, 0], "schema": [0, 0], "setup": [0, 0]}
        self.statements: dict[int, str] = {}
        self.by_statement: dict[str, int] = {}  # data rows by the statement's first 100 chars
        self.depth = 0
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", self._seen)
        self._patch_drivers()

    def _seen(self, _conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        self.statements[id(cursor)] = statement

    def add(self, cursor: Any, rows: list[Any]) -> None:
        statement = self.statements.get(id(cursor), "").lower()
        if not statement:
            # Not through SQLAlchemy: a dialect's first-connect probes (server version,
            # schema, isolation level) or the state store's driver-level calls, never a
            # mapped table's rows (dsr reads those through SQLAlchemy).
            bucket = "setup"
        elif any(w in statement for w in SCHEMA_WORDS):
            bucket = "schema"
        else:
            bucket = "data"
        self.counts[bucket][0] += len(rows)
        self.counts[bucket][1] += sum(map(row_bytes, rows))
        if bucket == "data" and rows:
            what = " ".join(statement.split())[:100]
            self.by_statement[what] = self.by_statement.get(what, 0) + len(rows)

    def totals(self) -> dict[str, Any]:
        (rows, size), (srows, ssize) = self.counts["data"], self.counts["schema"]
        return {
            "rows": rows,
            "bytes": size,
            "schema_rows": srows,
            "schema_bytes": ssize,
            "setup_rows": self.counts["setup"][0],
            "by_statement": self.by_statement,
        }

    def _patch_drivers(self) -> None:
        import psycopg
        import pymysql.cursors

        classes = [psycopg.Cursor, psycopg.ServerCursor, pymysql.cursors.Cursor]
        classes.append(pymysql.cursors.SSCursor)
        for cls in classes:
            for name in ("fetchone", "fetchmany", "fetchall", "__iter__"):
                if name in cls.__dict__:
                    setattr(cls, name, self._wrap(cls.__dict__[name], name))
        tally = self

        class Cursor(sqlite3.Cursor):
            def fetchone(self) -> Any:
                row = super().fetchone()
                tally.add(self, [] if row is None else [row])
                return row

            def fetchmany(self, *args: Any) -> list[Any]:
                rows = super().fetchmany(*args)
                tally.add(self, rows)
                return rows

            def fetchall(self) -> list[Any]:
                rows = super().fetchall()
                tally.add(self, rows)
                return rows

            def __next__(self) -> Any:
                row = super().__next__()
                tally.add(self, [row])
                return row

        class Connection(sqlite3.Connection):
            def cursor(self, *args: Any, **kwargs: Any) -> Any:
                kwargs.setdefault("factory", Cursor)
                return super().cursor(*args, **kwargs)

        connect = sqlite3.connect

        def counting_connect(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("factory", Connection)
            return connect(*args, **kwargs)

        sqlite3.connect = counting_connect  # type: ignore[assignment]
        sqlite3.dbapi2.connect = counting_connect  # type: ignore[assignment]

    def _wrap(self, method: Any, name: str) -> Any:
        """A driver method that counts what it returns, once (drivers call each other)."""
        tally = self
        if name == "__iter__":

            def iterate(cursor: Any) -> Iterator[Any]:
                inner = method(cursor)
                while True:
                    tally.depth += 1
                    try:
                        row = next(inner, None)
                    finally:
                        tally.depth -= 1
                    if row is None:
                        return
                    if tally.depth == 0:
                        tally.add(cursor, [row])
                    yield row

            return iterate

        def fetch(cursor: Any, *args: Any, **kwargs: Any) -> Any:
            tally.depth += 1
            try:
                result = method(cursor, *args, **kwargs)
            finally:
                tally.depth -= 1
            if tally.depth == 0:
                if name == "fetchone":
                    tally.add(cursor, [] if result is None else [result])
                else:
                    tally.add(cursor, list(result))
            return result

        return fetch


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of the measured processes: as a user's, so no CI (apply would refuse
    the local state file) and bytecode cached (an installed package has its .pyc files; with
    PYTHONDONTWRITEBYTECODE every process would compile dsr and its libraries again)."""
    env = {**os.environ, "DSR_BENCH_IDENTITY_KEY": "", **extra}
    for name in ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "PYTHONDONTWRITEBYTECODE"):
        env.pop(name, None)
    return env


def warm_up() -> None:
    """Compile and cache dsr's and its libraries' bytecode once, before anything is timed."""
    code = "import reconciler.cli, reconciler.observe.collect, reconciler.plan.planner, pymysql"
    subprocess.run([sys.executable, "-c", code], env=subprocess_env(), check=True)


def run_worker(spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    """One measurement in a fresh interpreter: its result and its peak RSS in MB."""
    return run_process([sys.executable, __file__, "--worker", json.dumps(spec)], env)


def run_command(args: list[str], cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    """A `dsr` command in a subprocess, timed whole (start, imports and all)."""
    dsr = Path(sys.executable).with_name("dsr")
    started = time.perf_counter()
    out = run_process([str(dsr), "-C", str(cwd), *args], env, parse=False)
    out["s"] = time.perf_counter() - started
    return out


def run_process(argv: list[str], env: dict[str, str], parse: bool = True) -> dict[str, Any]:
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(argv, env=env, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        text, errors = stdout.read().decode(), stderr.read().decode()
    if proc.returncode not in (0, 2) or (parse and proc.returncode):
        tail = "\n".join((errors or text).strip().splitlines()[-5:])
        raise RuntimeError(f"{' '.join(argv[:4])}... exited {proc.returncode}:\n{tail}")
    out: dict[str, Any] = json.loads(text.strip().splitlines()[-1]) if parse else {}
    out["rss_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
    return out


# --- the run -----------------------------------------------------------------------------


def say(line: str) -> None:
    print(line, flush=True)


def best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest run, with the peak RSS of all of them."""
    out = dict(min(runs, key=lambda r: r["s"]))
    out["runs_s"] = [round(r["s"], 4) for r in runs]
    out["rss_mb"] = max(r["rss_mb"] for r in runs)
    return out


def bench_erasures(
    backend: str, n: int, ks: list[int], repeat: int, apply: bool, tmp: Path
) -> dict[str, Any]:
    """Every figure for one backend and size; raises Unreachable for a missing server."""
    with database(backend, tmp, n) as url:
        t0 = time.perf_counter()
        build_crm(backend, url, n)
        out: dict[str, Any] = {
            "workload": "erasure",
            "backend": backend,
            "n": n,
            "server": server_version(backend, url),
            "build_s": time.perf_counter() - t0,
            "k": {},
        }
        env = subprocess_env(**{URL_VARIABLE: url})
        say(f"{backend:<8} N={n:,}: built in {out['build_s']:.1f} s ({out['server']})")
        out["floor"] = best([run_worker({"kind": "floor", "url": url}, env) for _ in range(repeat)])
        say(f"{backend:<8} N={n:,}: floor {out['floor']['s']:.2f} s")
        people = n // 2
        for salt, k in enumerate(ks):
            ids = subject_ids(people, k, salt)
            sample = ids[:: max(1, len(ids) // SAMPLE)][:SAMPLE]
            base = run_worker({"kind": "baseline", "url": url, "ids": sample}, env)
            if base["found"] != 2 * len(sample):
                raise RuntimeError(f"baseline found {base['found']} rows for {len(sample)}")
            base["s_per_request"] = base["s"] / len(sample)
            base["s_for_k"] = base["s_per_request"] * k
            root = tmp / f"ws-{backend}-{n}-{k}"
            write_workspace(root, ids)
            row: dict[str, Any] = {"baseline": base}
            counted = run_worker({"kind": "plan", "root": str(root), "count": True}, env)
            row["transferred"] = counted["transferred"]
            row["matches"] = sum(counted["rows"].values())
            spec = {"kind": "plan", "root": str(root)}
            row["plan"] = best([run_worker(spec, env) for _ in range(repeat)])
            say(f"{backend:<8} N={n:,} K={k}: plan {row['plan']['s']:.2f} s")
            if apply:
                args = ["apply", "--auto-approve", "--allow-local-state"]
                row["apply"] = run_command(args, root, env)
                say(f"{backend:<8} N={n:,} K={k}: apply {row['apply']['s']:.2f} s")
                row["noop"] = best([run_worker(spec, env) for _ in range(repeat)])
                if row["noop"]["changes"]:
                    raise RuntimeError(f"no-op plan has {row['noop']['changes']} changes")
            shutil.rmtree(root, ignore_errors=True)
            out["k"][str(k)] = row
        return out


def bench_permissions(users: int, repeat: int, tmp: Path) -> dict[str, Any]:
    root = tmp / "ws-permissions"
    write_permissions(root, users)
    env = subprocess_env()
    repeat = max(3, repeat)  # each run takes about a second: best of three at least
    url = f"sqlite:///{root / 'platform.db'}"
    spec = {"kind": "plan", "root": str(root)}
    out: dict[str, Any] = {"workload": "permissions", "backend": "sqlite", "users": users}
    out["floor"] = best(
        [
            run_worker({"kind": "floor", "url": url, "tables": ["SELECT * FROM user_roles"]}, env)
            for _ in range(repeat)
        ]
    )
    row: dict[str, Any] = {}
    counted = run_worker({**spec, "count": True}, env)
    row["transferred"] = counted["transferred"]
    row["matches"] = counted["changes"]
    row["plan"] = best([run_worker(spec, env) for _ in range(repeat)])
    row["plan_command"] = best([run_command(["plan"], root, env) for _ in range(repeat)])
    say(f"permissions U={users:,}: plan {row['plan']['s']:.2f} s")
    row["apply"] = run_command(["apply", "--auto-approve", "--allow-local-state"], root, env)
    row["noop"] = best([run_worker(spec, env) for _ in range(repeat)])
    row["noop_command"] = best([run_command(["plan"], root, env) for _ in range(repeat)])
    if row["noop"]["changes"]:
        raise RuntimeError(f"permissions no-op plan has {row['noop']['changes']} changes")
    out["k"] = {"-": row}
    shutil.rmtree(root, ignore_errors=True)
    return out


def ratio(value: float | None, floor: float) -> str:
    if value is None:
        return "—"
    return f"{value:.2f} s ({value / floor:.1f}×)" if floor > 0 else f"{value:.2f} s"


def table(results: list[dict[str, Any]]) -> list[str]:
    """The one table: each figure beside the floor, as a multiple of it."""
    head = (
        "workload",
        "backend",
        "rows",
        "K",
        "floor",
        "plan",
        "no-op plan",
        "apply",
        "per-request",
        "vs per-req.",
        "peak RSS",
        "fetched rows",
        "fetched MB",
        "matches",
    )
    lines = []
    for r in results:
        floor = r["floor"]["s"]
        for k, row in r["k"].items():
            rss = max(row["plan"]["rss_mb"], row.get("noop", {}).get("rss_mb", 0))
            base = row.get("baseline", {}).get("s_for_k")
            speedup = (
                f"{base / row['plan']['s']:.{0 if base > 10 * row['plan']['s'] else 1}f}×"
                if base
                else "—"
            )
            apply = row.get("apply", {}).get("s")
            what = r["workload"]
            size = f"{r['n']:,}" if "n" in r else f"{r['users']:,} users"
            lines.append(
                (
                    what,
                    r["backend"],
                    size,
                    k,
                    f"{floor:.2f} s",
                    ratio(row["plan"]["s"], floor),
                    ratio(row.get("noop", {}).get("s"), floor),
                    ratio(apply, floor),
                    ratio(base, floor),
                    speedup,
                    f"{rss:.0f} MB",
                    f"{row['transferred']['rows']:,}",
                    f"{row['transferred']['bytes'] / 1e6:.1f}",
                    f"{row['matches']:,}",
                )
            )
    rows = [head, *lines]
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    out = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(head, widths, strict=True)) + " |"]
    out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for line in lines:
        out.append(
            "| " + " | ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)) + " |"
        )
    return out


def targets(results: list[dict[str, Any]]) -> list[str]:
    """Issue 11's targets, each met or not met with the measured number: erasures at the
    largest size run (the issue's workload is 1,000,000 rows), memory at every size."""
    out: list[str] = []

    def verdict(ok: bool, text: str) -> None:
        out.append(f"{'met    ' if ok else 'NOT MET'}  {text}")

    for r in (r for r in results if r["workload"] == "permissions"):
        row, users = r["k"]["-"], f"{r['users']:,} users"
        for key, what in (("plan", "plan"), ("noop", "no-op plan")):
            verdict(
                row[key]["s"] <= 1.0, f"permissions, {users}: {what} {row[key]['s']:.2f} s <= 1.0 s"
            )
        for key, what in (("plan_command", "dsr plan"), ("noop_command", "no-op dsr plan")):
            seconds = row[key]["s"]
            verdict(
                seconds <= 1.0,
                f"permissions, {users}: {what} command, whole, {seconds:.2f} s <= 1.0 s",
            )
    erasures = [r for r in results if r["workload"] == "erasure"]
    largest = max((r["n"] for r in erasures), default=0)
    for r in (r for r in erasures if r["n"] == largest):
        floor, ks = r["floor"]["s"], sorted(r["k"], key=int)
        where = f"{r['backend']}, {r['n']:,} rows"
        low, high = r["k"][ks[0]], r["k"][ks[-1]]
        limit = {"postgres": 3.0, "sqlite": 5.0}.get(r["backend"])
        if limit is not None:
            for key, what in (("plan", "plan"), ("noop", "no-op plan")):
                if key in high:
                    x = high[key]["s"] / floor
                    verdict(
                        x <= limit,
                        f"{where}, K={ks[-1]}: {what} {x:.1f}× the floor <= {limit:.0f}×",
                    )
            if r["backend"] == "postgres":
                got, want = high["transferred"]["rows"], high["matches"]
                verdict(
                    got == want, f"{where}, K={ks[-1]}: rows fetched {got:,} = matches {want:,}"
                )
        if len(ks) > 1:
            x = high["plan"]["s"] / low["plan"]["s"]
            verdict(
                x <= 1.1, f"{where}: plan at K={ks[-1]} is {x:.2f}× the plan at K={ks[0]} <= 1.1×"
            )
        if r["backend"] == "sqlite" and "apply" in high:
            seconds = high["apply"]["s"]
            verdict(seconds <= 10, f"{where}: apply of {ks[-1]} erasures {seconds:.1f} s <= 10 s")
        x = high["baseline"]["s_for_k"] / high["plan"]["s"]
        verdict(x >= 50, f"{where}, K={ks[-1]}: {x:.0f}× faster than per-request >= 50×")
    for backend in dict.fromkeys(r["backend"] for r in erasures):
        runs = sorted((r for r in erasures if r["backend"] == backend), key=lambda r: r["n"])
        rss = max(
            row[key]["rss_mb"]
            for r in runs
            for row in r["k"].values()
            for key in ("plan", "noop", "apply")
            if key in row
        )
        verdict(rss < 300, f"{backend}: peak RSS of every plan and apply {rss:.0f} MB < 300 MB")
        if len(runs) > 1:
            small, big = (
                max(row["plan"]["rss_mb"] for row in r["k"].values()) for r in (runs[0], runs[-1])
            )
            x = big / small
            verdict(
                x <= 1.2,
                f"{backend}: peak RSS {small:.0f} MB at {runs[0]['n']:,} rows, {big:.0f} MB at "
                f"{runs[-1]['n']:,} ({x:.2f}×, flat within 20%)",
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument(
        "--quick", action="store_true", help="10,000 rows, K=10,100, 1,000 users (about 1 min)"
    )
    parser.add_argument(
        "--backends",
        default="sqlite,postgres,mariadb",
        help="comma-separated: sqlite, postgres, mariadb (default: all three)",
    )
    parser.add_argument("--sizes", help="comma-separated rows N (default: 100000,1000000)")
    parser.add_argument("--requests", help="comma-separated K (default: 10,1000)")
    parser.add_argument("--users", type=int, help="access.yaml users (default: 10000; 0: skip)")
    parser.add_argument(
        "--apply-sizes",
        help="sizes at which to apply and plan again (default: the largest; 'none' to skip)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per timing; the best counts")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON folder ({RESULTS})")
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in LOADERS]
    if unknown:
        parser.error(f"unknown backend {', '.join(unknown)}; choose from {', '.join(LOADERS)}")
    sizes = [
        int(s) for s in (args.sizes or ("10000" if args.quick else "100000,1000000")).split(",")
    ]
    ks = [int(k) for k in (args.requests or ("10,100" if args.quick else "10,1000")).split(",")]
    users = args.users if args.users is not None else (1000 if args.quick else 10_000)
    if args.apply_sizes == "none":
        apply_sizes: set[int] = set()
    else:
        apply_sizes = {int(s) for s in (args.apply_sizes or str(max(sizes))).split(",")}
    if min(ks) < 1 or len(ks) >= (min(sizes) // 2) // max(ks) or args.repeat < 1:
        parser.error("need K >= 1, --repeat >= 1, and K well below N/2 (the customers)")

    say(
        f"dsr bench: rows {', '.join(f'{s:,}' for s in sizes)}; K {', '.join(map(str, ks))}; "
        f"{users:,} users; best of {args.repeat}; {', '.join(backends)}"
    )
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    notes: list[str] = []
    warm_up()
    with tempfile.TemporaryDirectory(prefix="dsr-bench-") as tmp:
        if users:
            try:
                results.append(bench_permissions(users, args.repeat, Path(tmp)))
            except Exception as exc:
                notes.append(f"permissions failed: {type(exc).__name__}: {exc}")
                say(notes[-1])
        for backend in backends:
            for n in sizes:
                try:
                    results.append(
                        bench_erasures(backend, n, ks, args.repeat, n in apply_sizes, Path(tmp))
                    )
                except Unreachable as exc:
                    notes.append(f"{backend} skipped: {exc}")
                    say(notes[-1])
                    break
                except Exception as exc:  # a failed measurement is reported; the rest runs
                    notes.append(f"{backend} N={n:,} failed: {type(exc).__name__}: {exc}")
                    say(notes[-1])
    elapsed = time.perf_counter() - started

    say("")
    for line in table(results):
        say(line)
    say("")
    verdicts = targets(results)
    for line in verdicts:
        say(line)
    for note in notes:
        say(note)
    say(f"done in {elapsed:.0f} s")

    report = {
        "date": date.today().isoformat(),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "options": {
            "sizes": sizes,
            "requests": ks,
            "users": users,
            "repeat": args.repeat,
            "backends": backends,
            "apply_sizes": sorted(apply_sizes),
        },
        "elapsed_s": elapsed,
        "results": results,
        "table": table(results),
        "targets": verdicts,
        "notes": notes,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for name in (f"bench-{stamp}.json", "latest.json"):
        (args.out / name).write_text(json.dumps(report, indent=2) + "\n")
    say(f"results written to {args.out / 'latest.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
