"""Identity key rotation: requests hashed with the old key keep matching until they are
done; new requests use the new key; an old key that is not listed any more is refused for
the requests that still carry it."""

from __future__ import annotations

from pathlib import Path

import pytest

from demo.contoso import pick_subject

from .cli import dsr

OLD = "an-old-identity-key-of-at-least-32-bytes"
NEW = "a-new-identity-key-made-with-dsr-keygen-0123"


def settings(ws: Path, identity: str) -> None:
    path = ws / "dsr.yaml"
    lines = [line for line in path.read_text().splitlines() if not line.startswith("identity:")]
    path.write_text("\n".join([*lines, identity]) + "\n")


def test_a_request_filed_before_a_rotation_keeps_matching(
    demo_workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DSR_IDENTITY_KEY", OLD)
    settings(demo_workspace, "identity: {key: env:DSR_IDENTITY_KEY, key_id: k1}")
    email = pick_subject(demo_workspace, "crm-only")
    filed = dsr(
        demo_workspace,
        "new",
        "erasure",
        "--email",
        "-",
        "--requested-by",
        "dpo@x.example",
        "--id",
        "DSR-K-1",
        input=email,
    )
    assert filed.exit_code == 0, filed.output
    assert "hmac-sha256:k1:" in (demo_workspace / "policies/requests/DSR-K-1.yaml").read_text()

    # Rotate: a new key and key id; the old one listed as previous.
    monkeypatch.setenv("DSR_IDENTITY_KEY", NEW)
    monkeypatch.setenv("DSR_IDENTITY_KEY_K1", OLD)
    settings(
        demo_workspace,
        "identity: {key: env:DSR_IDENTITY_KEY, key_id: k2, "
        "previous: [{key: env:DSR_IDENTITY_KEY_K1, key_id: k1}]}",
    )
    plan = dsr(demo_workspace, "plan")
    assert plan.exit_code == 0, plan.output
    assert (
        "crm  customers  delete  1 row" in " ".join(plan.output.split("  ")).replace("   ", "  ")
        or "delete  1 row" in plan.output
    )
    other = pick_subject(demo_workspace, "late")
    filed = dsr(
        demo_workspace,
        "new",
        "erasure",
        "--email",
        "-",
        "--requested-by",
        "dpo@x.example",
        "--id",
        "DSR-K-2",
        input=other,
    )
    assert filed.exit_code == 0, filed.output
    assert "hmac-sha256:k2:" in (demo_workspace / "policies/requests/DSR-K-2.yaml").read_text()
    assert dsr(demo_workspace, "apply", "--auto-approve").exit_code == 0
    assert dsr(demo_workspace, "plan", "--detailed-exitcode").exit_code == 0

    # Retired too early: the request that still carries the old key id is refused, saying so.
    settings(demo_workspace, "identity: {key: env:DSR_IDENTITY_KEY, key_id: k2}")
    refused = dsr(demo_workspace, "validate", "--offline")
    assert refused.exit_code == 1
    assert "hashed with key id 'k1'" in refused.output
    assert "identity.previous does not list it" in refused.output
