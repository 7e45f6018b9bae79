"""The pre-commit hooks, run by pre-commit itself on a workspace repository made by `dsr init`:

- the hooks this repository offers (`.pre-commit-hooks.yaml`), with `pre-commit try-repo` on a
  clone of the committed HEAD (try-repo installs the hook repository into a fresh environment
  each time: pip builds dsr-reconciler from the clone);
- the hooks `dsr init` writes into `.pre-commit-config.yaml` (`repo: local`, installing the
  pinned dsr-reconciler), with `pre-commit run`.

pip installs from the wheelhouse only (PIP_NO_INDEX), so the pin is really resolved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from reconciler.cli import cli

from .conftest import IDENTITY_KEY, REQUESTER, git, host_path, run
from .tools import REPO_ROOT, Tools, Wheelhouse

RAW = "bruno.lima@example.org"
CLEAN, BAD = "policies/requests/DSR-PC-0001.yaml", "policies/requests/DSR-PC-0002.yaml"


@pytest.fixture(scope="module")
def hook_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This repository's committed HEAD: what a workspace's `rev:` would name."""
    clone = tmp_path_factory.mktemp("dsr") / "dsr"
    run(["git", "clone", "-q", str(REPO_ROOT), str(clone)])
    return clone


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A workspace from `dsr init`, holding a request `dsr new` wrote and one with a raw
    address pasted into its legal hold, both staged."""
    ws = tmp_path / "ws"
    assert CliRunner().invoke(cli, ["init", str(ws), "--ci", "none"]).exit_code == 0
    git(ws, "init", "-q", "-b", "main")
    new = ["new", "erasure", "--email", "-", "--requested-by", REQUESTER, "--id", "DSR-PC-0001"]
    result = CliRunner().invoke(
        cli,
        ["-C", str(ws), *new],
        input="ana@example.com\n",
        env={"DSR_IDENTITY_KEY": IDENTITY_KEY},
    )
    assert result.exit_code == 0, result.output
    clean = (ws / CLEAN).read_text()
    assert "ana@example.com" not in clean
    bad = clean.replace("DSR-PC-0001", "DSR-PC-0002") + f"legal_hold: 'counsel is {RAW}'\n"
    (ws / BAD).write_text(bad)
    git(ws, "add", "-A")
    return ws


@dataclass
class PreCommit:
    tools: Tools
    wheelhouse: Wheelhouse
    home: Path  # PRE_COMMIT_HOME: the hook environments, shared by this module's tests

    def __call__(self, ws: Path, *args: str) -> tuple[int, str]:
        env = {
            "PATH": f"{self.tools.pre_commit.parent}:{host_path(ws.parent)}",
            "HOME": str(ws.parent),
            "PRE_COMMIT_HOME": str(self.home),
            "LANG": "C.UTF-8",
            **self.wheelhouse.pip_env(),
        }
        done = run([str(self.tools.pre_commit), *args], cwd=ws, env=env, check=False, timeout=600)
        return done.returncode, done.stdout + done.stderr


@pytest.fixture(scope="module")
def pre_commit(
    ci_tools: Tools, wheelhouse: Wheelhouse, tmp_path_factory: pytest.TempPathFactory
) -> PreCommit:
    return PreCommit(ci_tools, wheelhouse, tmp_path_factory.mktemp("pre-commit-home"))


def test_try_repo_a_clean_request_passes_both_hooks(
    pre_commit: PreCommit, hook_repo: Path, workspace: Path
) -> None:
    code, out = pre_commit(workspace, "try-repo", str(hook_repo), "--files", "dsr.yaml", CLEAN)
    assert code == 0, out
    assert re.search(r"dsr validate \(files only\)\.+Passed", out), out
    assert re.search(r"no raw e-mail addresses or phone numbers in requests\.+Passed", out), out


def test_try_repo_a_raw_address_fails_without_echoing_it(
    pre_commit: PreCommit, hook_repo: Path, workspace: Path
) -> None:
    hook = "dsr-no-raw-identifiers"
    code, out = pre_commit(workspace, "try-repo", str(hook_repo), hook, "--files", CLEAN, BAD)
    assert code == 1, out
    assert "- hook id: dsr-no-raw-identifiers" in out
    assert f"{BAD}:14: raw e-mail address in field legal_hold" in out, out
    assert f"{CLEAN}:" not in out
    assert RAW not in out and "bruno" not in out


def test_the_hooks_dsr_init_configures(pre_commit: PreCommit, workspace: Path) -> None:
    """`pre-commit run` with the workspace's own config: dsr-reconciler from the pin."""
    code, out = pre_commit(workspace, "run", "--files", "dsr.yaml", CLEAN)
    assert code == 0, out
    assert re.search(r"dsr validate \(files only\)\.+Passed", out), out
    code, out = pre_commit(workspace, "run", "--all-files")
    assert code == 1, out
    assert f"{BAD}:14: raw e-mail address in field legal_hold" in out, out
    assert RAW not in out


def test_the_hooks_manifest() -> None:
    hooks = {h["id"]: h for h in yaml.safe_load((REPO_ROOT / ".pre-commit-hooks.yaml").read_text())}
    assert set(hooks) == {"dsr-validate", "dsr-no-raw-identifiers"}
    assert hooks["dsr-validate"]["entry"] == "dsr validate --offline"
    assert hooks["dsr-validate"]["pass_filenames"] is False
    assert hooks["dsr-no-raw-identifiers"]["entry"] == "dsr-no-raw-identifiers"
    assert all(h["language"] == "python" for h in hooks.values())
    # the console script the hook's entry names
    assert (
        'dsr-no-raw-identifiers = "reconciler.hooks.no_raw_identifiers:main"'
        in (REPO_ROOT / "pyproject.toml").read_text()
    )


def test_codeowners_gives_requests_to_the_privacy_team(tmp_path: Path) -> None:
    assert CliRunner().invoke(cli, ["init", str(tmp_path), "--ci", "none"]).exit_code == 0
    rules = []
    for line in (tmp_path / "CODEOWNERS").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            pattern, *owners = line.split()
            assert owners and all(re.fullmatch(r"@[\w.-]+(/[\w.-]+)?", o) for o in owners), line
            rules.append((pattern, owners))
    # The last matching rule wins: nothing after it may take policies/requests/ away.
    matching = [o for p, o in rules if p in ("*", "/policies/", "/policies/requests/")]
    assert matching[-1] == ["@contoso/privacy-team"]
