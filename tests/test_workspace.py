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
    key = identity_key(settings, environ={"K": "s3cret"})
    assert (key.key_id, key.secret, key.development) == ("k9", b"s3cret", False)
    with pytest.raises(DsrError, match="export K"):
        identity_key(settings, environ={})
    dev = Settings("w", identity_key="env:K", development_key=Sensitive("demo"))
    assert identity_key(dev, environ={}).development
