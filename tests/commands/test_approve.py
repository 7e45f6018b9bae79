"""Export approvals: the tenant-admin rule, `dsr approve`, and the loader's checks of approvals.

The rule is a pure function, tested on model values. `dsr approve` runs through the real CLI
(click's CliRunner on `reconciler.cli.cli`) on a copy of the demo workspace, on an export
filed with `dsr new export`. No mocks.
"""

from __future__ import annotations

import textwrap
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler.cli import cli
from reconciler.desired.approvals import approval_problems, approval_status, counting_approval
from reconciler.desired.load import load_workspace
from reconciler.desired.model import (
    Access,
    Approval,
    DesiredUser,
    IdentityHash,
    Request,
    RequestType,
    SubjectKind,
)
from reconciler.errors import ValidationFailed
from reconciler.workspace import utcnow

ANA = "ana@contoso.example"  # admin, and the requester below
ERIN = "erin@contoso.example"  # admin
BEN = "ben@contoso.example"  # not an admin
RECEIVED = date(2026, 11, 20)
SUBJECT = "subject.person@example.com"
ID = "DSR-20261120-EXP1"
FILE = f"policies/requests/{ID}.yaml"


@pytest.fixture(autouse=True)
def _no_identity_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DSR_IDENTITY_KEY", raising=False)


# -- the rule -----------------------------------------------------------------------------------


def access(admin_role: str = "admin") -> Access:
    return Access(
        roles=(admin_role, "viewer"),
        users={
            ANA: DesiredUser(ANA, frozenset({admin_role})),
            ERIN: DesiredUser(ERIN, frozenset({admin_role, "viewer"})),
            BEN: DesiredUser(BEN, frozenset({"viewer"})),
            "dan@contoso.example": DesiredUser("dan@contoso.example", frozenset({admin_role})),
        },
        admin_role=admin_role,
    )


def export(*approvals: Approval, requested_by: str = ANA) -> Request:
    return Request(
        id=ID,
        type=RequestType.EXPORT,
        subject_kind=SubjectKind.CUSTOMER,
        identities=(IdentityHash("email", "hmac-sha256:dev:" + "0" * 64),),
        received=RECEIVED,
        requested_by=requested_by,
        due=date(2026, 12, 20),
        approvals=approvals,
    )


def test_no_approvals_awaits_a_tenant_admin() -> None:
    assert approval_status(export(), access()) == (False, "awaiting approval by a tenant admin")
    assert counting_approval(export(), access()) is None


def test_an_admin_who_did_not_request_it_approves() -> None:
    request = export(Approval(ERIN, date(2026, 11, 21)))
    assert approval_status(request, access()) == (True, f"approved by {ERIN} on 2026-11-21")


def test_an_approval_on_the_day_of_receipt_counts() -> None:
    assert approval_status(export(Approval(ERIN, RECEIVED)), access())[0] is True


@pytest.mark.parametrize("requested_by", [ANA, "  Ana@Contoso.EXAMPLE ", "ANA@CONTOSO.EXAMPLE"])
def test_self_approval_does_not_count_whatever_the_case(requested_by: str) -> None:
    request = export(Approval(ANA, date(2026, 11, 21)), requested_by=requested_by)
    assert approval_status(request, access()) == (
        False,
        f"awaiting approval: {ANA} requested it and cannot approve it",
    )


def test_a_non_admin_approver_does_not_count() -> None:
    request = export(Approval(BEN, date(2026, 11, 21)))
    assert approval_status(request, access()) == (
        False,
        f"awaiting approval: {BEN} does not hold the admin role",
    )


def test_the_admin_role_is_the_one_access_yaml_names() -> None:
    request = export(Approval(ERIN, date(2026, 11, 21)))
    assert approval_status(request, access("owner"))[0] is True
    users = {ERIN: DesiredUser(ERIN, frozenset({"admin"}))}
    renamed = Access(roles=("owner", "admin"), users=users, admin_role="owner")
    assert approval_status(request, renamed) == (
        False,
        f"awaiting approval: {ERIN} does not hold the owner role",
    )


def test_an_approval_before_receipt_does_not_count() -> None:
    request = export(Approval(ERIN, date(2026, 11, 19)))
    assert approval_status(request, access()) == (
        False,
        f"awaiting approval: {ERIN} approved on 2026-11-19, before the request was received on "
        "2026-11-20",
    )


def test_every_rejected_approval_and_every_reason_is_explained() -> None:
    request = export(
        Approval(BEN, date(2026, 11, 21)),
        Approval(ANA, date(2026, 11, 19)),
        Approval("zed@contoso.example", date(2026, 11, 22)),
        requested_by=BEN,
    )
    assert approval_status(request, access()) == (
        False,
        "awaiting approval: "
        f"{BEN} does not hold the admin role and requested it and cannot approve it; "
        f"{ANA} approved on 2026-11-19, before the request was received on 2026-11-20; "
        "zed@contoso.example is not a user in policies/access.yaml",
    )


def test_without_access_yaml_no_approval_counts() -> None:
    request = export(Approval(ERIN, date(2026, 11, 21)))
    assert approval_status(request, None) == (
        False,
        f"awaiting approval: {ERIN} cannot hold the admin role: there is no policies/access.yaml",
    )


def test_a_valid_approval_among_invalid_ones_counts_and_the_earliest_wins() -> None:
    request = export(
        Approval(BEN, date(2026, 11, 21)),
        Approval(ANA, date(2026, 11, 21)),
        Approval(ERIN, date(2026, 11, 24)),
        Approval(ERIN, date(2026, 11, 19)),
        Approval("dan@contoso.example", date(2026, 11, 23)),
    )
    assert approval_status(request, access()) == (
        True,
        "approved by dan@contoso.example on 2026-11-23",
    )
    assert approval_problems(request, access(), request.approvals[2]) == []
    assert approval_problems(request, access(), request.approvals[0]) == [
        "does not hold the admin role"
    ]


# -- dsr approve --------------------------------------------------------------------------------


def dsr(ws: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, ["-C", str(ws), *args], input=input, catch_exceptions=False)


def file_request(ws: Path, kind: str = "export", request_id: str = ID) -> str:
    """File a request with `dsr new`; its text."""
    result = dsr(
        ws,
        *("new", kind, "--email", "-", "--requested-by", ANA),
        *("--received", str(RECEIVED), "--id", request_id),
        input=SUBJECT + "\n",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == f"policies/requests/{request_id}.yaml\n"
    return (ws / result.stdout.strip()).read_text(encoding="utf-8")


def approve(ws: Path, *args: str) -> Result:
    return dsr(ws, "approve", *args)


def folder_listing(ws: Path) -> list[str]:
    return sorted(p.name for p in (ws / "policies" / "requests").iterdir())


def test_approve_appends_and_keeps_the_file_as_written(demo_workspace: Path) -> None:
    original = file_request(demo_workspace)
    assert original.startswith("# Written by `dsr new`")
    result = approve(demo_workspace, ID, "--by", ERIN, "--on", "2026-11-21")
    assert result.exit_code == 0, result.output
    assert result.stdout == FILE + "\n"
    assert result.stderr == ""
    text = (demo_workspace / FILE).read_text(encoding="utf-8")
    assert text == original + f"approvals:\n  - {{by: {ERIN}, at: 2026-11-21}}\n"

    # A reviewer's comment is kept; the next approval goes under the first.
    (demo_workspace / FILE).write_text(text + "# approved in PR 12\n", encoding="utf-8")
    result = approve(demo_workspace, ID, "--by", "dan@contoso.example", "--on", "2026-11-22")
    assert result.exit_code == 1  # dan is not in the demo's access.yaml
    result = approve(demo_workspace, ID, "--by", BEN, "--on", "2026-11-22")
    assert result.exit_code == 0, result.output
    assert (demo_workspace / FILE).read_text(encoding="utf-8") == original + (
        f"approvals:\n  - {{by: {ERIN}, at: 2026-11-21}}\n"
        f"  - {{by: {BEN}, at: 2026-11-22}}\n# approved in PR 12\n"
    )
    request = load_workspace(demo_workspace).requests[ID]
    assert request.approvals == (
        Approval(ERIN, date(2026, 11, 21)),
        Approval(BEN, date(2026, 11, 22)),
    )
    assert folder_listing(demo_workspace) == [f"{ID}.yaml"]  # no temp file left
    assert SUBJECT not in text + result.output


def test_approve_extends_a_hand_written_block_list_at_its_indent(demo_workspace: Path) -> None:
    original = file_request(demo_workspace)
    hand = original + textwrap.dedent(
        f"""\
        approvals:
            -   by: {BEN}   # asked in the ticket
                at: 2026-11-21
        # end of approvals
        """
    )
    (demo_workspace / FILE).write_text(hand, encoding="utf-8")
    result = approve(demo_workspace, ID, "--by", ERIN, "--on", "2026-11-22")
    assert result.exit_code == 0, result.output
    assert (demo_workspace / FILE).read_text(encoding="utf-8") == original + textwrap.dedent(
        f"""\
        approvals:
            -   by: {BEN}   # asked in the ticket
                at: 2026-11-21
            - {{by: {ERIN}, at: 2026-11-22}}
        # end of approvals
        """
    )


def test_approve_extends_a_flow_list(demo_workspace: Path) -> None:
    original = file_request(demo_workspace)
    flow = original + f"approvals: [{{by: {BEN}, at: 2026-11-21}}]  # from the ticket\n"
    (demo_workspace / FILE).write_text(flow, encoding="utf-8")
    result = approve(demo_workspace, ID, "--by", ERIN, "--on", "2026-11-22")
    assert result.exit_code == 0, result.output
    assert (demo_workspace / FILE).read_text(encoding="utf-8") == original + (
        f"approvals: [{{by: {BEN}, at: 2026-11-21}}, {{by: {ERIN}, at: 2026-11-22}}]"
        "  # from the ticket\n"
    )


def test_approve_keeps_crlf_line_endings(demo_workspace: Path) -> None:
    original = file_request(demo_workspace)
    path = demo_workspace / FILE
    path.write_bytes(original.replace("\n", "\r\n").encode())
    result = approve(demo_workspace, ID, "--by", ERIN, "--on", "2026-11-21")
    assert result.exit_code == 0, result.output
    assert (
        path.read_bytes()
        == (original + f"approvals:\n  - {{by: {ERIN}, at: 2026-11-21}}\n")
        .replace("\n", "\r\n")
        .encode()
    )


def test_approve_defaults_to_today_and_names_the_user_as_access_yaml_does(
    demo_workspace: Path,
) -> None:
    file_request(demo_workspace)
    result = approve(demo_workspace, ID, "--by", "  Erin@Contoso.EXAMPLE ")
    assert result.exit_code == 0, result.output
    today = utcnow().date()
    request = load_workspace(demo_workspace).requests[ID]
    assert request.approvals == (Approval(ERIN, today),)


@pytest.mark.parametrize(
    ("user", "on", "warning"),
    [
        (BEN, "2026-11-21", f"{BEN} does not hold the admin role"),
        (ANA, "2026-11-21", f"{ANA} requested it and cannot approve it"),
        (
            ERIN,
            "2026-11-19",
            f"{ERIN} approved on 2026-11-19, before the request was received on 2026-11-20",
        ),
    ],
    ids=["non-admin", "self-approval", "before-receipt"],
)
def test_approve_records_an_approval_that_will_not_count_with_a_warning(
    demo_workspace: Path, user: str, on: str, warning: str
) -> None:
    file_request(demo_workspace)
    result = approve(demo_workspace, ID, "--by", user, "--on", on)
    assert result.exit_code == 0, result.output
    assert result.stdout == FILE + "\n"
    assert result.stderr == f"warning: recorded, but this approval will not count: {warning}\n"
    request = load_workspace(demo_workspace).requests[ID]
    assert request.approvals == (Approval(user, date.fromisoformat(on)),)
    assert approval_status(request, load_workspace(demo_workspace).access)[0] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            (ID, "--by", "mallory"),
            "error: 'mallory' is not a user in policies/access.yaml",
        ),
        (
            (ID, "--by", "erin@contoso.exmaple"),
            "error: 'erin@contoso.exmaple' is not a user in policies/access.yaml; did you mean "
            f"'{ERIN}'?",
        ),
        (
            ("DSR-20261120-NOPE", "--by", ERIN),
            "error: no request DSR-20261120-NOPE: policies/requests/DSR-20261120-NOPE.yaml does "
            "not exist",
        ),
        (
            ("../../dsr", "--by", ERIN),
            "error: '../../dsr' is not a request id: upper-case letters and digits in parts "
            "joined by '-', for example DSR-20261129-7KQ2",
        ),
        ((ID, "--by", ERIN, "--on", "2999-01-01"), "error: --on 2999-01-01 is in the future"),
    ],
    ids=["unknown-user", "misspelt-user", "unknown-request", "path-as-id", "future-date"],
)
def test_approve_refuses_and_changes_nothing(
    demo_workspace: Path, args: tuple[str, ...], message: str
) -> None:
    original = file_request(demo_workspace)
    result = approve(demo_workspace, *args)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [message]
    assert (demo_workspace / FILE).read_text(encoding="utf-8") == original
    assert folder_listing(demo_workspace) == [f"{ID}.yaml"]


def test_approve_refuses_an_erasure(demo_workspace: Path) -> None:
    original = file_request(demo_workspace, "erasure")
    result = approve(demo_workspace, ID, "--by", ERIN)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"error: {ID} is an erasure request; only export requests are approved"
    ]
    assert (demo_workspace / FILE).read_text(encoding="utf-8") == original


@pytest.mark.parametrize("again", [ERIN, "ERIN@contoso.example"])
def test_approve_refuses_a_second_approval_by_the_same_user(
    demo_workspace: Path, again: str
) -> None:
    file_request(demo_workspace)
    assert approve(demo_workspace, ID, "--by", ERIN, "--on", "2026-11-21").exit_code == 0
    before = (demo_workspace / FILE).read_text(encoding="utf-8")
    result = approve(demo_workspace, ID, "--by", again, "--on", "2026-11-22")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"error: {ERIN} already approved {ID} on 2026-11-21"]
    assert (demo_workspace / FILE).read_text(encoding="utf-8") == before


def test_approve_refuses_in_an_invalid_workspace(demo_workspace: Path) -> None:
    original = file_request(demo_workspace)
    (demo_workspace / "policies/requests/DSR-OLD-1.yaml").write_text("id: DSR-OLD-1\n")
    result = approve(demo_workspace, ID, "--by", ERIN)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: {FILE} was not changed: the workspace is invalid:"
    assert "error: policies/requests/DSR-OLD-1.yaml:1: missing required key 'type'" in lines
    assert (demo_workspace / FILE).read_text(encoding="utf-8") == original


# -- the loader's checks ------------------------------------------------------------------------


def problems(ws: Path) -> list[str]:
    with pytest.raises(ValidationFailed) as failed:
        load_workspace(ws)
    return [str(d) for d in failed.value.diagnostics]


def test_an_approval_by_someone_not_in_access_yaml_does_not_count_and_the_plan_says_why(
    demo_workspace: Path,
) -> None:
    """History is not re-judged: the request file stays valid whoever left access.yaml; a
    pending approval by someone who is not a tenant admin now simply does not count."""
    original = file_request(demo_workspace)
    (demo_workspace / FILE).write_text(
        original
        + "approvals:\n"
        + "  - by: erin@contoso.exmaple\n"
        + "    at: 2026-11-21\n"
        + "  - {by: mallory, at: 2026-11-22}\n"
        + "  - {by: Erin, at: 2026-11-22}\n",
        encoding="utf-8",
    )
    assert dsr(demo_workspace, "validate", "--offline").exit_code == 0
    request = load_workspace(demo_workspace).requests[ID]
    counts, why = approval_status(request, load_workspace(demo_workspace).access)
    assert not counts
    assert why == (
        "awaiting approval: "
        f"erin@contoso.exmaple is not a user in policies/access.yaml (did you mean '{ERIN}'?); "
        "mallory is not a user in policies/access.yaml; "
        f"Erin is not a user in policies/access.yaml (did you mean '{ERIN}'?)"
    )
    plan = dsr(demo_workspace, "plan")
    assert f"{ID}  export" in plan.output
    assert "[awaiting_approval]" in plan.output
    assert "mallory is not a user in policies/access.yaml" in plan.output


def test_without_access_yaml_an_approval_does_not_count(demo_workspace: Path) -> None:
    original = file_request(demo_workspace)
    (demo_workspace / "policies" / "access.yaml").unlink()
    (demo_workspace / FILE).write_text(
        original + f"approvals:\n  - {{by: {ERIN}, at: 2026-11-21}}\n", encoding="utf-8"
    )
    desired = load_workspace(demo_workspace)
    assert approval_status(desired.requests[ID], desired.access) == (
        False,
        f"awaiting approval: {ERIN} cannot hold the admin role: there is no policies/access.yaml",
    )


def test_an_invalid_access_yaml_is_reported_instead_of_unknown_approvers(
    demo_workspace: Path,
) -> None:
    original = file_request(demo_workspace)
    (demo_workspace / "policies" / "access.yaml").write_text("roles: [admin]\n")
    (demo_workspace / FILE).write_text(
        original + "approvals:\n  - {by: mallory, at: 2026-11-21}\n", encoding="utf-8"
    )
    assert problems(demo_workspace) == [
        "policies/access.yaml:1: missing required key 'users'",
    ]


def test_an_export_for_an_unknown_system_is_reported(demo_workspace: Path) -> None:
    result = dsr(
        demo_workspace,
        *("new", "export", "--email", "-", "--requested-by", ANA, "--id", ID),
        *("--systems", "crm,warehouse"),
        input=SUBJECT + "\n",
    )
    assert result.exit_code == 1
    assert "error: --systems: unknown system 'warehouse' (not in policies/systems.yaml)" in (
        result.stderr.splitlines()
    )
    original = file_request(demo_workspace)
    (demo_workspace / FILE).write_text(
        original.replace("systems: all", "systems: [crm, warehouse]"), encoding="utf-8"
    )
    line = original.splitlines().index("systems: all") + 1
    assert problems(demo_workspace) == [
        f"{FILE}:{line}: systems[1]: unknown system 'warehouse' (not in policies/systems.yaml)",
    ]
