"""The dsr-reconciler wheel the CI jobs install: it ships the templates `dsr init` writes
(dotfiles included) and the pre-commit hook with its console script."""

from __future__ import annotations

import zipfile

import reconciler

from .tools import REPO_ROOT, Wheelhouse


def test_the_wheel_ships_the_templates_and_the_hook(wheelhouse: Wheelhouse) -> None:
    with zipfile.ZipFile(wheelhouse.dsr_wheel) as wheel:
        names = set(wheel.namelist())
        entry_points = wheel.read(
            f"dsr_reconciler-{reconciler.__version__}.dist-info/entry_points.txt"
        ).decode()
    package = REPO_ROOT / "reconciler"
    templates = {
        f"reconciler/{path.relative_to(package).as_posix()}"
        for path in (package / "templates").rglob("*")
        if path.is_file()
    }
    assert ".github/workflows/dsr-plan.yml" in "\n".join(templates)
    assert templates <= names, sorted(templates - names)
    assert "reconciler/hooks/no_raw_identifiers.py" in names
    assert "dsr-no-raw-identifiers = reconciler.hooks.no_raw_identifiers:main" in entry_points
    assert "dsr = reconciler.cli:main" in entry_points
