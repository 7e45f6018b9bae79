"""The tools the CI tests run, installed by the tests themselves, and the wheelhouse the CI jobs
install dsr from.

Everything lives in a git-ignored folder of the repository (`.cache/ci-tools/`, or
DSR_CI_TOOLS): gitlab-ci-local from the npm registry, and a venv with zizmor, check-jsonschema
pre-commit and jq from PyPI, each at a pinned version. A stamp names the versions, and a file lock
keeps two test runs from installing at once; a failed install raises `Unavailable` with the
reason (the fixtures skip on it, or fail under DSR_REQUIRE_SERVERS=1).

The wheelhouse holds dsr-reconciler built from this working tree, every dependency, and the
build backend, as wheels. The templates' unchanged `pip install -r requirements-dsr.txt` then
really installs the pinned `dsr-reconciler==<version>` with PIP_NO_INDEX=1 and PIP_FIND_LINKS,
as an organisation's runner would install it from its own index. The dependencies are built
once per set of declared dependencies; the dsr wheel once per content of the files it is
built from.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import reconciler

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("DSR_CI_TOOLS", REPO_ROOT / ".cache" / "ci-tools"))

GITLAB_CI_LOCAL = "gitlab-ci-local@4.60.0"  # the last release that runs on Node.js 20
# jq: the filter language of `gh api --jq`, for the stand-in `gh` (tests/ci/fake_gh.py).
PYTHON_TOOLS = ("zizmor==1.32.0", "check-jsonschema==0.39.0", "pre-commit==4.7.0", "jq==1.13.0")
# What pre-commit's environments build with, offline: hatchling builds dsr from a clone
# (`try-repo`), setuptools the placeholder package of `repo: local` hooks.
BUILD_BACKENDS = ("hatchling>=1.25", "setuptools", "wheel")
# The files the dsr wheel is built from: its content key.
WHEEL_SOURCES = ("pyproject.toml", "README.md", "reconciler", "schemas")
INSTALL_TIMEOUT = 900


class Unavailable(Exception):
    """A tool could not be installed here (no network, no npm, ...)."""


@dataclass(frozen=True, slots=True)
class Tools:
    gitlab_ci_local: Path
    zizmor: Path
    check_jsonschema: Path
    pre_commit: Path
    python: Path  # the tools' venv: runs the stand-in `gh`


@dataclass(frozen=True, slots=True)
class Wheelhouse:
    folder: Path  # every wheel, dsr-reconciler's and its dependencies'
    dsr_wheel: Path

    def pip_env(self) -> dict[str, str]:
        """pip's settings for installing from the wheelhouse alone. PIP_NO_COMPILE: byte
        compiling the wheels is most of an install's time, and changes nothing a job does."""
        return {
            "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": str(self.folder),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PIP_NO_COMPILE": "1",
        }


@contextlib.contextmanager
def cache_lock() -> Iterator[None]:
    try:
        CACHE.mkdir(parents=True, exist_ok=True)
        handle = open(CACHE / ".lock", "w")  # noqa: SIM115 - held open while locked
    except OSError as exc:
        raise Unavailable(f"cannot write the tools' cache {CACHE}: {exc}") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        yield


def _run(argv: list[str], what: str, env: dict[str, str] | None = None) -> None:
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, env=env, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unavailable(f"{what}: {exc}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise Unavailable(f"{what} failed (exit {done.returncode}): {' / '.join(tail)}")


def _key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def install_tools() -> Tools:
    venv = CACHE / "venv"
    npm_prefix = CACHE / "npm"
    tools = Tools(
        gitlab_ci_local=npm_prefix / "bin" / "gitlab-ci-local",
        zizmor=venv / "bin" / "zizmor",
        check_jsonschema=venv / "bin" / "check-jsonschema",
        pre_commit=venv / "bin" / "pre-commit",
        python=venv / "bin" / "python",
    )
    with cache_lock():
        npm_stamp = npm_prefix / f"installed-{_key(GITLAB_CI_LOCAL)}"
        if not npm_stamp.exists():
            npm = shutil.which("npm")
            if npm is None:
                raise Unavailable(f"npm is not installed: it installs {GITLAB_CI_LOCAL}")
            shutil.rmtree(npm_prefix, ignore_errors=True)
            quiet = ["--no-audit", "--no-fund", "--loglevel=error"]
            _run(
                [npm, "install", "--global", "--prefix", str(npm_prefix), *quiet, GITLAB_CI_LOCAL],
                f"npm install {GITLAB_CI_LOCAL}",
            )
            npm_stamp.write_text(GITLAB_CI_LOCAL + "\n")
        venv_stamp = venv / f"installed-{_key(*PYTHON_TOOLS)}"
        if not venv_stamp.exists():
            shutil.rmtree(venv, ignore_errors=True)
            _run([_host_python(), "-m", "venv", str(venv)], "python -m venv")
            _run(
                [str(tools.python), "-m", "pip", "install", "--quiet", *PYTHON_TOOLS],
                f"pip install {' '.join(PYTHON_TOOLS)}",
            )
            venv_stamp.write_text("\n".join(PYTHON_TOOLS) + "\n")
    return tools


def _host_python() -> str:
    """The interpreter behind this venv's Python: a venv made from a venv's Python would
    depend on the first one."""
    return getattr(sys, "_base_executable", None) or sys.executable


def _source_key() -> str:
    digest = hashlib.sha256()
    for name in WHEEL_SOURCES:
        top = REPO_ROOT / name
        paths = [top] if top.is_file() else sorted(top.rglob("*"))
        for path in paths:
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(path.relative_to(REPO_ROOT).as_posix().encode() + b"\0")
                digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _dependencies() -> list[str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"])


def _dependencies_key() -> str:
    return _key(*_dependencies(), *BUILD_BACKENDS, f"py{sys.version_info[:2]}")


def build_wheelhouse() -> Wheelhouse:
    deps = CACHE / f"wheels-deps-{_dependencies_key()}"
    dsr = CACHE / f"wheel-dsr-{_source_key()}"
    # One folder holding both (as links): PIP_FIND_LINKS then names one path, without spaces.
    house = CACHE / f"wheelhouse-{deps.name.rpartition('-')[2]}-{dsr.name.rpartition('-')[2]}"
    pattern = f"dsr_reconciler-{reconciler.__version__}-*.whl"
    pip = [sys.executable, "-m", "pip"]
    with cache_lock():
        if not (deps / ".complete").exists():
            _remove(CACHE.glob("wheels-deps-*"))
            wheel = [*pip, "wheel", "--quiet", "-w", str(deps)]
            _run([*wheel, *_dependencies(), *BUILD_BACKENDS], "pip wheel (dsr's dependencies)")
            (deps / ".complete").write_text("")
        if not (dsr / ".complete").exists():
            _remove(CACHE.glob("wheel-dsr-*"))
            offline = {**os.environ, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(deps)}
            _run(
                [*pip, "wheel", "--quiet", "--no-deps", "-w", str(dsr), str(REPO_ROOT)],
                "pip wheel (dsr-reconciler)",
                env=offline,
            )
            (dsr / ".complete").write_text("")
        if not (house / ".complete").exists():
            _remove(CACHE.glob("wheelhouse-*"))
            house.mkdir()
            for wheel in [*deps.glob("*.whl"), *dsr.glob("*.whl")]:
                (house / wheel.name).symlink_to(wheel)
            (house / ".complete").write_text("")
    wheels = list(house.glob(pattern))
    if len(wheels) != 1:
        raise AssertionError(f"{house}: expected one {pattern}: {wheels}")
    return Wheelhouse(house, wheels[0])


def _remove(folders: Iterator[Path]) -> None:
    for folder in folders:
        shutil.rmtree(folder)
