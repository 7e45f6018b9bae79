"""Load a workspace's policy files into the frozen `Desired` model, or report all that is wrong.

The edge between hand-written YAML and the pure core, in four steps with a module each: parse
YAML keeping lines (`yamlfile.py`), validate against the JSON Schemas (`diagnostics.py`),
check cross-references (`checks.py`), and only then build the model (`build.py`). Every
problem in every file comes back at once as `ValidationFailed([Diagnostic(file, line, field,
message), ...])`; a partial `Desired` is never returned. It must not resolve `env:`
references, connect to systems, or print.

Dates: YAML turns `2026-11-20` into a `datetime.date`, and `Document.data` keeps it so. JSON
Schema knows no dates, so validation, the digest and model building all use `Document.plain`,
the same data with dates as ISO strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from reconciler.desired.build import (
    build_access,
    build_request,
    build_settings,
    build_systems,
)
from reconciler.desired.checks import (
    check_access,
    check_permissions,
    check_request,
    check_settings,
    check_systems,
)
from reconciler.desired.diagnostics import validate
from reconciler.desired.files import ACCESS_FILE, REQUESTS_DIR, SETTINGS_FILE, SYSTEMS_FILE
from reconciler.desired.model import Desired, Settings, digest_of
from reconciler.desired.yamlfile import Document, parse_yaml, read_document
from reconciler.errors import Diagnostic, DsrError, ValidationFailed


def find_workspace(start: Path) -> Path:
    """The nearest directory holding a dsr.yaml: `start` itself or one of its parents."""
    start = start.resolve()
    for directory in (start, *start.parents):
        if (directory / SETTINGS_FILE).is_file():
            return directory
    raise DsrError(
        f"no dsr.yaml found in {start} or any parent; run dsr in a workspace or pass --workspace"
    )


def load_workspace(root: Path, *, pending: Mapping[str, str] | None = None) -> Desired:
    """The desired state of the workspace at `root`; `ValidationFailed` with every problem.

    `pending` maps workspace-relative paths to text that is read in place of the file on disk,
    or as a file that is not written yet: `dsr new` checks a request this way before writing it.
    """
    pending = pending or {}
    problems: list[Diagnostic] = []
    settings = _read_valid(root, SETTINGS_FILE, "dsr", problems, pending)
    systems = _read_valid(root, SYSTEMS_FILE, "systems", problems, pending)
    access = None
    if ACCESS_FILE in pending or (root / ACCESS_FILE).exists():
        access = _read_valid(root, ACCESS_FILE, "access", problems, pending)
    files, misnamed = _request_files(root, pending)
    problems += misnamed
    requests = [
        doc for file in files if (doc := _read_valid(root, file, "request", problems, pending))
    ]
    # Cross-references only between files that matched their schema: their shape is known.
    if settings:
        problems += check_settings(settings, root)
    if systems:
        problems += check_systems(systems)
    if access:
        problems += check_access(access)
    if systems and access:
        problems += check_permissions(systems, access)
    built_settings = build_settings(settings.plain) if settings else None
    system_names = set(systems.plain["systems"]) if systems else None
    for doc in requests:
        problems += check_request(doc, built_settings, system_names)
    if problems or built_settings is None or settings is None or systems is None:
        raise ValidationFailed(list(dict.fromkeys(problems)))
    access_plain = access.plain if access else None
    # Request files are keyed by their paths beside the others: a workspace without requests
    # keeps the digest it had before requests existed.
    files_digested = {SETTINGS_FILE: settings.plain, SYSTEMS_FILE: systems.plain}
    files_digested[ACCESS_FILE] = access_plain
    files_digested.update((doc.file, doc.plain) for doc in requests)
    return Desired(
        settings=built_settings,
        systems=build_systems(systems.plain["systems"], built_settings.timeouts),
        access=build_access(access_plain) if access_plain is not None else None,
        digest=digest_of(files_digested),
        requests={
            req.id: req
            for req in (build_request(doc, built_settings.deadline_days) for doc in requests)
        },
    )


def load_settings(root: Path) -> Settings:
    """Only dsr.yaml, validated: for commands that need the settings before the whole workspace
    (`dsr new` hashes with the key it names). `ValidationFailed` with its problems."""
    problems: list[Diagnostic] = []
    settings = _read_valid(root, SETTINGS_FILE, "dsr", problems, {})
    if problems or settings is None:
        raise ValidationFailed(list(dict.fromkeys(problems)))
    return build_settings(settings.plain)


def _request_files(root: Path, pending: Mapping[str, str]) -> tuple[list[str], list[Diagnostic]]:
    """The request files to load, sorted, and a problem for each that would be skipped silently.

    Hidden files (editors' and `dsr new`'s temp files) are not requests.
    """
    folder = root / REQUESTS_DIR
    try:
        names = {p.name for p in folder.iterdir() if p.is_file()} if folder.is_dir() else set()
    except OSError as exc:
        return [], [Diagnostic(REQUESTS_DIR, None, "", f"cannot read: {exc.strerror}")]
    names |= {
        file.removeprefix(REQUESTS_DIR + "/")
        for file in pending
        if file.startswith(REQUESTS_DIR + "/") and "/" not in file[len(REQUESTS_DIR) + 1 :]
    }
    names = {name for name in names if not name.startswith(".")}
    misnamed = [
        Diagnostic(
            f"{REQUESTS_DIR}/{name}",
            None,
            "",
            f"not loaded: request files end in .yaml; rename it to {name[:-4]}.yaml",
        )
        for name in sorted(names)
        if name.endswith(".yml")
    ]
    return sorted(f"{REQUESTS_DIR}/{n}" for n in names if n.endswith(".yaml")), misnamed


def _read_valid(
    root: Path, file: str, schema: str, problems: list[Diagnostic], pending: Mapping[str, str]
) -> Document | None:
    """`root/file` (or its `pending` text) if it parses and matches its schema, else None;
    problems go to `problems`."""
    if file in pending:
        doc, found = parse_yaml(pending[file], file)
    else:
        doc, found = read_document(root, file)
    problems += found
    if doc is None:
        return None
    invalid = validate(doc, schema)
    problems += invalid
    return None if invalid else doc
