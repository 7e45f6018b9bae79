"""The demo organisation, Contoso: seeded SQLite systems for `make demo` and the tests.

`build_demo` generates a CRM and a web shop (the sources), the customer insights platform that
ingests both, and an app that consumes its consent entity, under `state/demo/` of a workspace.
`refresh` is the demo platform's own refresh job, the one `policies/systems.yaml` names. The
other commands play the people around dsr in `make demo`: `pick-subject` chooses a customer to
file a request about, `owner-delete` is the shop's owning team deleting a customer, `reinsert`
is a re-sync bringing an erased customer back into the CRM.

This module is a stand-in for Contoso's systems, not part of the reconciler: nothing in
`reconciler/` may import it, and it must not read the policy files or the state store. It
writes only under `state/` of the workspace it is given, except that `reset` also deletes the
requests the demo filed (`policies/requests/DSR-DEMO-*.yaml`, nothing else there); the refresh
job never writes to a source. Output is deterministic: one seed gives the same rows. An e-mail
address is printed only by `pick-subject`, to be piped into the next command; `owner-delete`
and `reinsert` read it from stdin and print counts only.
"""

from __future__ import annotations

import random
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    ForeignKey,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
    insert,
    select,
)
from sqlalchemy.exc import SQLAlchemyError

from reconciler.connectors.engine import create_engine
from reconciler.errors import DsrError

DEFAULT_SEED = 2026
DEMO_DIR = Path("state/demo")
SEED_FILE = "seed"  # in DEMO_DIR: the seed the demo databases were built from
REQUESTS_DIR = Path("policies/requests")
DEMO_REQUESTS = "DSR-DEMO-*.yaml"  # the requests `make demo` files; `reset` removes them

Row = dict[str, Any]

# -- schemas ---------------------------------------------------------------------------------

CRM = MetaData()
crm_customers = Table(
    "customers",
    CRM,
    Column("id", Integer, primary_key=True),
    Column("email", Text, nullable=False, unique=True),
    Column("phone", Text),
    Column("full_name", Text, nullable=False),
    Column("city", Text),
    Column("created_at", Text),
)
crm_orders = Table(
    "orders",
    CRM,
    Column("id", Integer, primary_key=True),
    # Orders are masked and retained for bookkeeping while the customer is deleted, so a
    # deleted customer's orders stay, detached: without SET NULL the erasure could never run.
    Column("customer_id", Integer, ForeignKey("customers.id", ondelete="SET NULL")),
    Column("shipping_address", Text),
    Column("phone", Text),
    Column("email", Text),
    Column("total_cents", Integer, nullable=False),
    Column("placed_at", Text),
)
crm_order_lines = Table(
    "order_lines",
    CRM,
    Column("id", Integer, primary_key=True),
    Column("order_id", Integer, ForeignKey("orders.id"), nullable=False),
    Column("sku", Text, nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("price_cents", Integer, nullable=False),
)

SHOP = MetaData()
shop_customers = Table(
    "customers",
    SHOP,
    Column("id", Integer, primary_key=True),
    Column("email", Text, nullable=False, unique=True),
    Column("full_name", Text),
    Column("phone", Text),
    Column("newsletter", Integer),
)
shop_carts = Table(
    "carts",
    SHOP,
    Column("id", Integer, primary_key=True),
    Column("customer_id", Integer, ForeignKey("customers.id")),
    Column("created_at", Text),
    Column("items", Integer),
)

INSIGHTS = MetaData()
profiles = Table(
    "profiles",
    INSIGHTS,
    Column("id", Integer, primary_key=True),
    Column("email", Text, nullable=False),
    Column("full_name", Text),
    Column("phone", Text),
    Column("city", Text),
    Column("sources", Text),
)
consent = Table(
    "consent",
    INSIGHTS,
    Column("id", Integer, primary_key=True),
    Column("email", Text, nullable=False),
    Column("purpose", Text),
    Column("granted", Integer),
    Column("updated_at", Text),
)
system_logs = Table(
    "system_logs",
    INSIGHTS,
    Column("id", Integer, primary_key=True),
    Column("actor", Text),
    Column("event", Text),
    Column("at", Text),
)
audit_log = Table(
    "audit_log",
    INSIGHTS,
    Column("id", Integer, primary_key=True),
    Column("at", Text),
    Column("actor", Text),
    Column("event", Text),
)
user_roles = Table(
    "user_roles",
    INSIGHTS,
    Column("id", Integer, primary_key=True),
    Column("user_email", Text, nullable=False),
    Column("role", Text, nullable=False),
    UniqueConstraint("user_email", "role"),
)
segments = Table(
    "segments",
    INSIGHTS,
    Column("id", Integer, primary_key=True),
    Column("name", Text),
    Column("created_by", Text),
    Column("definition", Text),
)

APPS = MetaData()
consent_view = Table(
    "consent_view",
    APPS,
    Column("id", Integer, primary_key=True),
    Column("email", Text, nullable=False),
    Column("purpose", Text),
    Column("granted", Integer),
)

DATABASES: dict[str, MetaData] = {"crm": CRM, "shop": SHOP, "insights": INSIGHTS, "apps": APPS}

# -- generated content -----------------------------------------------------------------------


def _words(text: str, sep: str | None = None) -> tuple[str, ...]:
    return tuple(text.split(sep))


CRM_CUSTOMERS = 3000
SHOP_CUSTOMERS = 2000
SHARED_CUSTOMERS = 600  # shop customers who are also CRM customers (same e-mail address)

FIRST_NAMES = _words(
    "olivia amelia isla ava mia ivy lily sophia grace freya harper evie ella poppy rosie noah "
    "oliver george arthur leo muhammad harry oscar archie henry theodore jack freddie charlie "
    "thomas alfie jacob william lucas isaac james samuel aisha priya zara hannah"
)
LAST_NAMES = _words(
    "smith jones taylor brown williams wilson johnson davies patel wright robinson wood "
    "thompson evans walker white roberts green hall thomas clarke jackson khan lewis harris "
    "martin cooper king lee baker hughes edwards hill moore ahmed clark"
)
DOMAINS = ("example.com", "example.org", "example.net")
CITIES = _words(
    "London Manchester Birmingham Leeds Glasgow Bristol Edinburgh Cardiff Belfast Liverpool "
    "Sheffield Newcastle Nottingham Leicester Brighton Oxford Cambridge York"
)
STREETS = _words(
    "High Street|Station Road|Church Lane|Victoria Road|Mill Lane|Park Avenue", sep="|"
)
SKUS = tuple(f"SKU-{n:04d}" for n in range(100, 160))

# Numbers reserved for drama by Ofcom, so no real person's: (country-local prefix, 1000 each).
PHONE_BLOCKS = ("20 7946 0", "7700 900", "161 496 0", "113 496 0", "121 496 0")

PLATFORM_ROLES = (
    ("ana@contoso.example", "admin"),
    ("ben@contoso.example", "contributor"),
    ("cara@contoso.example", "viewer"),
    ("cara@contoso.example", "contributor"),  # a manual grant: access.yaml revokes it
    ("dave@contoso.example", "contributor"),  # not in access.yaml: to be removed
    ("erin@contoso.example", "admin"),
)
PLATFORM_USERS = tuple(sorted({user for user, _ in PLATFORM_ROLES}))
SEGMENTS = (
    ("High value customers", "ben@contoso.example", "lifetime_value_cents > 50000"),
    ("Newsletter subscribers", "ben@contoso.example", "consent.newsletter = granted"),
    ("Lapsed buyers", "cara@contoso.example", "last_order_at < now() - interval '1 year'"),
    ("London shoppers", "dave@contoso.example", "city = 'London'"),
    ("Cart abandoners", "dave@contoso.example", "open_carts > 0 and orders = 0"),
    ("Marketing audience", "erin@contoso.example", "consent.marketing = granted"),
)
CUSTOMER_EVENTS = (
    "signed in to the preference centre",
    "updated communication preferences",
    "clicked an unsubscribe link",
    "opened a marketing e-mail",
)
USER_EVENTS = (
    "signed in",
    "viewed a customer profile",
    "ran segment refresh",
    "exported a segment",
    "edited a measure",
)

EPOCH = datetime(2023, 1, 1)
DAY = 86400


def _timestamp(rng: random.Random, start: datetime = EPOCH, days: int = 1400) -> str:
    return (start + timedelta(seconds=rng.randrange(days * DAY))).strftime("%Y-%m-%dT%H:%M:%SZ")


def _format_phone(rng: random.Random, number: str) -> str:
    """The same E.164 number written in one of several ways people type it."""
    digits = number.replace(" ", "")
    style = rng.randrange(4)
    if style == 0:
        return f"+44 {number}"
    if style == 1:
        return f"+44{digits}"
    if style == 2:
        return "+44-" + number.replace(" ", "-")
    return f"+44 ({number[: number.index(' ')]}) {number[number.index(' ') + 1 :]}"


def _people(rng: random.Random, count: int) -> list[Row]:
    """Distinct people: a unique e-mail address and (mostly) a unique phone number."""
    numbers = rng.sample([f"{block}{n:03d}" for block in PHONE_BLOCKS for n in range(1000)], count)
    seen: set[str] = set()
    people: list[Row] = []
    while len(people) < count:
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        email = f"{first}.{last}{rng.randrange(1, 1000)}@{rng.choice(DOMAINS)}"
        if email in seen:
            continue
        seen.add(email)
        number = numbers[len(people)]
        people.append(
            {
                "email": email,
                "full_name": f"{first.title()} {last.title()}",
                "number": number if rng.random() < 0.9 else None,
                "city": rng.choice(CITIES),
            }
        )
    return people


def _generate_sources(rng: random.Random) -> dict[str, dict[str, list[Row]]]:
    shop_only = SHOP_CUSTOMERS - SHARED_CUSTOMERS
    people = _people(rng, CRM_CUSTOMERS + shop_only)
    crm_people, shop_people = people[:CRM_CUSTOMERS], people[CRM_CUSTOMERS:]

    customers: list[Row] = []
    orders: list[Row] = []
    lines: list[Row] = []
    for cid, person in enumerate(crm_people, start=1):
        phone = person["number"] and _format_phone(rng, person["number"])
        created = _timestamp(rng, days=900)
        customers.append(
            {
                "id": cid,
                "email": person["email"],
                "phone": phone,
                "full_name": person["full_name"],
                "city": person["city"],
                "created_at": created,
            }
        )
        address = f"{rng.randrange(1, 200)} {rng.choice(STREETS)}, {person['city']}"
        for _ in range(rng.randrange(6)):
            oid = len(orders) + 1
            total = 0
            for _ in range(rng.randint(1, 4)):
                price, quantity = rng.randrange(299, 9999), rng.randint(1, 3)
                total += price * quantity
                lines.append(
                    {
                        "id": len(lines) + 1,
                        "order_id": oid,
                        "sku": rng.choice(SKUS),
                        "quantity": quantity,
                        "price_cents": price,
                    }
                )
            orders.append(
                {
                    "id": oid,
                    "customer_id": cid,
                    "shipping_address": address,
                    "phone": phone,
                    "email": person["email"],
                    "total_cents": total,
                    "placed_at": _timestamp(rng, datetime.fromisoformat(created[:-1]), 500),
                }
            )

    shared = rng.sample(crm_people, SHARED_CUSTOMERS)
    shop_rows: list[Row] = []
    carts: list[Row] = []
    for sid, person in enumerate(rng.sample(shared + shop_people, SHOP_CUSTOMERS), start=1):
        shop_rows.append(
            {
                "id": sid,
                "email": person["email"],
                "full_name": person["full_name"],
                "phone": person["number"] and _format_phone(rng, person["number"]),
                "newsletter": int(rng.random() < 0.4),
            }
        )
        for _ in range(rng.randrange(4)):
            carts.append(
                {
                    "id": len(carts) + 1,
                    "customer_id": sid,
                    "created_at": _timestamp(rng),
                    "items": rng.randint(1, 8),
                }
            )
    return {
        "crm": {"customers": customers, "orders": orders, "order_lines": lines},
        "shop": {"customers": shop_rows, "carts": carts},
    }


def _numbered(rows: list[Row]) -> list[Row]:
    """Rows in time order, with ids that follow it."""
    ordered = sorted(rows, key=lambda row: (row["at"], row["actor"], row["event"]))
    return [{"id": n, **row} for n, row in enumerate(ordered, start=1)]


def _generate_platform(rng: random.Random, customer_emails: list[str]) -> dict[str, list[Row]]:
    """The platform's own data: its users, what they made, and what it logged."""
    logs: list[Row] = []
    for _ in range(1200):
        if rng.random() < 0.4:
            actor, event_text = rng.choice(customer_emails), rng.choice(CUSTOMER_EVENTS)
        else:
            actor, event_text = rng.choice(PLATFORM_USERS), rng.choice(USER_EVENTS)
        logs.append({"at": _timestamp(rng), "actor": actor, "event": event_text})

    audit = [
        {
            "at": "2023-01-02T09:00:00Z",
            "actor": "ana@contoso.example",
            "event": f"granted role {role} to {user}",
        }
        for user, role in PLATFORM_ROLES
    ]
    audit += [
        {
            "at": _timestamp(rng),
            "actor": rng.choice(PLATFORM_USERS),
            "event": rng.choice(("data source refreshed", "segment published", "settings changed")),
        }
        for _ in range(40)
    ]

    return {
        "user_roles": [
            {"id": n, "user_email": user, "role": role}
            for n, (user, role) in enumerate(PLATFORM_ROLES, start=1)
        ],
        "segments": [
            {"id": n, "name": name, "created_by": by, "definition": definition}
            for n, (name, by, definition) in enumerate(SEGMENTS, start=1)
        ],
        "system_logs": _numbered(logs),
        "audit_log": _numbered(audit),
    }


# -- the refresh jobs ------------------------------------------------------------------------


def _unify(sources: dict[str, dict[str, list[Row]]]) -> dict[str, list[Row]]:
    """Profiles and consent as the platform derives them: a pure function of the sources.

    One profile per distinct (lower-cased) e-mail; CRM values win over the shop's. Consent:
    the shop's newsletter opt-in, and a CRM 'marketing' purpose granted to customers who have
    ordered (the soft opt-in of an existing customer relationship).
    """
    crm, shop = sources["crm"], sources["shop"]
    last_order: dict[int, str] = {}
    for order in crm["orders"]:
        previous = last_order.get(order["customer_id"])
        if previous is None or (order["placed_at"] or "") > previous:
            last_order[order["customer_id"]] = order["placed_at"] or ""
    last_cart: dict[int, str] = {}
    for cart in shop["carts"]:
        previous = last_cart.get(cart["customer_id"])
        if previous is None or (cart["created_at"] or "") > previous:
            last_cart[cart["customer_id"]] = cart["created_at"] or ""

    merged: dict[str, Row] = {}
    grants: list[tuple[str, str, int, str | None]] = []
    for row in crm["customers"]:
        email = row["email"].strip().lower()
        merged[email] = {
            "email": email,
            "full_name": row["full_name"],
            "phone": row["phone"],
            "city": row["city"],
            "sources": ["crm"],
        }
        ordered = last_order.get(row["id"])
        grants.append((email, "marketing", int(ordered is not None), ordered or row["created_at"]))
    for row in shop["customers"]:
        email = row["email"].strip().lower()
        profile = merged.setdefault(
            email, {"email": email, "full_name": None, "phone": None, "city": None, "sources": []}
        )
        profile["full_name"] = profile["full_name"] or row["full_name"]
        profile["phone"] = profile["phone"] or row["phone"]
        profile["sources"].append("shop")
        grants.append((email, "newsletter", int(bool(row["newsletter"])), last_cart.get(row["id"])))

    unified = [merged[email] for email in sorted(merged)]
    return {
        "profiles": [
            {**profile, "id": n, "sources": ",".join(profile["sources"])}
            for n, profile in enumerate(unified, start=1)
        ],
        "consent": [
            {"id": n, "email": email, "purpose": purpose, "granted": granted, "updated_at": at}
            for n, (email, purpose, granted, at) in enumerate(sorted(grants), start=1)
        ],
    }


def _engine(path: Path) -> Engine:
    """An engine on one demo database, with foreign keys enforced on every connection."""
    return create_engine(f"sqlite:///{path}")


@contextmanager
def _connect(path: Path) -> Iterator[Connection]:
    """One transaction on an existing demo database; never creates a missing file."""
    if not path.is_file():
        raise DsrError(f"{path} not found: run `python -m demo reset` first")
    engine = _engine(path)
    try:
        with engine.begin() as conn:
            yield conn
    except SQLAlchemyError as exc:
        raise DsrError(f"{path.name}: {str(exc).splitlines()[0]}") from exc
    finally:
        engine.dispose()


def _read(path: Path, metadata: MetaData) -> dict[str, list[Row]]:
    with _connect(path) as conn:
        return {
            name: [
                dict(row._mapping)
                for row in conn.execute(select(table).order_by(*table.primary_key.columns))
            ]
            for name, table in metadata.tables.items()
        }


def _replace(conn: Connection, table: Table, rows: list[Row]) -> None:
    conn.execute(table.delete())
    if rows:
        conn.execute(table.insert(), rows)


def refresh(workspace: Path, system: str) -> None:
    """Rebuild a platform's derived tables from its inputs, in one transaction.

    `insights`: profiles and consent from crm.db and shop.db. `apps`: consent_view from
    insights.consent. Raises `DsrError` when an input is missing or unreadable.
    """
    demo = workspace / DEMO_DIR
    if system == "insights":
        unified = _unify(
            {"crm": _read(demo / "crm.db", CRM), "shop": _read(demo / "shop.db", SHOP)}
        )
        with _connect(demo / "insights.db") as conn:
            _replace(conn, profiles, unified["profiles"])
            _replace(conn, consent, unified["consent"])
    elif system == "apps":
        with _connect(demo / "insights.db") as conn:
            rows = [
                dict(row._mapping)
                for row in conn.execute(
                    select(
                        consent.c.id, consent.c.email, consent.c.purpose, consent.c.granted
                    ).order_by(consent.c.id)
                )
            ]
        with _connect(demo / "apps.db") as conn:
            _replace(conn, consent_view, rows)
    else:
        raise DsrError(f"unknown demo system {system!r}: expected insights or apps")


# -- building --------------------------------------------------------------------------------


def _generate(seed: int) -> dict[str, dict[str, list[Row]]]:
    """Every generated row, by database and table; the refresh jobs' tables excepted."""
    rng = random.Random(seed)
    sources = _generate_sources(rng)
    emails = [row["email"] for row in sources["crm"]["customers"] + sources["shop"]["customers"]]
    platform = _generate_platform(rng, emails)
    return {"crm": sources["crm"], "shop": sources["shop"], "insights": platform, "apps": {}}


def build_demo(workspace: Path, seed: int = DEFAULT_SEED) -> dict[str, dict[str, int]]:
    """Create the four demo databases afresh under `state/demo/`; return db -> table -> rows.

    Replaces `state/demo/` as a whole and touches nothing else in the workspace; the seed is
    kept in `state/demo/seed` for `pick_subject`. The platform tables that refreshes own are
    built by the refresh jobs themselves.
    """
    contents = _generate(seed)
    demo = workspace / DEMO_DIR
    shutil.rmtree(demo, ignore_errors=True)
    demo.mkdir(parents=True)
    (demo / SEED_FILE).write_text(f"{seed}\n")
    for name, metadata in DATABASES.items():
        engine = _engine(demo / f"{name}.db")
        try:
            with engine.begin() as conn:
                metadata.create_all(conn)
                for table_name, rows in contents[name].items():
                    conn.execute(metadata.tables[table_name].insert(), rows)
        finally:
            engine.dispose()
    refresh(workspace, "insights")
    refresh(workspace, "apps")
    return count_rows(workspace)


def count_rows(workspace: Path) -> dict[str, dict[str, int]]:
    """Row counts of every demo table: db -> table -> rows."""
    counts: dict[str, dict[str, int]] = {}
    for name, metadata in DATABASES.items():
        with _connect(workspace / DEMO_DIR / f"{name}.db") as conn:
            counts[name] = {
                table_name: conn.execute(select(func.count()).select_from(table)).scalar_one()
                for table_name, table in metadata.tables.items()
            }
    return counts


def _clear_state(workspace: Path) -> None:
    """Remove the state store, the demo databases and the outbox; nothing else in state/."""
    state = workspace / "state"
    for path in state.glob("dsr.db*"):
        path.unlink()
    for folder in (state / "demo", state / "outbox"):
        shutil.rmtree(folder, ignore_errors=True)


def clear_demo_requests(workspace: Path) -> list[Path]:
    """Delete the request files the demo filed (`policies/requests/DSR-DEMO-*.yaml`) and only
    those; return their workspace-relative paths, sorted."""
    removed: list[Path] = []
    for path in sorted((workspace / REQUESTS_DIR).glob(DEMO_REQUESTS)):
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed.append(path.relative_to(workspace))
    return removed


# -- the people around dsr -------------------------------------------------------------------


def _normal_email(value: str) -> str:
    """As dsr normalises an e-mail address before hashing it: trimmed, lower-case."""
    return value.strip().lower()


def pick_subject(workspace: Path, where: str) -> str:
    """The e-mail address of a deterministic demo customer: the lowest CRM id that fits.

    `crm-only`: a CRM customer who is not in the shop, with at least two orders that have order
    lines; one who also appears as an actor in the platform's system logs when there is one.
    `late`: another customer like that (the demo files their request as received long ago).
    `both`: a customer in the CRM and the shop (same address) with at least one CRM order and
    a consent row in the platform.

    Chosen from the data as generated from the seed the demo was built with (`state/demo/seed`),
    not from the databases as they are now: the same customer comes back after dsr has erased
    them, so a demo can pick them again to hand to the shop's owner or to re-insert.
    Raises `DsrError` when the demo was not built or no customer fits.
    """
    seed_file = workspace / DEMO_DIR / SEED_FILE
    if not seed_file.is_file():
        raise DsrError(f"{seed_file} not found: run `python -m demo reset` first")
    try:
        seed = int(seed_file.read_text().strip())
    except ValueError:
        raise DsrError(f"{seed_file}: not a seed: run `python -m demo reset`") from None
    contents = _generate(seed)
    crm, shop = contents["crm"], contents["shop"]
    in_shop = {_normal_email(row["email"]) for row in shop["customers"]}
    in_logs = {_normal_email(row["actor"]) for row in contents["insights"]["system_logs"]}
    consented = {
        _normal_email(row["email"]) for row in _unify({"crm": crm, "shop": shop})["consent"]
    }
    with_lines = {line["order_id"] for line in crm["order_lines"]}
    orders: dict[int, int] = {}
    for order in crm["orders"]:
        if order["id"] in with_lines:
            orders[order["customer_id"]] = orders.get(order["customer_id"], 0) + 1
    customers = sorted(crm["customers"], key=lambda row: int(row["id"]))
    chosen: list[str]
    if where in ("crm-only", "late"):
        fits = [
            str(row["email"])
            for row in customers
            if orders.get(row["id"], 0) >= 2 and _normal_email(row["email"]) not in in_shop
        ]
        logged = [email for email in fits if _normal_email(email) in in_logs]
        first = (logged or fits)[:1]
        # `late`: the next such customer, whose request the demo files as received long ago.
        chosen = first if where == "crm-only" else [e for e in fits if e not in first][:1]
    elif where in ("both", "export", "export-2"):
        both = [
            str(row["email"])
            for row in customers
            if orders.get(row["id"], 0) >= 1
            and _normal_email(row["email"]) in in_shop
            and _normal_email(row["email"]) in consented
        ]
        # `export`, `export-2`: the next such customers, whom the demo exports, not erases.
        at = {"both": 0, "export": 1, "export-2": 2}[where]
        chosen = both[at : at + 1]
    else:
        raise DsrError(
            f"unknown place {where!r}: expected crm-only, late, both, export or export-2"
        )
    if not chosen:
        raise DsrError(f"no demo customer fits --in {where} (seed {seed})")
    return chosen[0]


def owner_delete(workspace: Path, system: str, email: str) -> dict[str, int]:
    """Delete a customer and their carts from the shop, as its owning team would.

    One transaction with foreign keys enforced; the address is matched as dsr normalises it.
    Returns the counts deleted; raises `DsrError` (never naming the address) if not found.
    """
    if system != "shop":
        raise DsrError(f"unknown owned system {system!r}: expected shop")
    with _connect(workspace / DEMO_DIR / "shop.db") as conn:
        ids = (
            conn.execute(
                select(shop_customers.c.id).where(
                    func.lower(func.trim(shop_customers.c.email)) == _normal_email(email)
                )
            )
            .scalars()
            .all()
        )
        if not ids:
            raise DsrError("shop: no customer has that e-mail address")
        carts = conn.execute(shop_carts.delete().where(shop_carts.c.customer_id.in_(ids)))
        customers = conn.execute(shop_customers.delete().where(shop_customers.c.id.in_(ids)))
        return {"customer": customers.rowcount, "cart": carts.rowcount}


def reinsert(workspace: Path, system: str, email: str) -> int:
    """Insert a new CRM customer with this address: a re-sync or a restored backup bringing
    back someone who was erased. Returns the rows inserted; raises `DsrError` (never naming
    the address) if the CRM already has a customer with it."""
    if system != "crm":
        raise DsrError(f"unknown system {system!r} to re-insert into: expected crm")
    address = email.strip()
    with _connect(workspace / DEMO_DIR / "crm.db") as conn:
        present = conn.execute(
            select(func.count())
            .select_from(crm_customers)
            .where(func.lower(func.trim(crm_customers.c.email)) == _normal_email(address))
        ).scalar_one()
        if present:
            raise DsrError("crm: a customer with that e-mail address is already there")
        conn.execute(insert(crm_customers).values(email=address, full_name="Restored Customer"))
    return 1


# -- command line ----------------------------------------------------------------------------


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _read_email() -> str:
    """One e-mail address from stdin, the only way one reaches `owner-delete` and `reinsert`."""
    text = sys.stdin.read().strip()
    if not text or len(text.split()) != 1 or "@" not in text:
        raise click.ClickException("expected one e-mail address on stdin")
    return text


def _workspace(path: Path) -> Path:
    if not (path / "dsr.yaml").is_file():
        raise click.ClickException(
            f"{path}: no dsr.yaml here (run in a workspace or pass --workspace)"
        )
    return path.resolve()


WORKSPACE_OPTION = click.option(
    "--workspace",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The workspace root (holds dsr.yaml).",
)


@click.group()
def main() -> None:
    """Contoso's demo systems: build them, or run a platform's refresh job."""


@main.command()
@WORKSPACE_OPTION
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True)
def reset(workspace: Path, seed: int) -> None:
    """Delete the state store, outbox, demo databases and demo-filed requests
    (policies/requests/DSR-DEMO-*.yaml), then build the demo afresh."""
    root = _workspace(workspace)
    _clear_state(root)
    removed = clear_demo_requests(root)
    if removed:
        pattern = (REQUESTS_DIR / DEMO_REQUESTS).as_posix()
        click.echo(f"removed {_count(len(removed), 'demo request')} ({pattern})")
    for name, tables in build_demo(root, seed).items():
        summary = "  ".join(f"{table}={rows}" for table, rows in tables.items())
        click.echo(f"{(DEMO_DIR / f'{name}.db').as_posix():<24} {summary}")


@main.command("refresh")
@click.argument("system", type=click.Choice(["insights", "apps"]))
@WORKSPACE_OPTION
def refresh_command(system: str, workspace: Path) -> None:
    """Rebuild SYSTEM's derived tables from its inputs (the demo platform's refresh job)."""
    try:
        refresh(_workspace(workspace), system)
    except DsrError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"refreshed {system}")


@main.command("pick-subject")
@click.option(
    "--in",
    "where",
    type=click.Choice(["crm-only", "late", "both", "export", "export-2"]),
    required=True,
    help="crm-only: in the CRM alone, with orders; late: another such customer; "
    "both: in the CRM and the shop; "
    "export, export-2: other customers in both, for the export walk-through.",
)
@WORKSPACE_OPTION
def pick_subject_command(where: str, workspace: Path) -> None:
    """Print the e-mail address of a demo customer, to pipe into `dsr new ... --email -`.

    The same customer for the same seed, even after they were erased."""
    try:
        click.echo(pick_subject(_workspace(workspace), where))
    except DsrError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command("owner-delete")
@click.argument("system", type=click.Choice(["shop"]))
@WORKSPACE_OPTION
def owner_delete_command(system: str, workspace: Path) -> None:
    """Delete the customer whose e-mail address is on stdin, and their carts, as SYSTEM's
    owning team would. Prints counts only."""
    root = _workspace(workspace)
    email = _read_email()
    try:
        deleted = owner_delete(root, system, email)
    except DsrError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{system}: deleted " + ", ".join(_count(n, noun) for noun, n in deleted.items()))


@main.command("reinsert")
@click.argument("system", type=click.Choice(["crm"]))
@WORKSPACE_OPTION
def reinsert_command(system: str, workspace: Path) -> None:
    """Insert a new customer with the e-mail address on stdin into SYSTEM, as a re-sync or a
    restored backup would. Prints counts only."""
    root = _workspace(workspace)
    email = _read_email()
    try:
        inserted = reinsert(root, system, email)
    except DsrError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{system}: re-inserted {_count(inserted, 'customer')}")


if __name__ == "__main__":
    main()
