"""Rendering plans for people (`render/plan.py`), on the plans of the planner's golden cases.

What a reviewer needs on each request: its title with the due date, one row per step with its
count, the retained rows and why, and the summary sentence; in markdown, table cells that
cannot break the table. And never a raw identifier of a data subject: the observe golden cases
are run end to end (rows with raw values -> matches -> plan -> every rendering) and grepped.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from observe import golden as observe_golden
from plan import golden

from reconciler.observe.model import Observed, ObservedSystem
from reconciler.plan import planfile
from reconciler.plan.model import Plan
from reconciler.plan.planner import plan
from reconciler.render.plan import (
    ROWS,
    plan_drift,
    render_markdown,
    render_text,
    request_rows,
    shared_steps,
    summary,
)

NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


def planned(name: str, observed: dict[str, Any] | None = None) -> Plan:
    case = golden.load_case(golden.CASES_DIR / name)
    data = case.observed_json if observed is None else observed
    return plan(
        golden.desired_from(case.files, case.path), golden.observed_from(data), now=case.now
    )


def lines(text: str) -> list[str]:
    return [re.sub(r" {2,}", "  ", line.strip()) for line in text.splitlines()]


# -- text --------------------------------------------------------------------------------


def test_an_erasure_shows_every_step_with_its_count_and_what_is_retained() -> None:
    text = render_text(planned("erasures/delete_mask_retain_refresh"), head="dsr plan · test")
    assert lines(text) == [
        "dsr plan · test",
        "",
        "DSR-1  erasure  customer  due 2026-12-20 (21 days left)  [pending]",
        "crm  orders  mask  1 row  masked: email, phone, shipping_address; "
        "retained: bookkeeping obligation, 10 years",
        "crm  customers  delete  1 row  erased at the source",
        "crm  order_lines  retain  3 rows  invoices are kept under a legal obligation",
        "insights  refresh  after crm",
        "apps  refresh  after insights (downstream)",
        "crm  verify  customers, orders: absent or masked",
        "insights  verify  profiles: absent or masked",
        "apps  verify  consent_view: absent or masked",
        "insights  system_logs  purge  2 rows  system-generated logs that mention the subject",
        "dsr  complete  receipt to the audit log; tombstone kept",
        "",
        "Plan: 1 erasure (1 row deleted, 1 masked, 2 log rows purged), 2 refreshes.",
    ]


def test_a_waiting_overdue_request_shows_counts_at_the_source_and_why() -> None:
    text = render_text(planned("erasures/await_source_overdue"))
    assert lines(text)[:3] == [
        "DSR-2  erasure  customer  due 2026-11-20 (OVERDUE by 9 days)  [waiting]",
        "waiting on shop",
        "shop  carts 2 rows, customers 1 row  await  shop is not writable by dsr: "
        "its owner must delete it",
    ]
    # Waiting on a source's owner is not a change apply would make (GitOps issue 8).
    assert lines(text)[-1] == (
        "No changes dsr can make now: 1 request waiting on a source owner (DSR-2)."
    )


def test_a_shared_refresh_is_shown_in_every_request_that_needs_it() -> None:
    p = planned("erasures/shared_refresh")
    for view in p.requests:
        rows = request_rows(p, view)
        assert [r.system for r in rows if r.what == "refresh"] == ["insights", "apps"], view.id
    assert summary(p) == "Plan: 2 erasures (3 rows deleted), 2 refreshes."
    assert "DSR-2  erasure  customer  due 2027-01-20 (52 days left)  [pending]" in lines(
        render_text(p)
    )


def test_permission_changes_come_first_then_the_user_erasure() -> None:
    text = render_text(planned("erasures/platform_user"))
    assert lines(text) == [
        "Permissions (insights)",
        "- remove  dave@contoso.example (roles: contributor)  user not in policies/access.yaml",
        "",
        "DSR-3  erasure  user  due 2026-12-25 (26 days left)  [pending]",
        "insights  segments  delete  2 rows  user data created by the platform",
        "insights  comments  mask  1 row  user data created by the platform",
        "insights  verify  comments, segments, user_roles: absent or masked",
        "dsr  complete  receipt to the audit log; tombstone kept",
        "",
        "Plan: 1 erasure (2 rows deleted, 1 masked), 1 role change.",
    ]


@pytest.mark.parametrize(
    ("name", "sentence"),
    [
        (
            "erasures/completed_noop",
            "No changes. The actual state matches the desired state. "
            "1 completed erasure re-checked: nothing came back.",
        ),
        ("erasures/legal_hold", "No changes. The actual state matches the desired state."),
        ("erasures/cancelled", "No changes. The actual state matches the desired state."),
        (
            "erasures/platform_user_still_in_access",
            "No changes can be made now. 1 request blocked: DSR-3.",
        ),
        ("erasures/fk_refused", "Plan refused: 2 problems; nothing will be changed."),
        (
            "erasures/unreadable_system",
            "Plan: 1 erasure (1 row deleted), 1 refresh. 1 request blocked: DSR-1.",
        ),
        ("erasures/reingested", "Plan: 1 erasure (1 row deleted), 1 refresh."),
        ("erasures/holds_erased", "Plan: 1 erasure (verify and record), 2 refreshes."),
        ("exports/approved_by_admin", "Plan: 1 export built."),
        ("exports/built_expired", "Plan: 1 export expired."),
        ("exports/cancelled_after_build", "Plan: 1 export expired."),
        ("exports/built_not_expired", "No changes. The actual state matches the desired state."),
        (
            "exports/export_and_erasure_same_subject",
            "Plan: 1 erasure (1 row deleted, 1 masked), 1 export built, 1 refresh.",
        ),
        ("exports/unreadable_system", "No changes can be made now. 1 request blocked: DSR-4."),
    ],
)
def test_the_summary_sentence(name: str, sentence: str) -> None:
    p = planned(name)
    assert summary(p) == sentence
    assert render_text(p).rstrip("\n").endswith(sentence)
    assert f"**{sentence}**" in render_markdown(p)


@pytest.mark.parametrize(
    ("name", "note"),
    [
        ("erasures/legal_hold", "legal hold: litigation hold, case 2026-17"),
        ("erasures/cancelled", "cancelled: the subject withdrew the request"),
        ("erasures/platform_without_refresh", "insights cannot be refreshed"),
        ("erasures/platform_user_still_in_access", "the user is still in policies/access.yaml"),
        (
            "exports/approved_only_by_requester",
            "awaiting approval: ben@contoso.example requested it and cannot approve it",
        ),
        (
            "exports/built_not_expired",
            "ready: state/outbox/DSR-6.zip (expires 2026-12-22), not yet delivered",
        ),
        ("exports/already_expired", "expired 2026-11-21; the audit record stays"),
    ],
)
def test_a_request_without_steps_still_says_where_it_stands(name: str, note: str) -> None:
    p = planned(name)
    assert note in lines(render_text(p))
    assert f"_{note}_" in render_markdown(p)


def test_a_completed_request_with_nothing_to_do_gets_no_section() -> None:
    p = planned("erasures/completed_noop")
    assert "DSR-1" not in render_text(p)
    assert "DSR-1" not in render_markdown(p)


def test_warnings_and_errors_are_shown_before_the_summary() -> None:
    text = render_text(planned("erasures/holds_erased"))
    assert (
        "warning: the last refresh of insights failed at 2026-11-28 02:00 UTC: refresh job "
        "exited with status 1; dsr retries it when it is needed" in lines(text)
    )
    refused = lines(render_text(planned("erasures/fk_refused")))
    errors = [line for line in refused if line.startswith("error: ")]
    assert len(errors) == 2
    assert refused.index(errors[-1]) < refused.index(
        "Plan refused: 2 problems; nothing will be changed."
    )


# -- markdown ----------------------------------------------------------------------------


def _table_rows(markdown: str) -> list[list[str]]:
    """The cells of each table row, split on pipes that are not escaped."""
    return [
        [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        for line in markdown.splitlines()
        if line.startswith("|")
    ]


@pytest.mark.parametrize("path", golden.case_dirs(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_markdown_table_row_has_as_many_cells_as_its_header(path: Path) -> None:
    md = render_markdown(golden.plan_case(golden.load_case(path)))
    widths = {len(cells) for cells in _table_rows(md)}
    assert widths <= {4, 5}, md  # the permissions table has 4 columns, a request's 5
    assert md.endswith("\n") and "<sub>plan " in md


def test_pipes_in_reasons_are_escaped_in_markdown_tables() -> None:
    case = golden.load_case(golden.CASES_DIR / "erasures/delete_mask_retain_refresh")
    files = dict(case.files)
    files["policies/systems.yaml"] = files["policies/systems.yaml"].replace(
        "{retain: invoices are kept under a legal obligation}",
        '{retain: "invoices are kept | HGB §257"}',
    )
    assert files != case.files
    p = plan(
        golden.desired_from(files, case.path),
        golden.observed_from(case.observed_json),
        now=case.now,
    )
    md = render_markdown(p)
    assert "| crm | order_lines | retain | 3 rows | invoices are kept \\| HGB §257 |" in md
    rows = _table_rows(md)
    assert ["crm", "order_lines", "retain", "3 rows", "invoices are kept \\| HGB §257"] in rows
    assert {len(r) for r in rows} == {5}


def test_a_reason_with_a_line_break_keeps_its_markdown_row_whole() -> None:
    case = golden.load_case(golden.CASES_DIR / "erasures/delete_mask_retain_refresh")
    files = dict(case.files)
    files["policies/systems.yaml"] = files["policies/systems.yaml"].replace(
        "{retain: invoices are kept under a legal obligation}",
        '{retain: "invoices are kept\\nunder a legal obligation"}',
    )
    assert files != case.files
    p = plan(
        golden.desired_from(files, case.path),
        golden.observed_from(case.observed_json),
        now=case.now,
    )
    md = render_markdown(p)
    (row,) = [line for line in md.splitlines() if "| order_lines |" in line]
    assert row.endswith(" |"), row


# -- every change is shown ---------------------------------------------------------------


def _every_change_params() -> list[Any]:
    return [pytest.param(p, id=f"{p.parent.name}/{p.name}") for p in golden.case_dirs()]


@pytest.mark.parametrize("path", _every_change_params())
def test_every_change_of_a_plan_is_shown_in_the_text(path: Path) -> None:
    p = golden.plan_case(golden.load_case(path))
    text = render_text(p)
    for c in p.changes:
        row = ROWS[c.action](c)
        if c.request is None and c.action.verb in ("grant", "revoke", "remove"):
            assert row.what in text
            continue
        shown = [
            r
            for view in p.requests
            for r in request_rows(p, view)
            if (r.system, r.what, r.verb) == (row.system, row.what, row.verb)
        ]
        if not shown and c in shared_steps(p):  # a step no request's own steps wait for
            shown = [row]
            assert "Shared steps" in text
        assert shown, f"{c.id} is in no section"


def test_an_expired_package_is_not_shown_as_zero_rows() -> None:
    text = render_text(planned("exports/built_expired"))
    row = next(line for line in lines(text) if " expire " in f" {line} ")
    assert "0 rows" not in row, row


# -- drift -------------------------------------------------------------------------------


def test_drift_names_what_planning_now_would_do_differently() -> None:
    name = "erasures/delete_mask_retain_refresh"
    saved = planned(name)
    observed = golden.load_case(golden.CASES_DIR / name).observed_json
    matches = observed["systems"]["crm"]["matches"]
    matches["DSR-1/orders"]["pending"] = [10, 11]  # the masked order was restored
    del observed["systems"]["insights"]["matches"]["DSR-1/system_logs"]  # logs rotated away
    assert plan_drift(saved, planned(name, observed)) == [
        "- purge insights system_logs",
        "~ mask crm orders: rows 1 -> 2",
    ]
    assert plan_drift(saved, saved) == []


def test_drift_after_an_erasure_completed_drops_every_step() -> None:
    saved = planned("erasures/reingested")
    done = planned("erasures/completed_noop")
    assert plan_drift(saved, done) == [
        "- complete dsr receipt in the audit log",
        "- delete crm customers",
        "- refresh insights after crm",
        "- verify crm customers",
        "- verify insights profiles",
    ]


def test_drift_of_a_saved_plan_read_back_from_its_file_is_empty() -> None:
    p = planned("exports/export_and_erasure_same_subject")
    assert plan_drift(planfile.from_dict(planfile.to_dict(p)), p) == []


# -- no raw identifiers ------------------------------------------------------------------


def _end_to_end(case: dict[str, Any], tmp_path: Path) -> tuple[Plan, list[str]]:
    """An observe case run through the planner: its tables as the CRM, one erasure per
    subject (keyed hashes only), the matches its rows give. Returns the plan and the raw
    values that must never appear in it."""
    systems = {
        "systems": {"crm": {"role": "source", "url": "sqlite:///crm.db", "tables": case["tables"]}}
    }
    files = {"policies/systems.yaml": yaml.safe_dump(systems)}
    for subject in observe_golden.subjects_from(case["subjects"]):
        identities = [{"type": kind, "hash": h} for kind, h in subject.identities]
        request = {
            "id": subject.request_id,
            "type": "erasure",
            "subject": {"kind": "customer", "identities": identities},
            "received": "2026-11-20",
            "requested_by": "dpo@contoso.example",
            "systems": "all",
        }
        files[f"policies/requests/{subject.request_id}.yaml"] = yaml.safe_dump(request)
    matches = observe_golden.run(case)
    observed = Observed({"crm": ObservedSystem("crm", matches=matches)})
    p = plan(golden.desired_from(files, tmp_path), observed, now=NOW)
    raw = observe_golden.raw_identities(case) + [
        v
        for rows in case.get("rows", {}).values()
        for row in rows
        for v in row.values()
        if isinstance(v, str) and len(v.strip()) >= 5
    ]
    return p, sorted({r.strip() for r in raw} | {r for r in raw if r.strip()})


@pytest.mark.parametrize("path", observe_golden.case_paths(), ids=lambda p: p.stem)
def test_no_raw_identifier_reaches_any_rendering(path: Path, tmp_path: Path) -> None:
    p, raw = _end_to_end(observe_golden.load(path), tmp_path)
    assert p.has_changes and raw
    outputs = [render_text(p), render_markdown(p), planfile.to_json(p), summary(p)]
    outputs += [repr(dataclasses.asdict(p))]
    for out in outputs:
        for value in raw:
            assert value not in out, value
        assert "hmac-sha256" not in out  # not even the keyed hashes


# -- the markdown plan on a pull request ------------------------------------------------------


def _many(n: int) -> Plan:
    """A plan of `n` erasures, each with its own steps (built from one golden plan)."""
    base = planned("erasures/delete_mask_retain_refresh")
    (view,) = [v for v in base.requests if v.id == "DSR-1"]
    changes, views = [], []
    for i in range(n):
        rid = f"DSR-{i:04d}"
        for c in base.changes:
            if c.request == "DSR-1":
                changes.append(
                    dataclasses.replace(
                        c,
                        id=c.id.replace("DSR-1", rid),
                        request=rid,
                        depends_on=tuple(d.replace("DSR-1", rid) for d in c.depends_on),
                    )
                )
        views.append(dataclasses.replace(view, id=rid, days_left=i % 40 - 5))
    shared = [c for c in base.changes if c.request is None]
    return dataclasses.replace(base, changes=tuple(shared + changes), requests=tuple(views))


def test_the_markdown_plan_leads_with_its_summary_and_folds_the_details() -> None:
    p = planned("erasures/delete_mask_retain_refresh")
    md = render_markdown(p, "dsr plan · workspace t")
    first = [line for line in md.splitlines() if line][:2]
    assert first == ["### dsr plan · workspace t", f"**{summary(p)}**"]
    assert "| request | kind | state | due | steps |" in md
    assert "| DSR-1 | erasure customer | pending |" in md
    assert md.count("<details>") == md.count("</details>") >= 1


def test_a_thousand_requests_stay_under_the_comment_limit_and_say_so() -> None:
    p = _many(1000)
    md = render_markdown(p)
    assert len(md) < 60_000
    assert md.splitlines()[2] == f"**{summary(p)}**"  # what matters is never cut
    assert "left out to keep this comment under 60,000 characters" in md
    assert "more requests |" in md
    overdue = md.index("OVERDUE")  # the most urgent requests come first in the table
    assert overdue < md.index("days left")
    small = render_markdown(_many(3))
    assert "left out" not in small and "more requests" not in small
