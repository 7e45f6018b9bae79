"""`dsr init [DIR] [--ci github|gitlab|both|none]`: scaffold a workspace from the templates
in `reconciler/templates/workspace/`: settings (the state store named by `DSR_STATE_URL`), a
data map to fill in, the requests folder, a git-ignored state folder, the dsr pin for CI
(`requirements-dsr.txt`, this dsr's own version), CODEOWNERS, pre-commit hooks, and the CI
files chosen (plan on pull or merge requests, apply after merges and on a schedule).

It never overwrites: when any file it would write exists, it writes nothing. What it wrote
must validate; it never connects to a system or reads a secret.
"""

from __future__ import annotations

import json
import re
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

import click

from reconciler import __version__
from reconciler.desired.files import SETTINGS_FILE
from reconciler.desired.load import load_workspace
from reconciler.errors import DsrError

# Files every workspace gets, then the CI files of each choice (paths in the template tree
# and in the workspace alike).
BASE_FILES = (
    SETTINGS_FILE,
    "policies/systems.yaml",
    "policies/requests/.gitkeep",
    "state/.gitignore",
    "requirements-dsr.txt",
    "CODEOWNERS",
    ".pre-commit-config.yaml",
)
GITHUB_FILES = (
    ".github/workflows/dsr-plan.yml",
    ".github/workflows/dsr-apply.yml",
    ".github/workflows/dsr-status.yml",
)
GITLAB_FILES = (".gitlab-ci.yml",)
CI_CHOICES = {
    "github": GITHUB_FILES,
    "gitlab": GITLAB_FILES,
    "both": GITHUB_FILES + GITLAB_FILES,
    "none": (),
}
# Placeholders in the templates, autoconf style: nothing in YAML or in GitHub's `${{ }}` and
# GitLab's `$VAR` syntax looks like them.
VERSION_PLACEHOLDER = "@DSR_VERSION@"
NAME_PLACEHOLDER = "@WORKSPACE_NAME@"
PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def template_root() -> Traversable:
    return files("reconciler").joinpath("templates", "workspace")


def render(relpath: str, name: str) -> str:
    """The text `dsr init` writes at `relpath` of a workspace called `name`."""
    node = template_root()
    for part in relpath.split("/"):
        node = node.joinpath(part)
    text = node.read_text(encoding="utf-8")
    # A name YAML would misread (a colon, a quote, a leading dash) is written quoted; JSON's
    # string syntax is YAML's double-quoted style.
    quoted = name if PLAIN_NAME.fullmatch(name) else json.dumps(name, ensure_ascii=False)
    return text.replace(VERSION_PLACEHOLDER, __version__).replace(NAME_PLACEHOLDER, quoted)


@click.command("init")
@click.argument(
    "directory", required=False, default=".", type=click.Path(file_okay=False, path_type=Path)
)
@click.option(
    "--ci",
    type=click.Choice(sorted(CI_CHOICES)),
    default="both",
    show_default=True,
    help="CI files to write: GitHub Actions workflows, a GitLab CI pipeline, both or none.",
)
def command(directory: Path, ci: str) -> None:
    """Scaffold a workspace in DIRECTORY (default: here), with CI templates."""
    root = directory.resolve()
    if (root / SETTINGS_FILE).exists():
        raise DsrError(
            f"{root / SETTINGS_FILE} already exists; dsr init never overwrites a workspace"
        )
    wanted = BASE_FILES + CI_CHOICES[ci]
    existing = [rel for rel in wanted if (root / rel).exists()]
    if existing:
        raise DsrError(
            f"{root}: would overwrite {', '.join(existing)}; nothing was written "
            "(move them aside, or choose other files with --ci)"
        )
    texts = {rel: render(rel, root.name or "workspace") for rel in wanted}
    for rel, text in texts.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        click.echo(f"created {_shown(path)}")
    load_workspace(root)  # what init writes must validate
    click.echo(_next_steps(ci))


def _shown(path: Path) -> Path:
    cwd = Path.cwd()
    return path.relative_to(cwd) if path.is_relative_to(cwd) else path


def _next_steps(ci: str) -> str:
    lines = [
        "Next:",
        "  1. map your systems in policies/systems.yaml (each url: env:NAME), then: dsr validate",
        "  2. create the shared PostgreSQL state store and a read-only role for plan jobs "
        "(dsr's README, CI section)",
    ]
    if ci in ("github", "both"):
        lines.append(
            "  3. GitHub: environments dsr-read and dsr-apply with the secrets listed at the "
            "top of each .github/workflows/dsr-*.yml"
        )
    if ci in ("gitlab", "both"):
        lines.append(
            f"  {3 if ci == 'gitlab' else 4}. GitLab: the CI/CD variables and pipeline "
            "schedules listed at the top of .gitlab-ci.yml"
        )
    lines.append("  then commit the workspace, and run `pre-commit install` in each clone")
    return "\n".join(lines)
