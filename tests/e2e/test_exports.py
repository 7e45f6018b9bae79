"""Exports and platform users end to end on SQLite, PostgreSQL and MariaDB.

The same four systems as the erasure tests (`test_erasure.build_schema`), plus a
policies/access.yaml naming the tenant admins. Packages are checked against the databases
row by row; approvals, exactly-once builds, killed builds and expiry are exercised through
the CLI.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from e2e.test_erasure import ANA, BEA, KEEP, Env, build_schema, make_env, plan_json
from reconciler.outbox.package import TableRows, build_package, verify_package
from reconciler.store import open_store

ACCESS = """\
roles: [admin, contributor, viewer]
users:
  erin@contoso.example: {roles: [admin]}
  ana.admin@contoso.example: {roles: [admin]}
  ben@contoso.example: {roles: [viewer]}
"""


@pytest.fixture
def env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    e = make_env(
        db_url, tmp_path, monkeypatch, "exports: {outbox: state/outbox, expire_after_days: 7}\n"
    )
    (e.ws / "policies/access.yaml").write_text(ACCESS)
    build_schema(db_url)
    # access.yaml removes dave (contributor) on the first apply; keep tests about exports.
    assert e.dsr("apply", "--auto-approve").exit_code == 0
    yield e


def file_export(
    env: Env, email: str, rid: str, *, by: str = "dpo@contoso.example", kind: str = "customer"
) -> None:
    result = env.dsr(
        "new",
        "export",
        "--email",
        "-",
        "--requested-by",
        by,
        "--kind",
        kind,
        "--received",
        "2026-11-20",
        "--id",
        rid,
        input=email + "\n",
    )
    assert result.exit_code == 0, result.output


def approve(env: Env, rid: str, by: str, on: str = "2026-11-21") -> None:
    result = env.dsr("approve", rid, "--by", by, "--on", on)
    assert result.exit_code == 0, result.output


def package(env: Env, rid: str) -> Path:
    return env.ws / "state/outbox" / f"{rid}.zip"


def read(path: Path, name: str) -> list[dict[str, object]]:
    with zipfile.ZipFile(path) as z:
        return json.loads(z.read(name))  # type: ignore[no-any-return]


def test_package_holds_exactly_the_subjects_rows(env: Env) -> None:
    file_export(env, ANA, "DSR-E-ANA")
    approve(env, "DSR-E-ANA", "erin@contoso.example")
    planned = plan_json(env)
    [build] = [c for c in planned["changes"] if c["action"] == "build_export"]  # type: ignore[union-attr, index]
    assert build["target"] == "state/outbox/DSR-E-ANA.zip"
    applied = env.dsr("apply", "--auto-approve")
    assert applied.exit_code == 0, applied.output

    path = package(env, "DSR-E-ANA")
    assert verify_package(path) == []
    assert [r["id"] for r in read(path, "crm/customers.json")] == [1]
    assert sorted(r["id"] for r in read(path, "crm/orders.json")) == [10, 11]  # type: ignore[type-var]
    assert sorted(r["id"] for r in read(path, "crm/order_lines.json")) == [100, 101, 102]  # type: ignore[type-var]
    assert sorted(r["id"] for r in read(path, "insights/system_logs.json")) == [1, 2]  # type: ignore[type-var]
    # Counts match the databases, table by table; the rows are the rows as they are now.
    assert read(path, "crm/customers.json")[0] == dict(
        zip(
            ("id", "email", "phone", "full_name"),
            env.rows("SELECT id, email, phone, full_name FROM customers WHERE id = 1")[0],
            strict=True,
        )
    )
    assert (
        len(read(path, "insights/profiles.json"))
        == env.rows(f"SELECT count(*) FROM profiles WHERE lower(email) = '{ANA.lower()}'")[0][0]
    )
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        blob = b"".join(z.read(n) for n in names).decode().lower()
        manifest = z.read("manifest.json")
    assert "shop/shop_customers.json" not in names  # not in the shop
    for other in [BEA, *KEEP]:
        assert other.lower() not in blob  # no other subject's rows
    assert {"README.txt", "manifest.json", "crm/customers.csv"} <= names

    # The audit log holds the manifest's digest, never the data.
    shown = env.dsr("audit", "show", "DSR-E-ANA", "--json")
    [record] = [json.loads(line) for line in shown.output.splitlines() if "build_export" in line]
    assert record["details"]["manifest_sha256"] == hashlib.sha256(manifest).hexdigest()
    assert ANA.lower() not in shown.output.lower()

    # Exactly once: the next apply builds nothing and leaves the file alone.
    inode = path.stat().st_ino, path.stat().st_mtime_ns
    assert "No changes" in env.dsr("apply", "--auto-approve").output
    assert (path.stat().st_ino, path.stat().st_mtime_ns) == inode
    status = env.dsr("status")
    assert "ready" in status.output and "state/outbox/DSR-E-ANA.zip" in status.output


@pytest.mark.parametrize(
    ("requested_by", "approver", "on", "why"),
    [
        ("erin@contoso.example", "erin@contoso.example", "2026-11-21", "cannot approve it"),
        (
            "dpo@contoso.example",
            "ben@contoso.example",
            "2026-11-21",
            "does not hold the admin role",
        ),
        (
            "dpo@contoso.example",
            "erin@contoso.example",
            "2026-11-19",
            "before the request was received",
        ),
    ],
    ids=["self-approval", "non-admin", "before-receipt"],
)
def test_approvals_that_do_not_count(
    env: Env, requested_by: str, approver: str, on: str, why: str
) -> None:
    file_export(env, ANA, "DSR-E-ANA", by=requested_by)
    approve(env, "DSR-E-ANA", approver, on)
    data = plan_json(env)
    [view] = [v for v in data["requests"] if v["id"] == "DSR-E-ANA"]  # type: ignore[union-attr, index]
    assert view["state"] == "awaiting_approval"
    assert why in view["note"]
    assert not [c for c in data["changes"] if c["action"] == "build_export"]  # type: ignore[union-attr, index]
    assert env.dsr("apply", "--auto-approve").exit_code == 0
    assert not package(env, "DSR-E-ANA").exists()
    assert "awaiting approval" in env.dsr("status").output


def test_killed_builds_are_finished_once(env: Env) -> None:
    file_export(env, ANA, "DSR-E-ANA")
    approve(env, "DSR-E-ANA", "erin@contoso.example")
    outbox = env.ws / "state/outbox"
    outbox.mkdir(parents=True)
    partial = outbox / ".DSR-E-ANA.zip.partial"
    partial.write_bytes(b"half a zip")  # killed while writing
    assert env.dsr("apply", "--auto-approve").exit_code == 0
    assert not partial.exists()
    path = package(env, "DSR-E-ANA")
    assert verify_package(path) == []
    assert sorted(p.name for p in outbox.iterdir()) == ["DSR-E-ANA.zip"]


def test_a_package_published_by_a_killed_run_is_finished_not_rebuilt(env: Env) -> None:
    file_export(env, ANA, "DSR-E-ANA")
    approve(env, "DSR-E-ANA", "erin@contoso.example")
    # A run recorded what it would publish, published the package, then died before the
    # export record or the audit log knew.
    made = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
    outbox = env.ws / "state/outbox"
    rows = TableRows("crm", "customers", ("id",), ((1,),))
    published = build_package(outbox, "DSR-E-ANA", [rows], generated_at=made)
    store = open_store(f"sqlite:///{env.ws}/state/dsr.db")
    try:
        store.record_export_intent("DSR-E-ANA", published.manifest_sha256, now=made)
    finally:
        store.close()
    first = published.path.read_bytes(), published.path.stat().st_ino
    applied = env.dsr("apply", "--auto-approve")
    assert applied.exit_code == 0 and "build" in applied.output
    assert (published.path.read_bytes(), published.path.stat().st_ino) == first
    assert sorted(p.name for p in outbox.iterdir()) == ["DSR-E-ANA.zip"]
    builds = [
        json.loads(line)
        for line in env.dsr("audit", "show", "DSR-E-ANA", "--json").output.splitlines()
        if "build_export" in line
    ]
    assert len(builds) == 1
    assert builds[0]["details"]["manifest_sha256"] == published.manifest_sha256
    # Its expiry counts from when it was made, not from when it was finished.
    assert builds[0]["details"]["expires_at"] == (made + timedelta(days=7)).isoformat()
    assert "No changes" in env.dsr("apply", "--auto-approve").output


def test_a_file_placed_where_the_package_goes_is_never_taken_for_it(env: Env) -> None:
    """A zip that dsr did not write (no recorded intent) is refused, naming the request; the
    rest of the run goes on (here: another export), and the digest never reaches the audit."""
    file_export(env, ANA, "DSR-E-ANA")
    approve(env, "DSR-E-ANA", "erin@contoso.example")
    file_export(env, BEA, "DSR-E-BEA")
    approve(env, "DSR-E-BEA", "erin@contoso.example")
    outbox = env.ws / "state/outbox"
    rows = TableRows("crm", "customers", ("id",), ((99,),))
    placed = build_package(
        outbox, "DSR-E-ANA", [rows], generated_at=datetime(2026, 11, 1, tzinfo=UTC)
    )
    applied = env.dsr("apply", "--auto-approve")
    assert applied.exit_code == 1
    assert "DSR-E-ANA: a file dsr did not write is at state/outbox/DSR-E-ANA.zip" in (
        applied.output
    )
    assert "Traceback" not in applied.output
    assert verify_package(outbox / "DSR-E-BEA.zip") == []  # the other export was built
    audit = env.dsr("audit", "show", "--format", "json").output
    assert placed.manifest_sha256 not in audit


def test_expiry_deletes_the_package_and_keeps_the_audit_record(env: Env) -> None:
    file_export(env, ANA, "DSR-E-ANA")
    approve(env, "DSR-E-ANA", "erin@contoso.example")
    assert env.dsr("apply", "--auto-approve").exit_code == 0
    path = package(env, "DSR-E-ANA")
    assert path.exists()
    # Seven days pass (exports.expire_after_days).
    engine = sa.create_engine(f"sqlite:///{env.ws}/state/dsr.db")
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE exports SET expires_at = '2026-01-01T00:00:00+00:00'"))
    engine.dispose()
    planned = env.dsr("plan", "--detailed-exitcode")
    assert planned.exit_code == 2 and "expire" in planned.output
    assert env.dsr("apply", "--auto-approve").exit_code == 0
    assert not path.exists()
    assert "expired" in env.dsr("status").output
    actions = [
        json.loads(line)["action"]
        for line in env.dsr("audit", "show", "DSR-E-ANA", "--json").output.splitlines()
    ]
    assert actions == ["build_export", "expire_export"]
    assert env.dsr("audit", "verify").exit_code == 0
    assert env.dsr("plan", "--detailed-exitcode").exit_code == 0  # never rebuilt


def test_platform_user_export_and_erasure(env: Env) -> None:
    # Export of a platform user: their roles and the data the platform made about them.
    file_export(env, "Erin@Contoso.example", "DSR-E-ERIN", kind="user")
    approve(env, "DSR-E-ERIN", "ana.admin@contoso.example")
    assert env.dsr("apply", "--auto-approve").exit_code == 0
    path = package(env, "DSR-E-ERIN")
    assert read(path, "insights/user_roles.json") == [
        {"user_email": "erin@contoso.example", "role": "admin"}
    ]
    assert [r["id"] for r in read(path, "insights/segments.json")] == [3]

    # Erasure of a user still in access.yaml: the two disagree, nothing happens.
    result = env.dsr(
        "new",
        "erasure",
        "--kind",
        "user",
        "--email",
        "-",
        "--requested-by",
        "dpo@contoso.example",
        "--id",
        "DSR-U-BEN",
        input="ben@contoso.example\n",
    )
    assert result.exit_code == 0
    held = env.dsr("plan")
    assert "still in policies/access.yaml" in held.output
    assert env.rows("SELECT count(*) FROM user_roles WHERE user_email = 'ben@contoso.example'") == [
        (1,)
    ]

    # Removed there too: roles and user data go, verified, with a receipt.
    access = env.ws / "policies/access.yaml"
    access.write_text("\n".join(x for x in ACCESS.splitlines() if "ben@" not in x) + "\n")
    env.execute(
        "INSERT INTO segments (id, name, created_by) VALUES (4, 'b', 'ben@contoso.example')"
    )
    applied = env.dsr("apply", "--auto-approve")
    assert applied.exit_code == 0, applied.output
    assert env.rows("SELECT count(*) FROM user_roles WHERE user_email = 'ben@contoso.example'") == [
        (0,)
    ]
    assert env.rows("SELECT id FROM segments ORDER BY id") == [(1,), (2,), (3,)]  # not dave's
    assert env.dsr("plan", "--detailed-exitcode").exit_code == 0
    receipt = [
        json.loads(line)
        for line in env.dsr("audit", "show", "DSR-U-BEN", "--json").output.splitlines()
        if '"complete"' in line
    ]
    assert receipt[0]["details"]["receipt"]["tables"] == {"insights.segments": {"deleted": 1}}

    # Someone adds the erased user back to access.yaml (and the request file is gone): the
    # tombstone and access.yaml disagree, and dsr does neither until a person decides.
    (env.ws / "policies/requests/DSR-U-BEN.yaml").unlink()
    access.write_text(ACCESS)
    env.execute(
        "INSERT INTO segments (id, name, created_by) VALUES (5, 'c', 'ben@contoso.example')"
    )
    disagree = env.dsr("plan")
    assert "still in policies/access.yaml" in disagree.output
    assert "DSR-U-BEN: the request file is gone" in disagree.output
    assert "delete" not in [c["action"] for c in plan_json(env)["changes"]]  # type: ignore[union-attr, index]


def test_export_and_erasure_in_one_run(env: Env) -> None:
    """The export holds its own subject's rows even when an erasure in the same run makes
    the platform rebuild (and renumber) its tables."""
    file_export(env, ANA, "DSR-E-ANA")
    approve(env, "DSR-E-ANA", "erin@contoso.example")
    result = env.dsr(
        "new",
        "erasure",
        "--email",
        "-",
        "--requested-by",
        "dpo@contoso.example",
        "--id",
        "DSR-T-CARL",
        input=KEEP[0] + "\n",
    )
    assert result.exit_code == 0
    assert env.dsr("apply", "--auto-approve").exit_code == 0
    path = package(env, "DSR-E-ANA")
    for table in ("insights/profiles.json", "insights/consent.json"):
        assert {str(r["email"]).lower() for r in read(path, table)} == {ANA.lower()}
