"""`dsr-no-raw-identifiers`, the pre-commit hook's check, called directly: what counts as a raw
e-mail address or phone number, where one is allowed (requested_by, by), and that a finding
names file, line and field but never the value. tests/ci/test_precommit.py runs it through
pre-commit itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.hooks import no_raw_identifiers as hook

CLEAN = """\
# Written by `dsr new` on 2026-12-02. The subject's identities are stored only as
# keyed hashes (HMAC-SHA256, key id k1), never as raw values. Changes such as
# extension, legal_hold or cancelled are made by a reviewed edit of this file.
id: DSR-20261202-7KQ2
type: export
subject:
  kind: customer
  identities:
    - type: phone
      hash: hmac-sha256:k1:7dfb789d08efe84b51a84acf70703ed934d516f4b677d2900c9ef09586a2b0c3
    - type: email
      hash: hmac-sha256:k1:1234567890123456789012345678901234567890123456789012345678901234
received: 2026-12-02
requested_by: dpo@contoso.example
systems: [crm, shop]
extension: {due: 2027-02-02, reason: "case 2026/4471, 1234567 records", subject_told: 2026-12-20}
approvals:
  - {by: erin@contoso.example, at: 2026-12-02}
  - by: "ana.souza+admin@contoso.example"
    at: 2026-12-03
"""


def findings(text: str) -> list[tuple[int, str, str]]:
    return [(f.line, f.kind, f.where) for f in hook.check_text(text)]


def test_a_request_written_by_dsr_new_is_clean() -> None:
    assert findings(CLEAN) == []


@pytest.mark.parametrize(
    "phone",
    [
        "+44 20 7946 0958",
        "(555) 123-4567",
        "555.123.4567",
        "5551234567",
        "0049-30-1234567",
        "+5512392355550",
    ],
)
def test_phone_numbers_outside_requested_by_and_by(phone: str) -> None:
    text = CLEAN + f'cancelled: "the subject called from {phone}"\n'
    assert findings(text) == [(21, "phone number", "field cancelled")]


@pytest.mark.parametrize(
    "not_phone",
    [
        "2026-12-02",
        "DSR-20261129-7KQ2",
        "v1.2.3",
        "1234567",
        "case 2026/4471",
        "hmac-sha256:k1:0123456789abcdef",
    ],
)
def test_dates_ids_hashes_and_short_numbers_are_not_phones(not_phone: str) -> None:
    assert findings(CLEAN + f'cancelled: "{not_phone}"\n') == []


def test_e_mail_in_a_free_text_field_a_comment_and_a_key() -> None:
    text = (
        CLEAN.replace("type: export\n", "type: export  # from ana@example.com\n")
        + "legal_hold: 'counsel: Ana <ana@example.com>'\nana@example.com: x\n"
    )
    assert findings(text) == [
        (5, "e-mail address", "a comment (outside any value)"),
        (21, "e-mail address", "field legal_hold"),
        (22, "e-mail address", "a key"),
    ]


def test_nested_field_names_in_messages() -> None:
    text = CLEAN.replace('reason: "case 2026/4471, 1234567 records"', 'reason: "ana@example.com"')
    assert findings(text) == [(16, "e-mail address", "field extension.reason")]


def test_requested_by_must_be_the_key_not_text_in_another_field() -> None:
    text = CLEAN + 'legal_hold: "requested_by: ana@example.com"\n'
    assert findings(text) == [(21, "e-mail address", "field legal_hold")]


def test_not_yaml_is_still_scanned() -> None:
    assert findings("id: [unclosed\nrequested_by: ana@example.com\n") == [
        (2, "e-mail address", "a comment (outside any value)")
    ]


def test_main_prints_file_and_line_but_never_the_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "DSR-1.yaml"
    good.write_text(CLEAN)
    bad = tmp_path / "DSR-2.yaml"
    bad.write_text(CLEAN + "legal_hold: 'ask ana.souza@example.com or +55 12 3923 5555'\n")
    assert hook.main([str(good)]) == 0
    assert capsys.readouterr().out == ""
    assert hook.main([str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert out.splitlines() == [
        f"{bad}:21: raw e-mail address in field legal_hold; only requested_by and by may hold one",
        f"{bad}:21: raw phone number in field legal_hold; only requested_by and by may hold one",
        "1 request file with raw identifiers: name the subject by keyed hash only "
        "(`dsr new ... --email -` reads it from stdin)",
    ]
    assert "ana.souza" not in out and "3923" not in out


def test_unreadable_file_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    binary = tmp_path / "DSR-3.yaml"
    binary.write_bytes(b"\xff\xfe\x00bad")
    assert hook.main([str(binary)]) == 1
    assert "cannot read as UTF-8 text" in capsys.readouterr().out
