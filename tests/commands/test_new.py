"""Request files and `dsr new`: hashing, what is written, and every way a request can be wrong.

Each test runs the real CLI (click's CliRunner on `reconciler.cli.cli`) on a copy of the demo
workspace. Raw identifiers are grepped for in everything dsr wrote or printed. No mocks.
"""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from jsonschema import Draft202012Validator

from reconciler.cli import cli
from reconciler.desired.load import load_settings, load_workspace
from reconciler.desired.model import (
    Approval,
    Extension,
    IdentityHash,
    Request,
    RequestType,
    SubjectKind,
)
from reconciler.desired.schemas import load_schema
from reconciler.errors import ValidationFailed
from reconciler.privacy.identity import IdentityKey, hash_identity
from reconciler.workspace import identity_key

RAW_EMAIL = "  Ana.Example@Example.COM \n"
EMAIL = "ana.example@example.com"
PHONE_A = "+55 (12) 3923-5555"
PHONE_B = "+55 12 39235555"
ENV_KEY = "a-real-secret-from-the-vault-0123456789"


@pytest.fixture(autouse=True)
def _no_identity_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """The development key unless a test sets one: the environment must not leak in."""
    monkeypatch.delenv("DSR_IDENTITY_KEY", raising=False)


def dsr(
    ws: Path, *args: str, input: str | None = None, env: dict[str, str] | None = None
) -> Result:
    return CliRunner().invoke(
        cli, ["-C", str(ws), *args], input=input, env=env, catch_exceptions=False
    )


def dev_key(ws: Path) -> IdentityKey:
    key = identity_key(load_settings(ws), environ={})
    assert key.development
    return key


def written(ws: Path, result: Result) -> tuple[str, dict[str, object], str]:
    """The path `dsr new` printed, the file's data and its text."""
    assert result.exit_code == 0, result.output
    path = result.stdout.strip()
    assert result.stdout == path + "\n"
    text = (ws / path).read_text(encoding="utf-8")
    return path, yaml.safe_load(text), text


def request_files(ws: Path) -> list[str]:
    folder = ws / "policies" / "requests"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def assert_nowhere(values: list[str], *texts: str) -> None:
    for value in values:
        for form in {value, value.strip(), value.lower(), value.strip().lower()}:
            for text in texts:
                assert form not in text


# -- dsr new -----------------------------------------------------------------------------------


def test_new_erasure_reads_the_email_from_stdin_and_writes_only_its_hash(
    demo_workspace: Path,
) -> None:
    result = dsr(
        demo_workspace,
        *("new", "erasure", "--email", "-", "--received", "2026-11-20"),
        *("--requested-by", "priya@contoso.example"),
        input=RAW_EMAIL,
    )
    path, data, text = written(demo_workspace, result)
    assert re.fullmatch(r"policies/requests/DSR-20261120-[A-Z2-7]{4}\.yaml", path)
    expected = hash_identity("email", EMAIL, dev_key(demo_workspace))
    assert data == {
        "id": Path(path).stem,
        "type": "erasure",
        "subject": {"kind": "customer", "identities": [{"type": "email", "hash": expected}]},
        "received": date(2026, 11, 20),
        "requested_by": "priya@contoso.example",
        "systems": "all",
    }
    assert text.startswith("# Written by `dsr new`")
    assert_nowhere([RAW_EMAIL, EMAIL], text, result.stdout, result.stderr)
    assert request_files(demo_workspace) == [Path(path).name]  # no temp file left behind

    request = load_workspace(demo_workspace).requests[Path(path).stem]
    assert request == Request(
        id=Path(path).stem,
        type=RequestType.ERASURE,
        subject_kind=SubjectKind.CUSTOMER,
        identities=(IdentityHash("email", expected),),
        received=date(2026, 11, 20),
        requested_by="priya@contoso.example",
        due=date(2026, 12, 20),
        systems=None,
        file=path,
    )


def test_new_warns_when_hashing_with_the_development_key(demo_workspace: Path) -> None:
    result = dsr(
        demo_workspace, "new", "erasure", "--email", "-", "--requested-by", "me", input=RAW_EMAIL
    )
    assert result.exit_code == 0
    assert result.stderr == (
        "warning: hashing with the development identity key from dsr.yaml; set "
        "DSR_IDENTITY_KEY (named in dsr.yaml identity.key) for real requests\n"
    )


def test_new_with_the_key_in_the_environment_does_not_warn_and_hashes_differently(
    demo_workspace: Path,
) -> None:
    args = ("new", "erasure", "--email", "-", "--requested-by", "me")
    with_env = dsr(demo_workspace, *args, input=RAW_EMAIL, env={"DSR_IDENTITY_KEY": ENV_KEY})
    without = dsr(demo_workspace, *args, input=RAW_EMAIL)
    assert with_env.stderr == ""
    _, data_env, text_env = written(demo_workspace, with_env)
    _, data_dev, _ = written(demo_workspace, without)
    hash_env = data_env["subject"]["identities"][0]["hash"]  # type: ignore[index]
    hash_dev = data_dev["subject"]["identities"][0]["hash"]  # type: ignore[index]
    assert hash_env != hash_dev
    assert hash_env == hash_identity("email", EMAIL, IdentityKey("dev", ENV_KEY.encode(), False))
    assert_nowhere([ENV_KEY, RAW_EMAIL], text_env, with_env.stdout, with_env.stderr)


def test_phone_numbers_are_normalised_before_hashing(demo_workspace: Path) -> None:
    a = dsr(demo_workspace, "new", "erasure", "--phone", PHONE_A, "--requested-by", "me")
    b = dsr(demo_workspace, "new", "erasure", "--phone", "-", "--requested-by", "me", input=PHONE_B)
    _, data_a, text_a = written(demo_workspace, a)
    _, data_b, text_b = written(demo_workspace, b)
    hash_a = data_a["subject"]["identities"][0]["hash"]  # type: ignore[index]
    assert hash_a == data_b["subject"]["identities"][0]["hash"]  # type: ignore[index]
    assert hash_a == hash_identity("phone", "+551239235555", dev_key(demo_workspace))
    everything = [text_a, text_b, a.stdout, a.stderr, b.stdout, b.stderr]
    assert_nowhere([PHONE_A, PHONE_B, "+551239235555", "551239235555"], *everything)


@pytest.mark.parametrize("request_type", list(RequestType))
def test_new_with_every_option(demo_workspace: Path, request_type: RequestType) -> None:
    result = dsr(
        demo_workspace,
        *("new", request_type.value, "--email", "-", "--phone", PHONE_A),
        *("--customer-id", " C-1042 ", "--received", "2026-01-31", "--requested-by", "me"),
        *("--kind", "user", "--systems", "crm, insights", "--id", "DSR-TEST-1"),
        input=RAW_EMAIL,
    )
    path, data, text = written(demo_workspace, result)
    assert path == "policies/requests/DSR-TEST-1.yaml"
    key = dev_key(demo_workspace)
    request = load_workspace(demo_workspace).requests["DSR-TEST-1"]
    assert request.type is request_type
    assert request.subject_kind is SubjectKind.USER
    assert request.identities == (
        IdentityHash("email", hash_identity("email", EMAIL, key)),
        IdentityHash("phone", hash_identity("phone", PHONE_B, key)),
        IdentityHash("customer_id", hash_identity("customer_id", "C-1042", key)),
    )
    assert request.systems == ("crm", "insights")
    assert request.due == date(2026, 2, 28)
    assert_nowhere([RAW_EMAIL, PHONE_A, "C-1042"], text, result.stdout, result.stderr)


def test_new_defaults_received_to_today_in_utc(demo_workspace: Path) -> None:
    before = datetime.now(UTC).date()
    args = ("new", "export", "--email", "-", "--requested-by", "me")
    result = dsr(demo_workspace, *args, input=RAW_EMAIL)
    after = datetime.now(UTC).date()
    path, data, _ = written(demo_workspace, result)
    assert data["received"] in {before, after}
    assert Path(path).stem.startswith(f"DSR-{data['received']:%Y%m%d}-")


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (
            (),
            None,
            "error: give at least one of --email, --phone, --customer-id (- reads stdin), or"
            " --stdin",
        ),
        (
            ("--email", "-", "--phone", "-"),
            RAW_EMAIL,
            "error: only one identity can be read from stdin; --email and --phone both ask for it",
        ),
        (("--email", "-"), "", "error: --email -: stdin is empty"),
        (("--email", "-"), "   \n", "error: --email -: stdin is empty"),
        (
            ("--email", "-"),
            RAW_EMAIL + "bob@example.com\n",
            "error: --email -: stdin holds more than one line; give one value",
        ),
        (
            ("--email", "ana.example.com"),
            None,
            "error: --email does not look like an e-mail address (user@domain)",
        ),
        (("--customer-id", "  "), None, "error: --customer-id is empty"),
        (
            ("--email", "-", "--id", "dsr-1"),
            RAW_EMAIL,
            "error: --id 'dsr-1' must be upper-case letters and digits in parts joined by '-', "
            "starting with a letter, for example DSR-20261129-7KQ2",
        ),
        (
            ("--email", "-", "--systems", "crm,,shop"),
            RAW_EMAIL,
            "error: --systems must be all or a comma-separated list of system names",
        ),
        (
            ("--email", "-", "--received", "2999-01-01"),
            RAW_EMAIL,
            "error: --received 2999-01-01 is in the future",
        ),
    ],
)
def test_new_refuses_bad_options_and_writes_nothing(
    demo_workspace: Path, args: tuple[str, ...], stdin: str | None, message: str
) -> None:
    result = dsr(demo_workspace, "new", "erasure", *args, "--requested-by", "me", input=stdin)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert message in result.stderr.splitlines()
    assert request_files(demo_workspace) == []
    assert_nowhere([RAW_EMAIL, "bob@example.com", "ana.example.com"], result.stderr)


def test_new_reports_unknown_systems_by_option_and_writes_nothing(demo_workspace: Path) -> None:
    result = dsr(
        demo_workspace,
        *("new", "erasure", "--email", "-", "--requested-by", "me"),
        *("--systems", "crm,shopp", "--id", "DSR-X-1"),
        input=RAW_EMAIL,
    )
    assert result.exit_code == 1
    assert result.stderr.splitlines()[1:] == [
        "error: policies/requests/DSR-X-1.yaml was not written:",
        "error: --systems: unknown system 'shopp' (not in policies/systems.yaml); "
        "did you mean 'shop'?",
    ]
    assert request_files(demo_workspace) == []
    assert_nowhere([RAW_EMAIL], result.stdout, result.stderr)


def test_new_refuses_an_existing_id(demo_workspace: Path) -> None:
    args = ("new", "erasure", "--email", "-", "--requested-by", "me", "--id", "DSR-X-1")
    first = dsr(demo_workspace, *args, input=RAW_EMAIL)
    original = (demo_workspace / first.stdout.strip()).read_text()
    second = dsr(demo_workspace, *args, input="other@example.com\n")
    assert second.exit_code == 1
    assert "error: policies/requests/DSR-X-1.yaml already exists; choose another --id" in (
        second.stderr.splitlines()
    )
    assert (demo_workspace / "policies/requests/DSR-X-1.yaml").read_text() == original


def test_new_reports_a_broken_existing_request_and_writes_nothing(demo_workspace: Path) -> None:
    folder = demo_workspace / "policies" / "requests"
    folder.mkdir()
    (folder / "DSR-OLD-1.yaml").write_text("id: DSR-OLD-1\ntype: erasure\n")
    args = ("new", "erasure", "--email", "-", "--requested-by", "me", "--id", "DSR-NEW-1")
    result = dsr(demo_workspace, *args, input=RAW_EMAIL)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert "error: policies/requests/DSR-NEW-1.yaml was not written:" in lines
    assert "error: policies/requests/DSR-OLD-1.yaml:1: missing required key 'subject'" in lines
    assert request_files(demo_workspace) == ["DSR-OLD-1.yaml"]


# -- request files -----------------------------------------------------------------------------


def request_text(
    ws: Path,
    request_id: str = "DSR-20261120-7KQ2",
    *,
    type: str = "erasure",
    key_id: str | None = None,
    extra: str = "",
    systems: str = "all",
) -> str:
    key = dev_key(ws)
    digest = hash_identity("email", EMAIL, key)
    if key_id is not None:
        digest = digest.replace(f":{key.key_id}:", f":{key_id}:")
    return textwrap.dedent(
        f"""\
            id: {request_id}
            type: {type}
            subject:
              kind: customer
              identities:
                - type: email
                  hash: {digest}
            received: 2026-11-20
            requested_by: ana@contoso.example
            systems: {systems}
            """
    ) + textwrap.dedent(extra)


def put(ws: Path, name: str, text: str) -> Path:
    folder = ws / "policies" / "requests"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return folder / name


def problems(ws: Path) -> list[str]:
    with pytest.raises(ValidationFailed) as failed:
        load_workspace(ws)
    return [str(d) for d in failed.value.diagnostics]


def test_validate_passes_with_a_valid_request(demo_workspace: Path) -> None:
    extra = """\
        extension: {due: 2027-02-20, reason: complex request, subject_told: 2026-12-10}
        legal_hold: litigation hold, case 2026-114
        """
    put(demo_workspace, "DSR-20261120-7KQ2.yaml", request_text(demo_workspace, extra=extra))
    put(
        demo_workspace,
        "DSR-20261121-AAAA.yaml",
        request_text(
            demo_workspace,
            "DSR-20261121-AAAA",
            type="export",
            systems="[crm, insights]",
            extra="""\
                cancelled: subject withdrew the request
                approvals:
                  - {by: erin@contoso.example, at: 2026-11-21}
                """,
        ),
    )
    result = dsr(demo_workspace, "validate")
    assert result.exit_code == 0, result.output
    requests = load_workspace(demo_workspace).requests
    assert list(requests) == ["DSR-20261120-7KQ2", "DSR-20261121-AAAA"]
    erasure, export = requests.values()
    assert erasure.extension == Extension(date(2027, 2, 20), "complex request", date(2026, 12, 10))
    assert erasure.due == date(2027, 2, 20)
    assert erasure.legal_hold == "litigation hold, case 2026-114"
    assert erasure.file == "policies/requests/DSR-20261120-7KQ2.yaml"
    assert export.approvals == (Approval("erin@contoso.example", date(2026, 11, 21)),)
    assert export.cancelled == "subject withdrew the request"
    assert export.systems == ("crm", "insights")
    assert export.due == date(2026, 12, 20)


def test_the_day_rule_of_dsr_yaml_sets_the_due_date(demo_workspace: Path) -> None:
    settings = demo_workspace / "dsr.yaml"
    settings.write_text(settings.read_text() + "deadlines: {days: 45}\n")
    put(demo_workspace, "DSR-20261120-7KQ2.yaml", request_text(demo_workspace))
    assert load_workspace(demo_workspace).requests["DSR-20261120-7KQ2"].due == date(2027, 1, 4)


def test_bad_requests_are_reported_at_their_lines(demo_workspace: Path) -> None:
    ws = demo_workspace
    put(ws, "DSR-20261120-AAAA.yaml", request_text(ws, "DSR-20261120-BBBB"))
    put(ws, "DSR-20261120-CCCC.yaml", request_text(ws, "DSR-20261120-CCCC", systems="[crm, shopp]"))
    put(ws, "DSR-20261120-DDDD.yaml", request_text(ws, "DSR-20261120-DDDD", key_id="k0"))
    put(
        ws,
        "DSR-20261120-EEEE.yaml",
        request_text(
            ws,
            "DSR-20261120-EEEE",
            extra="extension: {due: 2027-02-21, reason: complex, subject_told: 2026-12-21}\n",
        ),
    )
    put(
        ws,
        "DSR-20261120-FFFF.yaml",
        request_text(
            ws,
            "DSR-20261120-FFFF",
            extra="approvals:\n  - {by: erin@contoso.example, at: 2026-11-21}\n",
        ),
    )
    put(ws, "DSR-20261120-GGGG.yaml", request_text(ws, "DSR-20261120-GGGG", extra="legal: x\n"))
    result = dsr(ws, "validate")
    assert result.exit_code == 1
    file = "error: policies/requests/DSR-20261120-"
    assert result.stderr.splitlines() == [
        f"{file}AAAA.yaml:1: id: 'DSR-20261120-BBBB' must equal the file name without .yaml, "
        "'DSR-20261120-AAAA'",
        f"{file}CCCC.yaml:10: systems[1]: unknown system 'shopp' (not in policies/systems.yaml); "
        "did you mean 'shop'?",
        f"{file}DDDD.yaml:7: subject.identities[0].hash: hashed with key id 'k0', but dsr.yaml "
        "identity.key_id is 'dev' and identity.previous does not list it: re-file the request "
        "with `dsr new`, or list the old key under identity.previous",
        f"{file}EEEE.yaml:11: extension.due: the extended due date 2027-02-21 is after the latest "
        "allowed, 2027-02-20 (2 further months after the original due date 2026-12-20)",
        f"{file}EEEE.yaml:11: extension.subject_told: the subject must be told of an extension "
        "within the first period, by 2026-12-20; 2026-12-21 is too late",
        f"{file}FFFF.yaml:11: approvals: only exports are approved; this request is an erasure",
        f"{file}GGGG.yaml:11: unknown key 'legal'; did you mean 'legal_hold'?",
    ]


def test_duplicate_identities_and_impossible_dates(demo_workspace: Path) -> None:
    digest = hash_identity("email", EMAIL, dev_key(demo_workspace))
    text = (
        request_text(demo_workspace)
        .replace("received: 2026-11-20", "received: '2026-02-30'")
        .replace(
            "systems: all",
            "systems: all\napprovals: [{by: erin@contoso.example, at: '2026-13-01'}]",
        )
        .replace(
            f"      hash: {digest}\n",
            f"      hash: {digest}\n    - type: email\n      hash: {digest}\n",
        )
    )
    put(demo_workspace, "DSR-20261120-7KQ2.yaml", text.replace("type: erasure", "type: export"))
    assert problems(demo_workspace) == [
        "policies/requests/DSR-20261120-7KQ2.yaml:8: subject.identities[1]: the same email is "
        "listed more than once (first at subject.identities[0])",
        "policies/requests/DSR-20261120-7KQ2.yaml:10: received: '2026-02-30' is not a valid date",
        "policies/requests/DSR-20261120-7KQ2.yaml:13: approvals[0].at: '2026-13-01' is not a "
        "valid date",
    ]


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (
            ("hash: hmac", "hash: HMAC"),
            "7: subject.identities[0].hash: must be hmac-sha256:<key id>:<64 lower-case hex "
            "digits>, as written by `dsr new`; never the raw value",
        ),
        (("systems: all", "systems: some"), "10: systems: must be all or a list of system names"),
        (("systems: all", "systems: []"), "10: systems: must not be empty"),
        (("type: erasure", "type: delete"), "2: type: 'delete' is not one of 'erasure', 'export'"),
        (
            ("received: 2026-11-20", "received: 20.11.2026"),
            "8: received: must be a date, YYYY-MM-DD",
        ),
        (("requested_by: ana@contoso.example\n", ""), "1: missing required key 'requested_by'"),
    ],
)
def test_schema_problems(demo_workspace: Path, edit: tuple[str, str], problem: str) -> None:
    put(demo_workspace, "DSR-20261120-7KQ2.yaml", request_text(demo_workspace).replace(*edit))
    assert problems(demo_workspace) == [f"policies/requests/DSR-20261120-7KQ2.yaml:{problem}"]


def test_a_raw_identifier_in_the_hash_field_is_not_echoed(demo_workspace: Path) -> None:
    digest = hash_identity("email", EMAIL, dev_key(demo_workspace))
    text = request_text(demo_workspace).replace(digest, EMAIL)
    put(demo_workspace, "DSR-20261120-7KQ2.yaml", text)
    result = dsr(demo_workspace, "validate")
    assert result.exit_code == 1
    assert_nowhere([EMAIL], result.stdout, result.stderr)


def test_yml_files_are_reported_not_ignored(demo_workspace: Path) -> None:
    put(demo_workspace, "DSR-20261120-7KQ2.yml", request_text(demo_workspace))
    assert problems(demo_workspace) == [
        "policies/requests/DSR-20261120-7KQ2.yml: not loaded: request files end in .yaml; "
        "rename it to DSR-20261120-7KQ2.yaml"
    ]


def test_the_digest_covers_request_files(demo_workspace: Path) -> None:
    without = load_workspace(demo_workspace).digest
    (demo_workspace / "policies" / "requests").mkdir()
    assert load_workspace(demo_workspace).digest == without
    path = put(demo_workspace, "DSR-20261120-7KQ2.yaml", request_text(demo_workspace))
    one = load_workspace(demo_workspace).digest
    assert one != without
    path.write_text(path.read_text().replace("requested_by: ana", "requested_by: bob"))
    edited = load_workspace(demo_workspace).digest
    assert edited not in {one, without}
    path.write_text("# a comment changes nothing\n" + path.read_text())
    assert load_workspace(demo_workspace).digest == edited


def test_the_request_schema_is_draft_2020_12_and_documents_every_property() -> None:
    schema = load_schema("request")
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == "https://dsr.dev/schemas/request.schema.json"
    assert schema["title"] and schema["description"]

    def walk(node: Any, where: str) -> list[str]:
        missing: list[str] = []
        if isinstance(node, dict):
            if node.get("type") == "object" and node.get("additionalProperties") is not False:
                missing.append(f"{where}: additionalProperties")
            for name, sub in node.get("properties", {}).items():
                if not (sub.get("title") and sub.get("description")):
                    missing.append(f"{where}.{name}: title or description")
            for key, value in node.items():
                missing += walk(value, f"{where}/{key}")
        return missing

    assert walk(schema, "") == []


def test_the_subject_is_never_recorded_as_the_requester(demo_workspace: Path) -> None:
    from click.testing import CliRunner

    from reconciler.cli import cli

    result = CliRunner().invoke(
        cli,
        [
            "-C",
            str(demo_workspace),
            "new",
            "erasure",
            "--email",
            "-",
            "--requested-by",
            "Jane@Example.com",
        ],
        input="jane@example.com\n",
    )
    assert result.exit_code == 1
    assert "subject's own address" in result.output
    written = [
        p.read_text().lower()
        for p in demo_workspace.rglob("*")
        if p.is_file() and p.suffix in (".yaml", ".yml")
    ]
    assert written and not any("jane@example.com" in text for text in written)


def test_several_identities_come_from_stdin_none_echoed(demo_workspace: Path) -> None:
    """Only one identifier could come from stdin: a subject with an e-mail and a phone forced
    one of them onto the command line and into shell history."""
    phone = "+55 (12) 3923-5555"
    result = dsr(
        demo_workspace,
        "new",
        "erasure",
        "--stdin",
        "--requested-by",
        "dpo@contoso.example",
        "--id",
        "DSR-S-1",
        input=f"email: {RAW_EMAIL}\n# a comment\nphone: {phone}\n",
    )
    assert result.exit_code == 0, result.output
    text = (demo_workspace / "policies/requests/DSR-S-1.yaml").read_text()
    assert RAW_EMAIL not in result.output + text and phone not in result.output + text
    request = load_workspace(demo_workspace).requests["DSR-S-1"]
    assert [i.type for i in request.identities] == ["email", "phone"]
    bad = dsr(
        demo_workspace,
        "new",
        "erasure",
        "--stdin",
        "--requested-by",
        "dpo@contoso.example",
        input=f"name: {RAW_EMAIL}\n",
    )
    assert bad.exit_code == 1
    assert "--stdin line 1: expected `type: value`" in bad.output
    assert RAW_EMAIL not in bad.output
