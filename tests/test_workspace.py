"""The workspace's wiring: the one `env:` resolver, system URLs, the identity key."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.desired.model import Settings, System, SystemRole
from reconciler.errors import DsrError
from reconciler.privacy.withhold import Sensitive
from reconciler.workspace import identity_key, resolve_env, system_url


def test_system_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rel = System("a", SystemRole.SOURCE, "sqlite:///state/demo/a.db")
    assert system_url(rel, tmp_path) == f"sqlite:///{tmp_path}/state/demo/a.db"
    absolute = System("a", SystemRole.SOURCE, "sqlite:////srv/a.db")
    assert system_url(absolute, tmp_path) == "sqlite:////srv/a.db"
    env = System("crm", SystemRole.SOURCE, "env:CRM_URL")
    monkeypatch.setenv("CRM_URL", "postgresql+psycopg://u:secret@h/db")
    assert system_url(env, tmp_path) == "postgresql+psycopg://u:secret@h/db"
    monkeypatch.delenv("CRM_URL")
    with pytest.raises(DsrError, match="CRM_URL is not set"):
        system_url(env, tmp_path)


def test_resolve_env_reads_only_env_references() -> None:
    assert resolve_env("sqlite:///a.db", "x", environ={}) == "sqlite:///a.db"
    assert resolve_env("env:A", "x", environ={"A": "value"}) == "value"
    assert resolve_env("env:A", "x", environ={"A": ""}) is None
    assert resolve_env("env:A", "x", environ={}) is None
    with pytest.raises(DsrError, match="must name an environment variable"):
        resolve_env("env:", "dsr.yaml state.url", environ={})


def test_identity_key_from_the_environment_or_the_development_key() -> None:
    settings = Settings("w", identity_key="env:K", identity_key_id="k9")
    key = identity_key(settings, environ={"K": "s3cret-s3cret-s3cret-s3cret-s3cret"})
    assert (key.key_id, key.secret, key.development) == (
        "k9",
        b"s3cret-s3cret-s3cret-s3cret-s3cret",
        False,
    )
    with pytest.raises(DsrError, match="export K"):
        identity_key(settings, environ={})
    dev = Settings("w", identity_key="env:K", development_key=Sensitive("demo"))
    assert identity_key(dev, environ={}).development


def test_a_key_shorter_than_32_bytes_is_refused_but_the_demo_key_is_not() -> None:
    """`DSR_IDENTITY_KEY=x` was accepted, though the hashes it makes are in git for good."""
    settings = Settings("w", identity_key="env:K")
    with pytest.raises(DsrError, match="the key in K is 1 bytes; a key must be at least 32"):
        identity_key(settings, environ={"K": "x"})
    assert len(identity_key(settings, environ={"K": "k" * 32}).secret) == 32
    demo = Settings("w", identity_key="env:K", development_key=Sensitive("short demo key"))
    assert identity_key(demo, environ={}).development


def test_keygen_prints_a_new_strong_key_each_time() -> None:
    from click.testing import CliRunner

    from reconciler.cli import cli

    keys = {CliRunner().invoke(cli, ["keygen"]).stdout.strip() for _ in range(3)}
    assert len(keys) == 3
    assert all(len(k.encode()) >= 32 and k.isascii() for k in keys)
