"""Honest outcomes for the privacy team (issue 10), end to end on the demo workspace: a
mistyped identifier is "no data found", not "erased"; receipts are complete whatever path the
request took; time is shown honestly; delivery is recorded; `audit show` reads as words."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from demo.contoso import owner_delete, pick_subject

from .cli import dsr, file_request


def receipt(ws: Path, rid: str) -> dict[str, object]:
    lines = dsr(ws, "audit", "show", rid, "--format", "json").stdout.splitlines()
    (record,) = [json.loads(line) for line in lines if '"action": "complete"' in line]
    found: dict[str, object] = record["details"]["receipt"]
    return found


def test_a_mistyped_identifier_is_no_data_found_not_erased(demo_workspace: Path) -> None:
    typo = pick_subject(demo_workspace, "crm-only").replace("@", "x@")
    file_request(demo_workspace, "erasure", typo, "DSR-O-1")
    planned = dsr(demo_workspace, "plan", "--format", "markdown")
    assert "DSR-O-1: its identities match no row in any mapped system" in planned.output
    assert dsr(demo_workspace, "apply", "--auto-approve").exit_code == 0
    got = receipt(demo_workspace, "DSR-O-1")
    assert got["outcome"] == "no data found" and got["tables"] == {}
    shown = dsr(demo_workspace, "audit", "show", "DSR-O-1").output
    assert "RECEIPT DSR-O-1: NO DATA FOUND" in shown
    assert re.search(r"DSR-O-1\s+erasure\s+no data found", dsr(demo_workspace, "status").output)
    assert typo not in planned.output + shown


def test_the_receipt_of_an_erasure_that_waited_on_a_source_owner_is_complete(
    demo_workspace: Path,
) -> None:
    email = pick_subject(demo_workspace, "both")
    file_request(demo_workspace, "erasure", email, "DSR-O-2")
    assert dsr(demo_workspace, "apply", "--auto-approve").exit_code == 0  # waits on the shop
    owner_delete(demo_workspace, "shop", email)
    assert dsr(demo_workspace, "apply", "--auto-approve").exit_code == 0
    got = receipt(demo_workspace, "DSR-O-2")
    tables = got["tables"]
    assert isinstance(tables, dict)
    assert tables["shop.customers"] == {"deleted_by_owner": 1}
    assert tables["crm.order_lines"]["reason"] == "invoices are kept under a legal obligation"
    assert tables["crm.orders"]["retained"] >= 1
    assert got["outcome"] == "erased" and got["late_by_days"] == 0
    assert set(got["refreshes"]) == {"insights", "apps"}  # type: ignore[arg-type]


def test_time_is_shown_honestly(demo_workspace: Path) -> None:
    file_request(
        demo_workspace,
        "erasure",
        pick_subject(demo_workspace, "late"),
        "DSR-O-3",
        "--received",
        "2026-01-05",
    )
    file_request(demo_workspace, "erasure", pick_subject(demo_workspace, "crm-only"), "DSR-O-4")
    file_request(
        demo_workspace,
        "export",
        pick_subject(demo_workspace, "export"),
        "DSR-O-5",
        "--received",
        "2026-01-06",
    )  # overdue and awaiting approval
    before = dsr(demo_workspace, "status").output
    order = [m for m in re.findall(r"^\s+(DSR-O-\d)", before, re.M)]
    assert order[:2] == ["DSR-O-3", "DSR-O-5"]  # overdue first, then by due date
    assert re.search(r"DSR-O-5\s+export\s+overdue, awaiting approval", before)
    assert dsr(demo_workspace, "apply", "--auto-approve").exit_code == 0
    after = dsr(demo_workspace, "status").output
    late = re.search(
        r"DSR-O-3\s+erasure\s+completed, late\s+due 2026-02-05 \(LATE by (\d+) days\)", after
    )
    assert late, after
    on_time = next(line for line in after.splitlines() if "DSR-O-4" in line)
    assert "left" not in on_time and "completed" in on_time  # no days left once answered
    assert receipt(demo_workspace, "DSR-O-3")["late_by_days"] == int(late[1])


def test_delivery_is_recorded_and_the_package_goes(demo_workspace: Path) -> None:
    file_request(demo_workspace, "export", pick_subject(demo_workspace, "export"), "DSR-O-6")
    assert dsr(demo_workspace, "approve", "DSR-O-6", "--by", "erin@contoso.example").exit_code == 0
    early = dsr(demo_workspace, "deliver", "DSR-O-6", "--by", "dpo@x.example")
    assert early.exit_code == 1 and "no package was built" in early.output
    assert dsr(demo_workspace, "apply", "--auto-approve").exit_code == 0
    package = demo_workspace / "state/outbox/DSR-O-6.zip"
    assert package.exists()
    recorded = dsr(demo_workspace, "deliver", "DSR-O-6", "--by", "dpo@x.example")
    assert recorded.exit_code == 0, recorded.output
    text = (demo_workspace / "policies/requests/DSR-O-6.yaml").read_text()
    assert "delivered: {by: dpo@x.example, at: " in text
    assert dsr(demo_workspace, "apply", "--auto-approve").exit_code == 0
    assert not package.exists()
    assert re.search(r"DSR-O-6\s+export\s+delivered", dsr(demo_workspace, "status").output)
    audit = dsr(demo_workspace, "audit", "show", "DSR-O-6", "--format", "json").stdout
    actions = [json.loads(line)["action"] for line in audit.splitlines()]
    assert actions.count("build_export") == 1 and actions.count("expire_export") == 1
    again = dsr(demo_workspace, "deliver", "DSR-O-6", "--by", "dpo@x.example")
    assert again.exit_code == 1 and "was recorded as delivered" in again.output


@pytest.mark.parametrize("rid", ["DSR-O-7"])
def test_audit_show_reads_as_words_and_names_the_request(demo_workspace: Path, rid: str) -> None:
    file_request(demo_workspace, "erasure", pick_subject(demo_workspace, "crm-only"), rid)
    assert dsr(demo_workspace, "apply", "--auto-approve").exit_code == 0
    listing = dsr(demo_workspace, "audit", "show").output
    assert "still_present={}" not in listing and "['" not in listing and "{'" not in listing
    assert re.search(rf"\d+\s+\S+ \S+\s+{rid}\s+delete_rows", listing)
