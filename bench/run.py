"""`make bench`: how dsr's observe, plan and apply behave as tables and request counts grow.

A benchmark, not a test: it measures and prints, and asserts nothing about time. For each
backend (SQLite in a temp file; PostgreSQL and MariaDB in a database created here and dropped
afterwards, skipped with a note when the server is not reachable) it builds a CRM of N
customers (about 2 orders and 3 order lines each) with bulk inserts, writes a workspace in a
temp dir in the documented formats (dsr.yaml, policies/systems.yaml, one request file per
erasure, as `dsr new` writes them), and calls the library directly:

- observe + plan time for K pending erasures (best of --repeat runs);
- peak Python memory during one observe (tracemalloc; C-level buffers are not seen);
- the SQL statements one observe issues (a `before_cursor_execute` listener on the
  connector's engine), split into schema reflection and data queries;
- on SQLite, the time `executor.apply` takes to carry out the K=100 plan.

Results go to stdout as a table and to state/bench.json (git-ignored). See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import secrets
import shutil
import sqlite3
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from reconciler.apply import executor
from reconciler.commands.new import render_request
from reconciler.connectors import Connector, connect
from reconciler.desired.load import load_workspace
from reconciler.desired.model import Desired, RequestType, SubjectKind
from reconciler.observe.collect import observe
from reconciler.plan import planner
from reconciler.privacy.identity import IdentityKey, hash_identity
from reconciler.store import open_store
from reconciler.workspace import observe_all

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "state" / "bench.json"
URL_VARIABLE = "DSR_BENCH_CRM_URL"  # systems.yaml reads the CRM's URL from here (env:NAME)
KEY = IdentityKey("bench", b"dsr-bench-key-not-a-secret", development=True)
BATCH = 20_000  # rows per bulk insert
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
    sa.Column("email", sa.String(120), nullable=False, unique=True),
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
order_lines = sa.Table(
    "order_lines",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id"), nullable=False),
    sa.Column("sku", sa.String(40), nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("price_cents", sa.Integer, nullable=False),
)
# Created after the load (faster): a CRM indexes the columns it joins on.
INDEXES = (
    "CREATE INDEX ix_orders_customer_id ON orders (customer_id)",
    "CREATE INDEX ix_order_lines_order_id ON order_lines (order_id)",
)
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
      order_lines:
        primary_key: id
        subject: {{column: order_id, references: orders.id}}
        on_erasure: {{retain: invoices are kept under a legal obligation}}
"""

DSR_YAML = f"""\
workspace: bench
state: {{path: state/dsr.db}}
identity: {{key: env:DSR_BENCH_IDENTITY_KEY, key_id: {KEY.key_id}, \
development_key: {KEY.secret.decode()}}}
safety: {{max_revocations: 25}}
"""


def email_of(i: int) -> str:
    return f"Customer.{i}@Bench.Example"


def phone_of(i: int) -> str:
    return f"+44 7{i:09d}"


def crm_rows(n: int) -> Iterator[tuple[str, tuple[Any, ...]]]:
    """(table, row) for a CRM of n customers: 1-3 orders each (2 on average), 1-2 lines per
    order (3 per customer on average), parents before children. Deterministic."""
    order_id = line_id = 0
    for i in range(1, n + 1):
        yield "customers", (i, email_of(i), phone_of(i), f"Customer {i}", CITIES[i % 10], "2024")
        for j in range(1 + i % 3):
            order_id += 1
            address = f"{i} High Street, {CITIES[(i + j) % 10]}"
            total = 1000 + (i * 7 + j) % 9000
            yield "orders", (order_id, i, address, phone_of(i), email_of(i), total, "2025")
            for k in range(1 + (i + j) % 2):
                line_id += 1
                yield "order_lines", (line_id, order_id, f"SKU-{(i + k) % 500}", 1 + k, 999)


def batches(n: int) -> Iterator[dict[str, list[tuple[Any, ...]]]]:
    """The CRM's rows in batches, each holding at most BATCH customers' rows per table."""
    out: dict[str, list[tuple[Any, ...]]] = {t.name: [] for t in metadata.sorted_tables}
    for table, row in crm_rows(n):
        out[table].append(row)
        if table == "customers" and len(out[table]) >= BATCH:
            yield out
            out = {t.name: [] for t in metadata.sorted_tables}
    yield out


def insert_sql(table: sa.Table, mark: str) -> str:
    cols = ", ".join(c.name for c in table.columns)
    return f"INSERT INTO {table.name} ({cols}) VALUES ({', '.join([mark] * len(table.columns))})"


def load_sqlite(url: str, n: int) -> None:
    path = make_url(url).database
    assert path
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA journal_mode=OFF")  # build only: not persistent
        con.execute("PRAGMA synchronous=OFF")
        with con:
            for part in batches(n):
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
            for part in batches(n):
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
            for part in batches(n):
                for table in metadata.sorted_tables:
                    # PyMySQL turns this into multi-row INSERTs.
                    cur.executemany(insert_sql(table, "%s"), part[table.name])
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


def build_crm(backend: str, url: str, n: int, unmapped: int = 0) -> dict[str, int]:
    """Creates the tables, loads n customers' rows, indexes and analyses; adds `unmapped`
    empty tables that the data map does not name (a real CRM has many). Row counts."""
    engine = sa.create_engine(url)
    try:
        metadata.drop_all(engine)
        metadata.create_all(engine)
        LOADERS[backend](url, n)
        with engine.begin() as conn:
            for index in INDEXES:
                conn.exec_driver_sql(index)
            for i in range(unmapped):
                conn.exec_driver_sql(
                    f"CREATE TABLE unmapped_{i} (id INTEGER PRIMARY KEY, note VARCHAR(20))"
                )
            names = ", ".join(t.name for t in metadata.sorted_tables)
            conn.exec_driver_sql(f"ANALYZE TABLE {names}" if backend == "mariadb" else "ANALYZE")
        with engine.connect() as conn:
            return {
                t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
                for t in metadata.sorted_tables
            }
    finally:
        engine.dispose()


# --- databases ---------------------------------------------------------------------------


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
def database(backend: str, tmp: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{tmp / 'crm.db'}"
    else:
        with server_database(backend) as url:
            yield url


# --- the workspace ------------------------------------------------------------------------


def subject_ids(n: int, k: int) -> list[int]:
    """K customers spread evenly over the table (K=1: the one in the middle)."""
    return [1 + (n * (2 * j + 1)) // (2 * k) for j in range(k)]


def write_workspace(root: Path, n: int, k: int) -> None:
    """dsr.yaml, policies/systems.yaml and K erasure requests, as `dsr new` writes them."""
    if root.exists():
        shutil.rmtree(root)
    (root / "policies" / "requests").mkdir(parents=True)
    (root / "dsr.yaml").write_text(DSR_YAML)
    (root / "policies" / "systems.yaml").write_text(SYSTEMS_YAML)
    today = datetime.now(UTC).date()
    for j, i in enumerate(subject_ids(n, k), start=1):
        rid = f"BENCH-{j:05d}"
        text = render_request(
            request_id=rid,
            request_type=RequestType.ERASURE,
            subject_kind=SubjectKind.CUSTOMER,
            identities=[("email", hash_identity("email", email_of(i), KEY))],
            received=today,
            requested_by="privacy@bench.example",
            systems=None,
            written=today,
            key_id=KEY.key_id,
        )
        (root / "policies" / "requests" / f"{rid}.yaml").write_text(text)


@contextlib.contextmanager
def connectors(desired: Desired, root: Path) -> Iterator[dict[str, Connector]]:
    opened = {name: connect(s, root) for name, s in desired.systems.items()}
    try:
        yield opened
    finally:
        for c in opened.values():
            c.close()


def engine_of(conn: Connector) -> sa.Engine:
    engine = getattr(conn, "engine", None)
    assert isinstance(engine, sa.Engine), "the benchmark expects SQL connectors"
    return engine


@contextlib.contextmanager
def counting(engine: sa.Engine) -> Iterator[list[str]]:
    """Every statement sent to the database inside the block (an executemany counts once)."""
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)


def warm(conns: dict[str, Connector]) -> None:
    """Connect once, so that a dialect's first-connect queries are not counted."""
    for c in conns.values():
        engine_of(c).connect().close()


# --- measurements -------------------------------------------------------------------------


@dataclass
class Row:
    backend: str
    n: int
    k: int
    load_s: float = 0.0  # load_workspace (YAML, schemas), once
    observe_s: float = 0.0  # of the best observe+plan run
    plan_s: float = 0.0
    observe_plan_s: float = 0.0  # best of --repeat
    runs_s: list[float] = field(default_factory=list)
    peak_mb: float = 0.0  # tracemalloc peak during one observe
    statements: int = 0  # during one observe
    schema_statements: int = 0  # of those, reflecting the schema
    data_statements: int = 0
    changes: int = 0  # in the plan
    matched: dict[str, int] = field(default_factory=dict)  # rows found per table


def measure(backend: str, n: int, k: int, root: Path, repeat: int) -> Row:
    row = Row(backend, n, k)
    started = time.perf_counter()
    desired = load_workspace(root)
    row.load_s = time.perf_counter() - started
    pending = sum(1 for r in desired.requests.values() if r.type is RequestType.ERASURE)
    assert pending == k, f"{pending} erasure requests loaded, {k} written"

    best = None
    for _ in range(repeat):
        with connectors(desired, root) as conns:
            t0 = time.perf_counter()
            observed = observe(desired, conns, KEY)
            t1 = time.perf_counter()
            plan = planner.plan(desired, observed, now=datetime.now(UTC))
            t2 = time.perf_counter()
        row.runs_s.append(t2 - t0)
        if best is None or t2 - t0 < best:
            best = t2 - t0
            row.observe_s, row.plan_s, row.observe_plan_s = t1 - t0, t2 - t1, t2 - t0
    errors = [s.error for s in observed.systems.values() if s.error]
    if errors or plan.errors:
        raise RuntimeError(f"{backend} N={n} K={k}: {errors or list(plan.errors)}")
    row.changes = len(plan.changes)
    crm = observed.systems["crm"]
    for (_rid, table), m in crm.matches.items():
        row.matched[table] = row.matched.get(table, 0) + len(m.keys)

    with connectors(desired, root) as conns:
        warm(conns)
        with counting(engine_of(conns["crm"])) as seen:
            observe(desired, conns, KEY)
        row.statements = len(seen)
    with connectors(desired, root) as conns:
        warm(conns)
        with counting(engine_of(conns["crm"])) as seen:
            conns["crm"].reflect([None])
        row.schema_statements = len(seen)
    row.data_statements = row.statements - row.schema_statements

    with connectors(desired, root) as conns:
        warm(conns)
        tracemalloc.start()
        try:
            observe(desired, conns, KEY)
            row.peak_mb = tracemalloc.get_traced_memory()[1] / 1e6
        finally:
            tracemalloc.stop()
    return row


@dataclass
class ApplyRow:
    backend: str
    n: int
    k: int
    apply_s: float = 0.0  # executor.apply, best of --repeat
    runs_s: list[float] = field(default_factory=list)
    changes: int = 0
    rows: dict[str, int] = field(default_factory=dict)  # rows changed per action


def measure_apply(n: int, k: int, root: Path, built: Path, repeat: int) -> ApplyRow:
    """executor.apply of the K-erasure plan on a fresh copy of the SQLite CRM each time."""
    row = ApplyRow("sqlite", n, k)
    copy = built.with_name("crm-apply.db")
    os.environ[URL_VARIABLE] = f"sqlite:///{copy}"
    try:
        for _ in range(repeat):
            shutil.copyfile(built, copy)
            shutil.rmtree(root / "state", ignore_errors=True)
            desired = load_workspace(root)
            store = open_store(f"sqlite:///{root / 'state' / 'dsr.db'}")
            try:
                with store.lock("bench", timeout=0), connectors(desired, root) as conns:
                    observed = observe_all(desired, conns, store, KEY)
                    plan = planner.plan(desired, observed, now=datetime.now(UTC))
                    ctx = executor.Context(
                        desired=desired,
                        observed=observed,
                        connectors=conns,
                        store=store,
                        key=KEY,
                        workspace=root,
                        reobserve=functools.partial(observe_all, desired, conns, store, KEY),
                        clock=lambda: datetime.now(UTC),
                    )
                    t0 = time.perf_counter()
                    result = executor.apply(plan, ctx)
                    row.runs_s.append(time.perf_counter() - t0)
            finally:
                store.close()
            if not result.ok:
                bad = [o.message for o in result.failed][:3]
                raise RuntimeError(f"apply N={n} K={k} failed: {bad}")
            row.changes = len(plan.changes)
            row.rows = {}
            for o in result.outcomes:
                if o.change.action.writes:
                    row.rows[o.change.action.value] = (
                        row.rows.get(o.change.action.value, 0) + o.rows
                    )
    finally:
        copy.unlink(missing_ok=True)
        os.environ.pop(URL_VARIABLE, None)
    row.apply_s = min(row.runs_s)
    return row


# --- the run -----------------------------------------------------------------------------


def say(line: str) -> None:
    print(line, flush=True)


def fmt(row: Row) -> str:
    return (
        f"{row.backend:<8}  N={row.n:<6}  K={row.k:<3}  observe+plan {row.observe_plan_s:5.2f} s"
        f"  (observe {row.observe_s:.2f} + plan {row.plan_s:.3f})"
        f"  peak {row.peak_mb:4.1f} MB"
        f"  statements {row.statements} ({row.schema_statements} schema + "
        f"{row.data_statements} data)"
        f"  load {row.load_s:.2f} s"
    )


def fmt_apply(row: ApplyRow) -> str:
    rows = ", ".join(f"{a} {n}" for a, n in sorted(row.rows.items()))
    return (
        f"{row.backend:<8}  N={row.n:<6}  K={row.k:<3}  apply        {row.apply_s:5.2f} s"
        f"  ({row.changes} changes; rows: {rows})"
    )


def bench_backend(
    backend: str, sizes: Iterable[int], ks: list[int], repeat: int, unmapped: int, tmp: Path
) -> tuple[list[dict[str, Any]], list[str]]:
    results: list[dict[str, Any]] = []
    notes: list[str] = []
    for n in sizes:
        try:
            with database(backend, tmp) as url:
                t0 = time.perf_counter()
                counts = build_crm(backend, url, n, unmapped)
                built_s = time.perf_counter() - t0
                total = sum(counts.values())
                say(
                    f"{backend:<8}  N={n:<6}  built {total:,} rows "
                    f"({', '.join(f'{t} {c:,}' for t, c in counts.items())}) in {built_s:.1f} s"
                )
                results.append(
                    {"kind": "build", "backend": backend, "n": n, "rows": counts, "s": built_s}
                )
                os.environ[URL_VARIABLE] = url
                try:
                    for k in ks:
                        root = tmp / f"ws-{backend}-{n}-{k}"
                        write_workspace(root, n, k)
                        row = measure(backend, n, k, root, repeat)
                        say(fmt(row))
                        results.append({"kind": "observe_plan", **asdict(row)})
                finally:
                    os.environ.pop(URL_VARIABLE, None)
                if backend == "sqlite":
                    k = max(ks)
                    root = tmp / f"ws-{backend}-{n}-{k}"
                    built = Path(make_url(url).database or "")
                    arow = measure_apply(n, k, root, built, repeat)
                    say(fmt_apply(arow))
                    results.append({"kind": "apply", **asdict(arow)})
        except Unreachable as exc:
            note = f"{backend:<8}  skipped: {exc}"
            say(note)
            notes.append(note)
            break
        finally:
            if backend == "sqlite":
                (tmp / "crm.db").unlink(missing_ok=True)
    return results, notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="N=10,000 only (under a minute)")
    parser.add_argument(
        "--backends",
        default="sqlite,postgres,mariadb",
        help="comma-separated: sqlite, postgres, mariadb (default: all three)",
    )
    parser.add_argument("--sizes", help="comma-separated N (default: 10000,200000)")
    parser.add_argument("--requests", default="1,100", help="comma-separated K (default: 1,100)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing; the best counts")
    parser.add_argument(
        "--unmapped-tables",
        type=int,
        default=0,
        metavar="M",
        help="also create M empty tables the data map does not name (default 0)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results ({RESULTS})")
    args = parser.parse_args(argv)

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in LOADERS]
    if unknown:
        parser.error(f"unknown backend {', '.join(unknown)}; choose from {', '.join(LOADERS)}")
    sizes = [int(s) for s in (args.sizes or ("10000" if args.quick else "10000,200000")).split(",")]
    ks = [int(k) for k in args.requests.split(",")]
    if min(ks) < 1 or max(ks) > min(sizes) or args.repeat < 1:
        parser.error("need 1 <= K <= N and --repeat >= 1")

    say(
        f"dsr bench: N={','.join(map(str, sizes))} customers, K={','.join(map(str, ks))} "
        f"erasure requests, best of {args.repeat}; {', '.join(backends)}"
        + (f"; {args.unmapped_tables} unmapped tables" if args.unmapped_tables else "")
    )
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="dsr-bench-") as tmp:
        for backend in backends:
            found, skipped = bench_backend(
                backend, sizes, ks, args.repeat, args.unmapped_tables, Path(tmp)
            )
            results += found
            notes += skipped
    elapsed = time.perf_counter() - started
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
            "repeat": args.repeat,
            "backends": backends,
            "unmapped_tables": args.unmapped_tables,
        },
        "elapsed_s": elapsed,
        "results": results,
        "notes": notes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    say(f"results written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
