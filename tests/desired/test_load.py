"""Loading a workspace: YAML with lines, JSON Schema, cross-references, the model, the digest.

Every test builds a real workspace in a temp dir; problems are asserted as the exact
`file:line: field: message` lines a user sees.
"""

from __future__ import annotations

import textwrap
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from reconciler.desired.load import find_workspace, load_workspace, parse_yaml
from reconciler.desired.model import (
    Access,
    DesiredUser,
    ErasureStrategy,
    MaskStrategy,
    PermissionsMap,
    Refresh,
    Settings,
    SubjectLink,
    System,
    SystemRole,
    Table,
    TableKind,
)
from reconciler.desired.schemas import load_schema
from reconciler.errors import DsrError, ValidationFailed

REPO_ROOT = Path(__file__).resolve().parents[2]

DSR = """\
workspace: contoso
state:
  path: state/dsr.db
identity:
  key: env:DSR_IDENTITY_KEY
  key_id: k1
  development_key: contoso-demo-not-a-secret
deadlines:
  days: 45
exports:
  outbox: state/outbox
  expire_after_days: 30
safety:
  max_revocations: 25
"""

SYSTEMS = """\
systems:
  crm:
    role: source
    url: env:CRM_URL
    tables:
      customers:
        primary_key: id
        identities: {email: email, phone: phone}
        on_erasure: delete
      orders:
        primary_key: id
        subject: {column: customer_id, references: customers.id}
        on_erasure:
          mask: {shipping_address: "null", phone: null, email: redact}
          reason: bookkeeping obligation, 10 years
      order_lines:
        primary_key: id
        subject: {column: order_id, references: orders.id}
        on_erasure: {retain: invoices are kept under a legal obligation}
  shop:
    role: source
    url: env:SHOP_URL
    erase_at_source: false
    tables:
      public.customers: {primary_key: id, identities: {email: email}, on_erasure: delete}
  insights:
    role: platform
    url: sqlite:///state/demo/insights.db
    ingests: [crm, shop]
    refresh: {sql: ["refresh materialized view profiles"]}
    permissions: {table: user_roles, user: user_email, role: role}
    tables:
      profiles: {primary_key: id, identities: {email: email}, on_erasure: delete}
      system_logs: {primary_key: id, identities: {email: actor}, kind: system_log}
      audit_log: {kind: audit_log}
  apps:
    role: downstream
    url: env:APPS_URL
    ingests: [insights]
    refresh: {command: [apps-refresh, --all]}
"""

ACCESS = """\
admin_role: admin
roles: [admin, contributor, viewer]
users:
  ana@contoso.example:
    roles: [admin]
    protected: true
  ben@contoso.example:
    roles: [contributor]
"""

# The smallest valid data map, for tests that only care about one file.
ONE_SYSTEM = "systems:\n  crm: {role: source, url: env:CRM_URL}\n"


def make_workspace(
    root: Path, dsr: str = DSR, systems: str = SYSTEMS, access: str | None = ACCESS
) -> Path:
    (root / "policies").mkdir(parents=True, exist_ok=True)
    (root / "dsr.yaml").write_text(dsr)
    (root / "policies" / "systems.yaml").write_text(systems)
    if access is not None:
        (root / "policies" / "access.yaml").write_text(access)
    return root


def problems(root: Path) -> list[str]:
    with pytest.raises(ValidationFailed) as failed:
        load_workspace(root)
    return [str(d) for d in failed.value.diagnostics]


def yaml_block(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


# -- a valid workspace --------------------------------------------------------------------------


def test_valid_workspace_loads_into_the_model(tmp_path: Path) -> None:
    desired = load_workspace(make_workspace(tmp_path))

    assert desired.settings == Settings(
        workspace="contoso",
        state_path="state/dsr.db",
        identity_key="env:DSR_IDENTITY_KEY",
        identity_key_id="k1",
        development_key="contoso-demo-not-a-secret",
        deadline_days=45,
        outbox="state/outbox",
        expire_after_days=30,
        max_revocations=25,
    )
    assert str(desired.settings.development_key) == "***"  # a key masks itself when printed
    assert desired.systems["crm"] == System(
        name="crm",
        role=SystemRole.SOURCE,
        url="env:CRM_URL",
        tables={
            "customers": Table(
                name="customers",
                primary_key="id",
                identities={"email": "email", "phone": "phone"},
                erasure=ErasureStrategy.DELETE,
            ),
            "orders": Table(
                name="orders",
                primary_key="id",
                subject=SubjectLink(column="customer_id", table="customers", references="id"),
                erasure=ErasureStrategy.MASK,
                mask={
                    "shipping_address": MaskStrategy.NULL,
                    "phone": MaskStrategy.NULL,  # a bare YAML null means the "null" strategy
                    "email": MaskStrategy.REDACT,
                },
                reason="bookkeeping obligation, 10 years",
            ),
            "order_lines": Table(
                name="order_lines",
                primary_key="id",
                subject=SubjectLink(column="order_id", table="orders", references="id"),
                erasure=ErasureStrategy.RETAIN,
                reason="invoices are kept under a legal obligation",
            ),
        },
    )
    shop = desired.systems["shop"]
    assert not shop.erase_at_source
    assert list(shop.tables) == ["public.customers"]
    insights = desired.systems["insights"]
    assert insights.role is SystemRole.PLATFORM
    assert insights.url == "sqlite:///state/demo/insights.db"
    assert insights.ingests == ("crm", "shop")
    assert insights.refresh == Refresh(sql=("refresh materialized view profiles",))
    assert insights.permissions == PermissionsMap(
        table="user_roles", user="user_email", role="role"
    )
    assert insights.tables["system_logs"].kind is TableKind.SYSTEM_LOG
    assert insights.tables["audit_log"] == Table(name="audit_log", kind=TableKind.AUDIT_LOG)
    assert desired.systems["apps"].refresh == Refresh(command=("apps-refresh", "--all"))
    assert desired.permissions_system() is insights
    assert desired.access == Access(
        roles=("admin", "contributor", "viewer"),
        users={
            "ana@contoso.example": DesiredUser(
                "ana@contoso.example", frozenset({"admin"}), protected=True
            ),
            "ben@contoso.example": DesiredUser("ben@contoso.example", frozenset({"contributor"})),
        },
        admin_role="admin",
    )
    assert desired.digest.startswith("sha256:")


def test_absent_sections_take_the_model_defaults_and_access_is_optional(tmp_path: Path) -> None:
    desired = load_workspace(make_workspace(tmp_path, "workspace: w\n", ONE_SYSTEM, access=None))

    assert desired.settings == Settings(workspace="w")
    assert desired.systems == {"crm": System("crm", SystemRole.SOURCE, "env:CRM_URL")}
    assert desired.access is None


def test_the_repository_demo_workspace_is_valid() -> None:
    desired = load_workspace(REPO_ROOT)
    assert desired.permissions_system() is not None


def test_yaml_keeps_dates_and_validates_them_as_iso_strings() -> None:
    doc, found = parse_yaml("received: 2026-11-20\non: yes\n", "policies/requests/r.yaml")

    assert found == []
    assert doc is not None
    assert doc.data == {"received": date(2026, 11, 20), "on": True}  # keys stay as written
    assert doc.plain == {"received": "2026-11-20", "on": True}


# -- YAML problems ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "systems:\n  crm:\n    role: source\n     url: x\n",
            # libyaml's words (PyYAML's own parser said "... allowed here")
            "policies/systems.yaml:4: invalid YAML: mapping values are not allowed in this context",
        ),
        (
            "systems:\n  crm: {role: source,\n\n  url: 'x}\n",
            "policies/systems.yaml:5: invalid YAML: found unexpected end of stream"
            " (while scanning a quoted scalar from line 4)",
        ),
        (
            "systems: {}\n---\nsystems: {}\n",
            "policies/systems.yaml:2: invalid YAML: expected a single document in the stream,"
            " but found another document",
        ),
        (
            "systems:\n  crm: *crm\n",
            "policies/systems.yaml:2: invalid YAML: anchors and aliases (&name, *name) are"
            " not allowed in policy files: write the values out",
        ),
        (
            "systems: &s [*s]\n",
            "policies/systems.yaml:1: invalid YAML: anchors and aliases (&name, *name) are"
            " not allowed in policy files: write the values out",
        ),
        (
            "systems: !!python/object:os.system {}\n",
            "policies/systems.yaml:1: invalid YAML: could not determine a constructor for the tag"
            " 'tag:yaml.org,2002:python/object:os.system'",
        ),
    ],
    ids=["indentation", "unclosed-quote", "two-documents", "undefined-alias", "recursive", "tag"],
)
def test_malformed_yaml_names_file_and_line(tmp_path: Path, text: str, expected: str) -> None:
    assert problems(make_workspace(tmp_path, systems=text)) == [expected]


ALIAS_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def test_an_alias_bomb_is_refused_at_its_first_anchor(tmp_path: Path) -> None:
    """Nine lines that expand to 387 million strings: refused before anything is built."""
    assert problems(make_workspace(tmp_path, systems=ALIAS_BOMB)) == [
        "policies/systems.yaml:1: invalid YAML: anchors and aliases (&name, *name) are not "
        "allowed in policy files: write the values out"
    ]


@pytest.mark.parametrize(
    "text", ["[" * 200 + "]" * 200, "a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 80))]
)
def test_deep_nesting_is_refused_with_its_line(tmp_path: Path, text: str) -> None:
    (found,) = problems(make_workspace(tmp_path, systems=text))
    assert found.startswith("policies/systems.yaml:")
    assert found.endswith("invalid YAML: nested more than 64 levels deep")


def test_a_huge_file_is_refused(tmp_path: Path) -> None:
    text = "systems: {}\n# " + "x" * 1_000_001 + "\n"
    assert problems(make_workspace(tmp_path, systems=text)) == [
        "policies/systems.yaml: is larger than 1,000,000 characters: not a policy file"
    ]


def test_duplicate_key_is_reported_at_its_second_occurrence(tmp_path: Path) -> None:
    systems = yaml_block(
        """
        systems:
          crm:
            role: source
            url: env:CRM_URL
            role: platform
        """
    )
    assert problems(make_workspace(tmp_path, systems=systems, access=None)) == [
        # the last occurrence wins, as in PyYAML, and is checked like any other value
        "policies/systems.yaml:2: systems.crm: a platform system must list the systems it"
        " ingests in 'ingests'",
        "policies/systems.yaml:5: systems.crm.role: duplicate key 'role' (first on line 3)",
    ]


def test_missing_file_is_a_problem(tmp_path: Path) -> None:
    make_workspace(tmp_path)
    (tmp_path / "policies" / "systems.yaml").unlink()
    assert problems(tmp_path) == ["policies/systems.yaml: file not found"]


# -- schema problems ----------------------------------------------------------------------------


def test_unknown_key_points_at_its_line_and_suggests_a_spelling(tmp_path: Path) -> None:
    dsr = "workspace: contoso\ncolour: blue\nsafety:\n  max_revocation: 3\n"
    assert problems(make_workspace(tmp_path, dsr=dsr)) == [
        "dsr.yaml:2: unknown key 'colour'",
        "dsr.yaml:4: safety: unknown key 'max_revocation'; did you mean 'max_revocations'?",
    ]


def test_wrong_enum_value_lists_the_choices(tmp_path: Path) -> None:
    systems = yaml_block(
        """
        systems:
          crm:
            role: sorce
            url: env:CRM_URL
            tables:
              customers: {identities: {email: email}, on_erasure: sometimes, kind: log}
        """
    )
    assert problems(make_workspace(tmp_path, systems=systems)) == [
        "policies/systems.yaml:3: systems.crm.role: 'sorce' is not one of 'source', 'platform',"
        " 'downstream'",
        "policies/systems.yaml:6: systems.crm.tables.customers.kind: 'log' is not one of 'data',"
        " 'system_log', 'audit_log'",
        "policies/systems.yaml:6: systems.crm.tables.customers.on_erasure: must be delete,"
        " {mask: {column: strategy}, reason: ...} or {retain: reason}",
    ]


def test_missing_required_key_points_at_the_parent(tmp_path: Path) -> None:
    systems = "systems:\n  crm:\n    role: source\n"
    assert problems(make_workspace(tmp_path, dsr="# settings\nstate: {}\n", systems=systems)) == [
        "dsr.yaml:2: missing required key 'workspace'",
        "policies/systems.yaml:2: systems.crm: missing required key 'url'",
    ]


def test_value_problems_read_well_and_never_echo_a_url(tmp_path: Path) -> None:
    dsr = yaml_block(
        """
        workspace: contoso
        identity: {key: DSR_KEY, key_id: "k 1"}
        deadlines: {days: 120}
        exports: {expire_after_days: soon}
        """
    )
    systems = yaml_block(
        """
        systems:
          crm:
            role: source
            url: env:CRM_URL
            erase_at_source: "postgresql://dsr:hunter2@db/crm"
            ingests: []
            refresh: {}
            tables:
              orders:
                subject: {column: customer_id, references: customers}
                on_erasure: {mask: {phone: blank}}
              bad name: {}
        """
    )
    assert problems(make_workspace(tmp_path, dsr=dsr, systems=systems)) == [
        "dsr.yaml:2: identity.key: must be env:NAME, naming an upper-case environment variable"
        " that holds the key",
        "dsr.yaml:2: identity.key_id: must be letters, digits, '_' or '-'",
        "dsr.yaml:3: deadlines.days: must be at most 90, not 120",
        "dsr.yaml:4: exports.expire_after_days: must be an integer, not a string",
        "policies/systems.yaml:5: systems.crm.erase_at_source: must be true or false, not a string",
        "policies/systems.yaml:6: systems.crm.ingests: must not be empty",
        "policies/systems.yaml:7: systems.crm.refresh: needs exactly one of 'sql' or 'command'",
        "policies/systems.yaml:10: systems.crm.tables.orders.subject.references: must be"
        " table.column (or schema.table.column)",
        "policies/systems.yaml:11: systems.crm.tables.orders.on_erasure: missing required key"
        " 'reason'",
        "policies/systems.yaml:11: systems.crm.tables.orders.on_erasure.mask.phone: must be null,"
        " redact or hash",
        "policies/systems.yaml:12: systems.crm.tables: invalid name 'bad name': a table name is"
        " `table` or `schema.table`, without spaces",
    ]


# -- cross-references ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("systems", "expected"),
    [
        (
            """
            systems:
              crm: {role: source, url: env:A, ingests: [shop]}
              shop: {role: source, url: env:B}
            """,
            ["2: systems.crm.ingests: a source system does not ingest other systems"],
        ),
        (
            """
            systems:
              crm: {role: source, url: env:A}
              insights: {role: platform, url: env:B}
              apps: {role: downstream, url: env:C}
            """,
            [
                "3: systems.insights: a platform system must list the systems it ingests in"
                " 'ingests'",
                "4: systems.apps: a downstream system must list the systems it ingests in"
                " 'ingests'",
            ],
        ),
        (
            """
            systems:
              insights:
                role: platform
                url: env:B
                ingests: [insights, crm]
            """,
            [
                "5: systems.insights.ingests[0]: a system cannot ingest itself",
                "5: systems.insights.ingests[1]: unknown system 'crm'",
            ],
        ),
        (
            """
            systems:
              crm: {role: source, url: env:A, permissions: {table: r, user: u, role: r}}
              insights: {role: platform, url: env:B, ingests: [crm], permissions: {table: r, user: u, role: r}}
            """,  # noqa: E501
            [
                "3: systems.insights.permissions: only one system may declare permissions;"
                " 'crm' already does"
            ],
        ),
        (
            """
            systems:
              crm:
                role: source
                url: env:A
                tables:
                  orders:
                    subject: {column: customer_id, references: public.customers.id}
            """,
            [
                "7: systems.crm.tables.orders.subject.references: no table 'public.customers'"
                " in system 'crm'"
            ],
        ),
        (
            """
            systems:
              crm:
                role: source
                url: env:A
                tables:
                  customers:
                    primary_key: id
                    on_erasure: delete
            """,
            [
                "8: systems.crm.tables.customers.on_erasure: needs 'identities' or 'subject' to"
                " find the subject's rows"
            ],
        ),
        (
            """
            systems:
              crm:
                role: source
                url: env:A
                tables:
                  audit:
                    kind: audit_log
                    identities: {email: actor}
                    on_erasure: delete
            """,
            [
                "8: systems.crm.tables.audit.identities: an audit_log table cannot have"
                " 'identities': the audit log is never erased",
                "9: systems.crm.tables.audit.on_erasure: an audit_log table cannot have"
                " 'on_erasure': the audit log is never erased",
            ],
        ),
        (
            """
            systems:
              crm:
                role: source
                url: env:A
                tables:
                  logs: {kind: system_log}
            """,
            [
                "6: systems.crm.tables.logs: a system_log table needs 'identities' to find the"
                " subject's log rows"
            ],
        ),
        (
            """
            systems:
              crm:
                role: source
                url: env:A
                tables:
                  customers: {identities: {email: email}}
                  orders:
                    subject: {column: customer_id, references: customers.id}
                    on_erasure:
                      mask:
                        customer_id: "null"
                      reason: bookkeeping
            """,
            [
                "11: systems.crm.tables.orders.on_erasure.mask.customer_id: cannot mask"
                " 'customer_id': it links the row to the subject (subject.column)"
            ],
        ),
        (
            """
            systems:
              crm:
                role: source
                url: env:A
                tables:
                  customers: {primary_key: id, identities: {email: email}, on_erasure: delete}
                  orders:
                    primary_key: id
                    identities: {email: email}
                    subject: {column: customer_id, references: customers.id}
                    on_erasure: delete
            """,
            [
                "10: systems.crm.tables.orders.subject: a table is found either by 'identities'"
                " or by a 'subject' link, not both; map the link alone (rows reached through it"
                " are the subject's)"
            ],
        ),
    ],
    ids=[
        "source-ingests",
        "platform-without-ingests",
        "ingests-itself-or-unknown",
        "two-permissions",
        "reference-unknown-table",
        "erasure-without-identities",
        "audit-log-erased",
        "system-log-without-identities",
        "mask-subject-column",
        "identities-and-subject",
    ],
)
def test_systems_cross_references(tmp_path: Path, systems: str, expected: list[str]) -> None:
    workspace = make_workspace(tmp_path, systems=yaml_block(systems), access=None)
    assert problems(workspace) == [f"policies/systems.yaml:{line}" for line in expected]


def test_access_roles_must_be_declared(tmp_path: Path) -> None:
    access = yaml_block(
        """
        admin_role: root
        roles: [admin, viewer]
        users:
          ana@contoso.example: {roles: [admin, owner]}
        """
    )
    assert problems(make_workspace(tmp_path, access=access)) == [
        "policies/access.yaml:1: admin_role: 'root' is not in roles",
        "policies/access.yaml:4: users.ana@contoso.example.roles[1]: role 'owner' is not"
        " declared in roles",
    ]


def test_default_admin_role_must_be_declared(tmp_path: Path) -> None:
    access = "roles: [viewer]\nusers: {}\n"
    assert problems(make_workspace(tmp_path, access=access)) == [
        "policies/access.yaml:1: roles: must include 'admin', the default admin_role"
    ]


def test_access_needs_a_system_that_declares_permissions(tmp_path: Path) -> None:
    assert problems(make_workspace(tmp_path, systems=ONE_SYSTEM)) == [
        "policies/access.yaml: no system in policies/systems.yaml declares 'permissions',"
        " so there is nowhere to apply it"
    ]


def test_every_problem_in_every_file_is_reported_at_once(tmp_path: Path) -> None:
    systems = SYSTEMS.replace("role: platform", "role: platfrom").replace(
        "    url: env:APPS_URL\n", ""
    )
    access = ACCESS.replace("roles: [contributor]", "roles: [contributor, auditor]")
    assert problems(make_workspace(tmp_path, systems=systems, access=access)) == [
        "policies/access.yaml:8: users.ben@contoso.example.roles[1]: role 'auditor' is not"
        " declared in roles",
        "policies/systems.yaml:27: systems.insights.role: 'platfrom' is not one of 'source',"
        " 'platform', 'downstream'",
        "policies/systems.yaml:36: systems.apps: missing required key 'url'",
    ]


# -- digest -------------------------------------------------------------------------------------


def test_digest_follows_content_not_formatting(tmp_path: Path) -> None:
    digest = load_workspace(make_workspace(tmp_path)).digest
    reformatted = "# the roles\n" + ACCESS.replace("roles: [admin]", "roles:   [ admin ]  # ana")
    reordered = SYSTEMS.replace(
        "    role: source\n    url: env:CRM_URL\n", "    url: env:CRM_URL\n    role: source\n"
    )
    assert reordered != SYSTEMS
    assert load_workspace(make_workspace(tmp_path, access=reformatted)).digest == digest
    assert load_workspace(make_workspace(tmp_path, systems=reordered)).digest == digest

    changes = [
        {"dsr": DSR.replace("days: 45", "days: 30")},
        {"systems": SYSTEMS.replace("email: redact", "email: hash")},
        {"access": ACCESS.replace("protected: true", "protected: false")},
    ]
    digests = {load_workspace(make_workspace(tmp_path, **change)).digest for change in changes}
    assert digest not in digests
    assert len(digests) == len(changes)


# -- finding the workspace ----------------------------------------------------------------------


def test_find_workspace_walks_up_from_a_subdirectory(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "repo")
    deep = root / "policies" / "requests" / "2026"
    deep.mkdir(parents=True)

    assert find_workspace(deep) == root.resolve()
    assert find_workspace(root) == root.resolve()


def test_find_workspace_says_what_to_do_when_there_is_none(tmp_path: Path) -> None:
    with pytest.raises(DsrError) as raised:
        find_workspace(tmp_path)
    assert str(raised.value) == (
        f"no dsr.yaml found in {tmp_path.resolve()} or any parent; run dsr in a workspace"
        " or pass --workspace"
    )


# -- the schemas themselves ---------------------------------------------------------------------


def _properties(schema: Any, where: str = "") -> list[tuple[str, Any]]:
    """Every (path, subschema) declared under a `properties` keyword, at any depth."""
    found: list[tuple[str, Any]] = []
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "properties":
                found += [(f"{where}.{name}", sub) for name, sub in value.items()]
            found += _properties(value, f"{where}/{key}")
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            found += _properties(value, f"{where}/{i}")
    return found


@pytest.mark.parametrize("name", ["dsr", "systems", "access"])
def test_schemas_are_draft_2020_12_and_document_every_property(name: str) -> None:
    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://dsr.dev/schemas/{name}.schema.json"
    assert schema["title"] and schema["description"]
    assert [path for path, sub in _properties(schema) if not sub.get("description")] == []
    assert load_schema(name) is schema  # cached


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("received", "9999-12-31", "received: 9999-12-31 is not between 1990-01-01 and 2199-12-31"),
        ("received", "1899-01-01", "received: 1899-01-01 is not between 1990-01-01 and 2199-12-31"),
    ],
)
def test_a_date_out_of_range_is_reported_not_raised(
    demo_workspace: Path, field: str, value: str, expected: str
) -> None:
    """`received: 9999-12-31` raised 'year 10000 is out of range' from the deadline rule."""
    requests = demo_workspace / "policies/requests"
    requests.mkdir()
    (requests / "DSR-D-1.yaml").write_text(
        "id: DSR-D-1\ntype: erasure\n"
        "subject: {kind: customer, identities: [{type: email, hash: "
        f"'hmac-sha256:dev:{'ab' * 32}'}}]}}\n"
        f"{field}: {value}\nrequested_by: dpo@x.example\nsystems: all\n"
    )
    with pytest.raises(ValidationFailed) as failed:
        load_workspace(demo_workspace)
    assert [str(d) for d in failed.value.diagnostics] == [
        f"policies/requests/DSR-D-1.yaml:4: {expected}"
    ]


def test_an_expiry_beyond_ten_years_is_reported(demo_workspace: Path) -> None:
    """`expire_after_days: 999999999` passed validate, then overflowed in apply."""
    settings = demo_workspace / "dsr.yaml"
    settings.write_text(
        settings.read_text().replace("expire_after_days: 30", "expire_after_days: 999999999")
    )
    with pytest.raises(ValidationFailed) as failed:
        load_workspace(demo_workspace)
    (problem,) = [str(d) for d in failed.value.diagnostics]
    assert problem.startswith("dsr.yaml:")
    assert "exports.expire_after_days: must be at most 3650, not 999999999" in problem
