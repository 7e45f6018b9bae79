"""`dsr init`: which files it writes for each `--ci` choice, what is in them (the state store
from the environment, this dsr's version pinned), that it never overwrites, and that a brand-new
workspace validates.

The CI files themselves are proven by running them: tests/ci/.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from reconciler import __version__
from reconciler.cli import cli
from reconciler.commands.init import BASE_FILES, CI_CHOICES, GITHUB_FILES, GITLAB_FILES
from reconciler.desired.load import load_workspace

DSR = Path(sys.executable).parent / "dsr"


def init(*args: str) -> Result:
    return CliRunner().invoke(cli, ["init", *args], catch_exceptions=False)


def written(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("ci", sorted(CI_CHOICES))
def test_files_for_each_ci_choice(tmp_path: Path, ci: str) -> None:
    result = init(str(tmp_path / "ws"), "--ci", ci)
    assert result.exit_code == 0, result.output
    assert written(tmp_path / "ws") == {*BASE_FILES, *CI_CHOICES[ci]}
    for rel in (*BASE_FILES, *CI_CHOICES[ci]):
        assert f"created {tmp_path / 'ws' / rel}" in result.output


def test_both_is_the_default(tmp_path: Path) -> None:
    assert init(str(tmp_path)).exit_code == 0
    assert written(tmp_path) >= {*GITHUB_FILES, *GITLAB_FILES}


def test_the_state_store_is_named_by_the_environment(tmp_path: Path) -> None:
    init(str(tmp_path / "contoso"))
    text = (tmp_path / "contoso" / "dsr.yaml").read_text()
    settings = yaml.safe_load(text)
    assert settings["state"] == {"url": "env:DSR_STATE_URL"}
    assert settings["workspace"] == "contoso"
    # The local file stays possible, for a laptop or a demo only, and the comment says so.
    assert "For a laptop or a demo only, a local SQLite file instead: state: {path: " in text
    desired = load_workspace(tmp_path / "contoso")
    assert desired.settings.state_url == "env:DSR_STATE_URL"
    assert desired.settings.identity_key == "env:DSR_IDENTITY_KEY"
    assert desired.settings.development_key is None  # real workspaces get no published key
    ignore = (tmp_path / "contoso" / "state" / ".gitignore").read_text().splitlines()
    assert [line for line in ignore if not line.startswith("#")] == ["*", "!.gitignore"]


def test_this_version_of_dsr_reconciler_is_pinned(tmp_path: Path) -> None:
    init(str(tmp_path))
    requirements = (tmp_path / "requirements-dsr.txt").read_text()
    pins = [line for line in requirements.splitlines() if line and not line.startswith("#")]
    assert pins == [f"dsr-reconciler=={__version__}"]
    hooks = yaml.safe_load((tmp_path / ".pre-commit-config.yaml").read_text())["repos"][0]
    assert {h["id"]: h["additional_dependencies"] for h in hooks["hooks"]} == {
        "dsr-validate": [f"dsr-reconciler=={__version__}"],
        "dsr-no-raw-identifiers": [f"dsr-reconciler=={__version__}"],
    }
    for path in tmp_path.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "@DSR_VERSION@" not in text and "@WORKSPACE_NAME@" not in text, path
            # `dsr` on the public index is an unrelated package.
            assert not re.search(r"pip install (-U )?dsr(\s|$)", text), path


def test_a_name_yaml_would_misread_is_quoted(tmp_path: Path) -> None:
    root = tmp_path / "- privacy: team #1"
    assert init(str(root)).exit_code == 0
    assert load_workspace(root).settings.workspace == "- privacy: team #1"


def test_a_brand_new_workspace_validates(tmp_path: Path) -> None:
    """`dsr init DIR && cd DIR && dsr validate`, as a person types it, with no secret and no
    system URL set: the CRM is not checked against a database, and says so."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_URL") and k != "CI"}
    env.pop("DSR_IDENTITY_KEY", None)
    env["PATH"] = f"{DSR.parent}:{env['PATH']}"
    done = subprocess.run(
        ["sh", "-c", 'dsr init "$1" && cd "$1" && dsr validate', "sh", str(tmp_path / "ws")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"ws: valid \(1 systems, 0 users, 0 requests\)", done.stdout)
    assert "warning: crm: not checked against its database: CRM_URL is not set" in done.stderr
    assert "Next:" in done.stdout


def test_an_existing_workspace_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "dsr.yaml").write_text("workspace: mine\n")
    result = init(str(tmp_path))
    assert result.exit_code == 1
    assert "dsr.yaml already exists; dsr init never overwrites a workspace" in result.output
    assert written(tmp_path) == {"dsr.yaml"}
    assert (tmp_path / "dsr.yaml").read_text() == "workspace: mine\n"


def test_an_existing_file_stops_init_before_anything_is_written(tmp_path: Path) -> None:
    (tmp_path / ".gitlab-ci.yml").write_text("stages: [build]\n")
    (tmp_path / "CODEOWNERS").write_text("* @me\n")
    result = init(str(tmp_path))
    assert result.exit_code == 1
    assert "would overwrite CODEOWNERS, .gitlab-ci.yml; nothing was written" in result.output
    assert written(tmp_path) == {".gitlab-ci.yml", "CODEOWNERS"}
    assert (tmp_path / "CODEOWNERS").read_text() == "* @me\n"


def test_a_ci_choice_leaves_the_other_ci_alone(tmp_path: Path) -> None:
    (tmp_path / ".gitlab-ci.yml").write_text("stages: [build]\n")
    result = init(str(tmp_path), "--ci", "github")
    assert result.exit_code == 0, result.output
    assert (tmp_path / ".gitlab-ci.yml").read_text() == "stages: [build]\n"
    assert (tmp_path / ".github/workflows/dsr-plan.yml").exists()


def test_an_unknown_ci_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["init", str(tmp_path), "--ci", "jenkins"])
    assert result.exit_code == 1  # usage errors exit 1: 2 means "changes pending"
    assert "'jenkins' is not one of 'both', 'github', 'gitlab', 'none'" in result.output
    assert written(tmp_path) == set()


def test_every_template_is_written_by_some_choice() -> None:
    root = Path(__file__).resolve().parents[2] / "reconciler" / "templates" / "workspace"
    templates = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    assert templates == {*BASE_FILES, *GITHUB_FILES, *GITLAB_FILES}
