"""Erasure end to end through the `dsr` CLI on SQLite, PostgreSQL and MariaDB.

Each test builds a fresh database (the `db_url` fixture creates and drops it) holding four
systems' tables, with foreign keys enforced: a writable CRM source (delete, mask, and a
retained table two foreign-key hops from the subject), a shop source dsr may not write, a
platform rebuilt by a real SQL refresh, and its system logs. Every output dsr writes is
grepped for the raw identifiers used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import sqlalchemy as sa
from click.testing import CliRunner, Result

from reconciler.cli import cli
from reconciler.connectors.sql import create_engine
from reconciler.desired.schemas import load_schema

ANA = "Ana.Subject@Example.com"  # only in the CRM
BEA = "bea.both@example.org"  # in the CRM and in the shop
ANA_PHONE = "+44 20 7946 0123"
KEEP = ["carl.keep@example.net", "dora.keep@example.net"]
RAW = [ANA, ANA.lower(), BEA, ANA_PHONE, "+442079460123", "Ana Subject", "Bea Both", "1 Main St"]

REFRESH = [
    "DELETE FROM consent",
    "DELETE FROM profiles",
    "INSERT INTO profiles (email, source) SELECT email, 'crm' FROM customers",
    "INSERT INTO profiles (email, source) SELECT email, 'shop' FROM shop_customers "
    "WHERE email NOT IN (SELECT email FROM customers)",
    "INSERT INTO consent (email, purpose) SELECT email, 'newsletter' FROM profiles",
]


def build_schema(url: str, *, orders_fk: str = "SET NULL") -> None:
    meta = sa.MetaData()
    s = sa.String(255)
    sa.Table(
        "customers",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", s, nullable=False, unique=True),
        sa.Column("phone", sa.String(40)),
        sa.Column("full_name", s),
    )
    nullable = orders_fk == "SET NULL"
    sa.Table(
        "orders",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "customer_id",
            sa.Integer,
            sa.ForeignKey("customers.id", ondelete=orders_fk or None),
            nullable=nullable,
        ),
        sa.Column("email", s, nullable=False),
        sa.Column("phone", sa.String(40)),
        sa.Column("shipping_address", s),
        sa.Column("total_cents", sa.Integer, nullable=False),
    )
    sa.Table(
        "order_lines",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("order_id", sa.Integer, sa.ForeignKey("orders.id"), nullable=False),
        sa.Column("sku", sa.String(20), nullable=False),
    )
    sa.Table(
        "shop_customers",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", s, nullable=False, unique=True),
    )
    sa.Table(
        "profiles",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("email", s, nullable=False),
        sa.Column("source", sa.String(10)),
    )
    sa.Table(
        "consent",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("email", s, nullable=False),
        sa.Column("purpose", sa.String(20)),
    )
    sa.Table(
        "system_logs",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("actor", s),
        sa.Column("event", s),
    )
    sa.Table(
        "user_roles",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_email", s, nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
    )
    sa.Table(
        "segments",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", s, nullable=False),
        sa.Column("created_by", s, nullable=False),
    )
    engine = create_engine(url)
    meta.create_all(engine)
    t = meta.tables
    with engine.begin() as conn:
        conn.execute(
            t["customers"].insert(),
            [
                {"id": 1, "email": ANA, "phone": ANA_PHONE, "full_name": "Ana Subject"},
                {"id": 2, "email": BEA, "phone": None, "full_name": "Bea Both"},
                {"id": 3, "email": KEEP[0], "phone": "+44 20 7946 0999", "full_name": "Carl"},
                {"id": 4, "email": KEEP[1], "phone": None, "full_name": "Dora"},
            ],
        )
        conn.execute(
            t["orders"].insert(),
            [
                {
                    "id": 10,
                    "customer_id": 1,
                    "email": ANA,
                    "phone": ANA_PHONE,
                    "shipping_address": "1 Main St",
                    "total_cents": 1000,
                },
                {
                    "id": 11,
                    "customer_id": 1,
                    "email": ANA,
                    "phone": None,
                    "shipping_address": "1 Main St",
                    "total_cents": 2000,
                },
                {
                    "id": 12,
                    "customer_id": 2,
                    "email": BEA,
                    "phone": None,
                    "shipping_address": "2 Side St",
                    "total_cents": 500,
                },
                {
                    "id": 13,
                    "customer_id": 3,
                    "email": KEEP[0],
                    "phone": None,
                    "shipping_address": "3 Far Rd",
                    "total_cents": 700,
                },
            ],
        )
        conn.execute(
            t["order_lines"].insert(),
            [
                {"id": 100, "order_id": 10, "sku": "A"},
                {"id": 101, "order_id": 10, "sku": "B"},
                {"id": 102, "order_id": 11, "sku": "C"},
                {"id": 103, "order_id": 13, "sku": "D"},
            ],
        )
        conn.execute(
            t["shop_customers"].insert(),
            [
                {"id": 1, "email": BEA.upper()},  # the shop writes it differently
                {"id": 2, "email": KEEP[1]},
            ],
        )
        conn.execute(
            t["system_logs"].insert(),
            [
                {"id": 1, "actor": ANA.lower(), "event": "login"},
                {"id": 2, "actor": ANA, "event": "export"},
                {"id": 3, "actor": KEEP[0], "event": "login"},
                {"id": 4, "actor": "ops@contoso.example", "event": "deploy"},
            ],
        )
        conn.execute(
            t["user_roles"].insert(),
            [
                {"user_email": "erin@contoso.example", "role": "admin"},
                {"user_email": "ana.admin@contoso.example", "role": "admin"},
                {"user_email": "ben@contoso.example", "role": "viewer"},
                {"user_email": "dave@contoso.example", "role": "contributor"},
            ],
        )
        conn.execute(
            t["segments"].insert(),
            [
                {"id": 1, "name": "vip", "created_by": "dave@contoso.example"},
                {"id": 2, "name": "churn", "created_by": "dave@contoso.example"},
                {"id": 3, "name": "new", "created_by": "erin@contoso.example"},
            ],
        )
        for stmt in REFRESH:
            conn.execute(sa.text(stmt))
    engine.dispose()


def systems_yaml(refresh: list[str] = REFRESH, mask_email: str = "redact") -> str:
    statements = "\n".join(f"        - {json.dumps(s)}" for s in refresh)
    return f"""\
systems:
  crm:
    role: source
    url: env:DSR_TEST_DB
    tables:
      customers:
        primary_key: id
        identities: {{email: email, phone: phone}}
        on_erasure: delete
      orders:
        primary_key: id
        subject: {{column: customer_id, references: customers.id}}
        on_erasure:
          mask: {{shipping_address: "null", phone: "null", email: {mask_email}}}
          reason: bookkeeping obligation, 10 years
      order_lines:
        primary_key: id
        subject: {{column: order_id, references: orders.id}}
        on_erasure: {{retain: invoices are kept under a legal obligation}}
  shop:
    role: source
    url: env:DSR_TEST_DB
    erase_at_source: false
    tables:
      shop_customers:
        primary_key: id
        identities: {{email: email}}
        on_erasure: delete
  insights:
    role: platform
    url: env:DSR_TEST_DB
    ingests: [crm, shop]
    refresh:
      sql:
{statements}
    permissions: {{table: user_roles, user: user_email, role: role}}
    user_data:
      segments: {{primary_key: id, user: created_by, on_erasure: delete}}
    tables:
      profiles: {{primary_key: id, identities: {{email: email}}, on_erasure: delete}}
      consent: {{primary_key: id, identities: {{email: email}}, on_erasure: delete}}
      system_logs: {{primary_key: id, identities: {{email: actor}}, kind: system_log}}
"""


@dataclass
class Env:
    ws: Path
    url: str
    outputs: list[str]

    def dsr(self, *args: str, input: str | None = None) -> Result:
        result = CliRunner().invoke(cli, ["-C", str(self.ws), *args], input=input)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        self.outputs.append(result.output)
        return result

    def rows(self, sql: str) -> list[tuple[object, ...]]:
        engine = create_engine(self.url)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(sa.text(sql))]
        finally:
            engine.dispose()

    def execute(self, sql: str) -> None:
        engine = create_engine(self.url)
        try:
            with engine.begin() as conn:
                conn.execute(sa.text(sql))
        finally:
            engine.dispose()

    def file(self, email: str, rid: str) -> None:
        result = self.dsr(
            "new",
            "erasure",
            "--email",
            "-",
            "--requested-by",
            "dpo@contoso.example",
            "--id",
            rid,
            input=email + "\n",
        )
        assert result.exit_code == 0, result.output

    def assert_no_raw_values(self) -> None:
        texts = list(self.outputs)
        for path in self.ws.rglob("*"):
            if path.is_file():
                texts.append(path.read_bytes().decode("utf-8", "replace"))
        engine = create_engine(f"sqlite:///{self.ws}/state/dsr.db")
        with engine.connect() as conn:
            for name in sa.inspect(conn).get_table_names():
                texts += [repr(tuple(r)) for r in conn.execute(sa.text(f'SELECT * FROM "{name}"'))]
        engine.dispose()
        blob = "\n".join(texts).lower()
        for raw in RAW:
            assert raw.lower() not in blob, f"raw value {raw!r} leaked"
        assert not re.search(r"ana\.subject|bea\.both", blob)


def make_env(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dsr_extra: str = "") -> Env:
    """A workspace in tmp_path whose systems all live in the database at `url`."""
    monkeypatch.setenv("DSR_TEST_DB", url)
    monkeypatch.setenv("DSR_IDENTITY_KEY", "test-identity-key-of-at-least-32-bytes")
    ws = tmp_path / "ws"
    (ws / "policies/requests").mkdir(parents=True)
    (ws / "dsr.yaml").write_text(
        "workspace: test\nidentity: {key: env:DSR_IDENTITY_KEY, key_id: t1}\n" + dsr_extra
    )
    (ws / "policies/systems.yaml").write_text(systems_yaml())
    return Env(ws, url, [])


@pytest.fixture
def env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    yield make_env(db_url, tmp_path, monkeypatch)


def plan_json(env: Env) -> dict[str, object]:
    result = env.dsr("plan", "--format", "json")
    data = json.loads(result.stdout)
    jsonschema.Draft202012Validator(load_schema("plan")).validate(data)
    return data  # type: ignore[no-any-return]


def test_full_flow(env: Env) -> None:
    build_schema(env.url)
    env.file(ANA, "DSR-T-ANA")
    env.file(BEA, "DSR-T-BEA")
    keep_before = env.rows("SELECT * FROM customers WHERE id IN (3, 4) ORDER BY id")
    kept_orders = env.rows("SELECT * FROM orders WHERE id = 13")

    planned = env.dsr("plan", "--detailed-exitcode")
    assert planned.exit_code == 2, planned.output
    data = plan_json(env)
    steps = {
        (c["action"], c["request"], c["system"], c["target"], c["rows"]) for c in data["changes"]
    }  # type: ignore[index, union-attr]
    assert ("delete_rows", "DSR-T-ANA", "crm", "customers", 1) in steps
    assert ("mask_rows", "DSR-T-ANA", "crm", "orders", 2) in steps
    assert ("await_source", "DSR-T-BEA", "shop", "shop_customers 1 row", 1) in steps
    views = {v["id"]: v for v in data["requests"]}  # type: ignore[union-attr, index]
    assert views["DSR-T-ANA"]["state"] == "pending"
    assert views["DSR-T-BEA"]["state"] == "waiting"
    retained = {(r["table"], r["rows"]) for r in views["DSR-T-ANA"]["retained"]}
    assert ("order_lines", 3) in retained  # two foreign-key hops from the customer
    actions = [c["id"] for c in data["changes"]]  # type: ignore[union-attr, index]
    assert actions.index("mask_rows:crm:DSR-T-ANA:orders") < actions.index(
        "delete_rows:crm:DSR-T-ANA:customers"
    )  # children before parents

    applied = env.dsr("apply", "--auto-approve")
    assert applied.exit_code == 0, applied.output
    assert "Waiting on a source owner: DSR-T-BEA" in applied.output
    assert env.rows("SELECT id FROM customers ORDER BY id") == [(3,), (4,)]
    assert env.rows("SELECT * FROM customers WHERE id IN (3, 4) ORDER BY id") == keep_before
    assert env.rows(
        "SELECT id, customer_id, email, phone, shipping_address FROM orders WHERE id IN (10, 11)"
        " ORDER BY id"
    ) == [(10, None, "[redacted]", None, None), (11, None, "[redacted]", None, None)]
    assert env.rows("SELECT * FROM orders WHERE id = 13") == kept_orders
    assert env.rows("SELECT count(*) FROM order_lines") == [(4,)]  # retained
    assert env.rows("SELECT id FROM system_logs ORDER BY id") == [(3,), (4,)]
    profiles = {r[0].lower() for r in env.rows("SELECT email FROM profiles")}  # type: ignore[union-attr]
    assert ANA.lower() not in profiles and BEA.lower() in profiles  # BEA still in the shop

    status = env.dsr("status")
    assert re.search(r"DSR-T-ANA\s+erasure\s+completed", status.output)
    assert re.search(r"DSR-T-BEA\s+erasure\s+waiting", status.output)
    again = plan_json(env)
    assert {c["action"] for c in again["changes"]} == {"await_source", "verify", "complete"}  # type: ignore[union-attr, index]

    env.execute("DELETE FROM shop_customers WHERE id = 1")  # the shop's owner acts
    applied = env.dsr("apply", "--auto-approve")
    assert applied.exit_code == 0, applied.output
    assert env.dsr("plan", "--detailed-exitcode").exit_code == 0
    assert {r[0].lower() for r in env.rows("SELECT email FROM profiles")} == set(KEEP)  # type: ignore[union-attr]

    shown = env.dsr("audit", "show", "DSR-T-ANA", "--json")
    receipt = [json.loads(line) for line in shown.output.splitlines() if '"complete"' in line]
    assert len(receipt) == 1
    tables = receipt[0]["details"]["receipt"]["tables"]
    assert tables["crm.customers"] == {"deleted": 1}
    assert tables["crm.orders"]["masked"] == 2
    assert tables["crm.order_lines"]["retained"] == 3
    assert tables["insights.system_logs"] == {"purged": 2}
    text = env.dsr("audit", "show", "DSR-T-ANA").output
    assert "RECEIPT DSR-T-ANA" in text
    assert re.search(r"crm\.orders\s+masked 2, retained 2\s+bookkeeping obligation", text)
    assert "verified absent or masked in: crm, insights, shop" in text
    assert env.dsr("audit", "verify").exit_code == 0

    # Suppression: the subject comes back through a re-sync and is erased again.
    env.execute(f"INSERT INTO customers (id, email, full_name) VALUES (9, '{ANA.lower()}', 'x')")
    back = env.dsr("plan", "--detailed-exitcode")
    assert back.exit_code == 2
    assert "re-ingested" in back.output
    assert env.dsr("apply", "--auto-approve").exit_code == 0
    assert env.rows("SELECT id FROM customers ORDER BY id") == [(3,), (4,)]
    assert env.dsr("plan", "--detailed-exitcode").exit_code == 0

    # Deleting the request file does not disarm the erasure; the plan says so.
    (env.ws / "policies/requests/DSR-T-ANA.yaml").unlink()
    env.execute(f"INSERT INTO customers (id, email, full_name) VALUES (8, '{ANA}', 'x')")
    gone = env.dsr("plan", "--detailed-exitcode")
    assert gone.exit_code == 2
    assert "DSR-T-ANA: the request file is gone" in gone.output
    assert env.dsr("apply", "--auto-approve").exit_code == 0
    assert env.rows("SELECT id FROM customers ORDER BY id") == [(3,), (4,)]
    env.assert_no_raw_values()


def test_failing_refresh_blocks_verification_and_recovers(env: Env) -> None:
    build_schema(env.url)
    (env.ws / "policies/systems.yaml").write_text(
        systems_yaml(refresh=["DELETE FROM no_such_table"])
    )
    env.file(ANA, "DSR-T-ANA")
    failed = env.dsr("apply", "--auto-approve")
    assert failed.exit_code == 1
    assert "FAILED" in failed.output and "refresh insights" in failed.output
    assert env.rows("SELECT id FROM customers ORDER BY id") == [(2,), (3,), (4,)]  # source done
    assert env.rows("SELECT count(*) FROM system_logs") == [(4,)]  # verify and purge skipped
    status = env.dsr("status")
    assert "last refresh" in status.output and "failed" in status.output
    assert re.search(r"DSR-T-ANA\s+erasure\s+blocked", status.output)
    replan = env.dsr("plan")
    assert "the last refresh of insights failed" in replan.output
    assert "still holds 1 erased subject" in replan.output

    (env.ws / "policies/systems.yaml").write_text(systems_yaml())
    assert env.dsr("apply", "--auto-approve").exit_code == 0
    assert env.dsr("plan", "--detailed-exitcode").exit_code == 0
    assert env.rows("SELECT id FROM system_logs ORDER BY id") == [(3,), (4,)]
    env.assert_no_raw_values()


def test_delete_of_parent_referenced_by_retained_rows_is_refused(env: Env) -> None:
    build_schema(env.url, orders_fk="")  # orders.customer_id NOT NULL, no ON DELETE
    env.file(ANA, "DSR-T-ANA")
    refused = env.dsr("plan", "--detailed-exitcode")
    assert refused.exit_code == 1
    assert "would break the foreign key orders.customer_id -> customers" in refused.output
    assert "ON DELETE SET NULL" in refused.output
    applied = env.dsr("apply", "--auto-approve")
    assert applied.exit_code == 1
    assert env.rows("SELECT count(*) FROM customers") == [(4,)]  # nothing half-applied
    assert env.rows("SELECT email FROM orders WHERE id = 10") == [(ANA,)]


def test_mask_that_breaks_a_constraint_is_refused_before_anything_runs(env: Env) -> None:
    build_schema(env.url)
    (env.ws / "policies/systems.yaml").write_text(systems_yaml(mask_email='"null"'))
    env.file(ANA, "DSR-T-ANA")
    invalid = env.dsr("validate")
    assert invalid.exit_code == 1
    assert re.search(
        r"policies/systems.yaml:\d+: systems.crm.tables.orders.on_erasure.mask.email: "
        r'"null" would break NOT NULL on crm.orders.email',
        invalid.output,
    ), invalid.output
    assert env.dsr("validate", "--offline").exit_code == 0
    refused = env.dsr("plan")
    assert refused.exit_code == 1
    assert "systems.crm.tables.orders.on_erasure.mask.email" in refused.output
    assert "would break NOT NULL" in refused.output
    assert env.dsr("apply", "--auto-approve").exit_code == 1
    assert env.rows("SELECT count(*) FROM customers") == [(4,)]


def test_legal_hold_stops_erasure(env: Env) -> None:
    build_schema(env.url)
    env.file(ANA, "DSR-T-ANA")
    path = env.ws / "policies/requests/DSR-T-ANA.yaml"
    path.write_text(path.read_text() + "legal_hold: litigation hold, case 2026-114\n")
    held = env.dsr("plan", "--detailed-exitcode")
    assert held.exit_code == 0
    assert "[held]" in held.output and "litigation hold" in held.output
    assert env.dsr("apply", "--auto-approve").exit_code == 0
    assert env.rows("SELECT count(*) FROM customers") == [(4,)]


def sqlite_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    url = f"sqlite:///{tmp_path}/systems.db"
    build_schema(url)
    return make_env(url, tmp_path, monkeypatch)


def test_one_failed_erasure_does_not_hold_back_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = sqlite_env(tmp_path, monkeypatch)
    env.execute(
        "CREATE TRIGGER keep_ana BEFORE DELETE ON customers WHEN OLD.id = 1 "
        "BEGIN SELECT RAISE(ABORT, 'customer 1 is locked by billing'); END"
    )
    env.file(ANA, "DSR-T-ANA")
    env.file(KEEP[0], "DSR-T-CARL")
    result = env.dsr("apply", "--auto-approve")
    assert result.exit_code == 1
    states = env.dsr("status").output
    assert re.search(r"DSR-T-CARL\s+erasure\s+completed", states), states
    assert re.search(r"DSR-T-ANA\s+erasure\s+blocked", states)
    # CARL's erasure went all the way: refreshed away from the platform and verified.
    assert KEEP[0] not in {r[0] for r in env.rows("SELECT email FROM profiles")}


def test_linked_rows_are_found_across_column_types(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = sqlite_env(tmp_path, monkeypatch)
    env.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, customer_ref VARCHAR(10), body TEXT)")
    env.execute("INSERT INTO notes VALUES (1, '1', 'a'), (2, '1', 'b'), (3, '3', 'c')")
    (env.ws / "policies/systems.yaml").write_text(
        systems_yaml().replace(
            "      order_lines:",
            "      notes:\n        primary_key: id\n"
            "        subject: {column: customer_ref, references: customers.id}\n"
            "        on_erasure: delete\n      order_lines:",
        )
    )
    env.file(ANA, "DSR-T-ANA")
    data = plan_json(env)
    notes = [c for c in data["changes"] if c["target"] == "notes"]  # type: ignore[union-attr, index]
    assert [(n["action"], n["rows"]) for n in notes] == [("delete_rows", 2)]
    assert env.dsr("apply", "--auto-approve").exit_code == 0
    assert env.rows("SELECT id FROM notes") == [(3,)]


def test_an_unreadable_system_blocks_its_requests_and_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = sqlite_env(tmp_path, monkeypatch)
    env.file(ANA, "DSR-T-ANA")
    carl = env.dsr(
        "new",
        "erasure",
        "--email",
        "-",
        "--requested-by",
        "dpo@contoso.example",
        "--systems",
        "crm,insights",
        "--id",
        "DSR-T-CARL",
        input=KEEP[0] + "\n",
    )
    assert carl.exit_code == 0, carl.output
    monkeypatch.setenv("DSR_SHOP_DB", f"sqlite:///{tmp_path}/gone.db")
    (env.ws / "policies/systems.yaml").write_text(
        systems_yaml().replace(
            "  shop:\n    role: source\n    url: env:DSR_TEST_DB",
            "  shop:\n    role: source\n    url: env:DSR_SHOP_DB",
        )
    )
    planned = env.dsr("plan", "--detailed-exitcode")
    assert planned.exit_code == 1
    assert "(1 could not be read)" in planned.output
    assert "DSR-T-ANA" in planned.output and "[blocked]" in planned.output
    assert "gone.db does not exist" in planned.output
    applied = env.dsr("apply", "--auto-approve")
    assert applied.exit_code == 1  # a scheduled job must not report success
    assert "DSR-T-ANA is blocked" in applied.output
    states = env.dsr("status").output
    assert re.search(r"DSR-T-CARL\s+erasure\s+completed", states)  # the rest went ahead
    assert env.rows("SELECT id FROM customers ORDER BY id") == [(1,), (2,), (4,)]
    again = env.dsr("plan")
    assert again.exit_code == 1 and "re-ingested" not in again.output
