"""Load a workspace's policy files into the frozen `Desired` model, or report all that is wrong.

The edge between hand-written YAML and the pure core: it reads dsr.yaml and policies/, parses
YAML keeping the line of every key and item, validates against the JSON Schemas in `schemas/`,
checks cross-references, and only then builds model types. Every problem in every file comes
back at once as `ValidationFailed([Diagnostic(file, line, field, message), ...])`; a partial
`Desired` is never returned. It must not resolve `env:` references, connect to systems, or
print.

Request files (`policies/requests/<id>.yaml`) are loaded too, each checked against the
settings (key id, deadline rule) and the data map (system names); their due dates come from
`reconciler.desired.deadlines`.

Dates: YAML turns `2026-11-20` into a `datetime.date`, and `Document.data` keeps it so (request
files need dates). JSON Schema knows no dates, so validation, the digest and model building all
use `Document.plain`, the same data with dates as ISO strings.
"""

from __future__ import annotations

import difflib
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.reader import ReaderError

from reconciler.apply.package import outbox_problem
from reconciler.desired import deadlines
from reconciler.desired.model import (
    Access,
    Approval,
    Desired,
    DesiredUser,
    ErasureStrategy,
    Extension,
    IdentityHash,
    MaskStrategy,
    PermissionsMap,
    Refresh,
    Request,
    RequestType,
    Sensitive,
    Settings,
    SubjectKind,
    SubjectLink,
    System,
    SystemRole,
    Table,
    TableKind,
    digest_of,
)
from reconciler.desired.schemas import load_schema
from reconciler.errors import Diagnostic, DsrError, ValidationFailed

JsonPath = tuple[str | int, ...]  # keys and list indexes from the document root

SETTINGS_FILE = "dsr.yaml"
SYSTEMS_FILE = "policies/systems.yaml"
ACCESS_FILE = "policies/access.yaml"
REQUESTS_DIR = "policies/requests"

_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


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
        problems += _check_settings(settings, root)
    if systems:
        problems += _check_systems(systems)
    if access:
        problems += _check_access(access)
    if systems and access:
        problems += _check_permissions(systems, access)
    built_settings = _build_settings(settings.plain) if settings else None
    system_names = set(systems.plain["systems"]) if systems else None
    # Approvers: the users of access.yaml; none when it is absent; unknown (no check) when it
    # is invalid, whose own problems are reported instead.
    users: set[str] | None = set()
    if access:
        users = set(access.plain["users"])
    elif ACCESS_FILE in pending or (root / ACCESS_FILE).exists():
        users = None
    for doc in requests:
        problems += _check_request(doc, built_settings, system_names, users)
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
        systems=_build_systems(systems.plain["systems"]),
        access=_build_access(access_plain) if access_plain is not None else None,
        digest=digest_of(files_digested),
        requests={
            req.id: req
            for req in (_build_request(doc, built_settings.deadline_days) for doc in requests)
        },
    )


def load_settings(root: Path) -> Settings:
    """Only dsr.yaml, validated: for commands that need the settings before the whole workspace
    (`dsr new` hashes with the key it names). `ValidationFailed` with its problems."""
    problems: list[Diagnostic] = []
    settings = _read_valid(root, SETTINGS_FILE, "dsr", problems, {})
    if problems or settings is None:
        raise ValidationFailed(list(dict.fromkeys(problems)))
    return _build_settings(settings.plain)


def request_file(request_id: str) -> str:
    """The workspace-relative path of the request file for `request_id`."""
    return f"{REQUESTS_DIR}/{request_id}.yaml"


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


# -- YAML with lines ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Document:
    """One parsed YAML file and the line of each of its keys and list items."""

    file: str  # relative to the workspace root, as diagnostics show it
    data: Any  # as YAML built it: dates are `datetime.date`
    plain: Any  # JSON values only (dates as ISO strings): what is validated, digested and built
    lines: dict[JsonPath, int]

    def line(self, path: JsonPath) -> int | None:
        """The line of `path`, or of its nearest ancestor that has one (merged keys have none)."""
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path)

    def problem(self, path: JsonPath, message: str) -> Diagnostic:
        return Diagnostic(self.file, self.line(path), _dotted(path), message)


def read_document(root: Path, file: str) -> tuple[Document | None, list[Diagnostic]]:
    """Read and parse `root/file`; None if it is missing, unreadable or not YAML."""
    try:
        text = (root / file).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [Diagnostic(file, None, "", "file not found")]
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Diagnostic(file, None, "", f"cannot read: {exc}")]
    return parse_yaml(text, file)


def parse_yaml(text: str, file: str) -> tuple[Document | None, list[Diagnostic]]:
    """Parse one YAML document (empty: `{}`). None, with the reason, if it is not valid YAML.

    Duplicate keys are reported but do not stop parsing; as in PyYAML, the last one wins.
    """
    lines: dict[JsonPath, int] = {(): 1}
    duplicates: list[Diagnostic] = []
    try:
        data = _load(text, file, lines, duplicates)
    except yaml.YAMLError as exc:
        return None, [_syntax_problem(file, text, exc)]
    return Document(file, data, _plain(data), lines), duplicates


def _load(text: str, file: str, lines: dict[JsonPath, int], duplicates: list[Diagnostic]) -> Any:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}
        lines[()] = node.start_mark.line + 1
        _index(node, (), file, lines, duplicates, set())
        return loader.construct_document(node)
    finally:
        loader.dispose()


class _Loader(yaml.SafeLoader):
    """A SafeLoader whose mapping keys are the text as written: `on:` is 'on', not True."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        self.flatten_mapping(node)
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key_node.tag = _STR_TAG
        return super().construct_mapping(node, deep)

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> date:
        # `2026-02-30` looks like a date to YAML but is none: PyYAML raises a bare ValueError.
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as exc:
            raise ConstructorError(
                None, None, f"'{node.value}' is not a valid date ({exc})", node.start_mark
            ) from exc


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)


def _index(
    node: yaml.Node,
    path: JsonPath,
    file: str,
    lines: dict[JsonPath, int],
    duplicates: list[Diagnostic],
    open_nodes: set[int],
) -> None:
    """Record the line of every key and item under `node`, and report duplicate keys."""
    if id(node) in open_nodes:  # `&a [*a]`: the data would be infinite
        raise ComposerError(
            None, None, "an alias refers to a node that contains it", node.start_mark
        )
    open_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG or not isinstance(key_node, yaml.ScalarNode):
                continue  # merged or complex keys: their lines fall back to the mapping's
            key, line = key_node.value, key_node.start_mark.line + 1
            child = (*path, key)
            if key in first:
                duplicates.append(
                    Diagnostic(
                        file,
                        line,
                        _dotted(child),
                        f"duplicate key '{key}' (first on line {first[key]})",
                    )
                )
            first.setdefault(key, line)
            lines[child] = line
            _index(value_node, child, file, lines, duplicates, open_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _index(item, (*path, i), file, lines, duplicates, open_nodes)
    open_nodes.discard(id(node))


def _syntax_problem(file: str, text: str, exc: yaml.YAMLError) -> Diagnostic:
    """A YAML error as one line, at the line PyYAML points to."""
    if isinstance(exc, ReaderError):
        message = f"invalid YAML: character #x{exc.character:04x} not allowed"
        return Diagnostic(file, text.count("\n", 0, exc.position) + 1, "", message)
    if not isinstance(exc, yaml.MarkedYAMLError):
        return Diagnostic(file, None, "", f"invalid YAML: {exc}")
    problem, context, started = exc.problem or "", exc.context or "", exc.context_mark
    mark = exc.problem_mark or started
    line = mark.line + 1 if mark else None
    if context and not context.startswith("while"):  # "expected a single document in the stream"
        problem = f"{context}, {problem}" if problem else context
    elif context and started and started.line + 1 != line:
        problem += f" ({context} from line {started.line + 1})"
    return Diagnostic(file, line, "", f"invalid YAML: {problem}")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    return value


def _dotted(path: JsonPath) -> str:
    """`systems.crm.ingests[0]`"""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


# -- JSON Schema --------------------------------------------------------------------------------


def validate(doc: Document, schema: str) -> list[Diagnostic]:
    """Every way `doc` breaks `schemas/<schema>.schema.json`, each at its line."""
    return [p for error in _validator(schema).iter_errors(doc.plain) for p in _explain(doc, error)]


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


@cache
def _validator(schema: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(schema))


def _explain(doc: Document, error: ValidationError) -> list[Diagnostic]:
    """One schema error as diagnostics that a person can act on, at the right lines."""
    path: JsonPath = tuple(error.absolute_path)
    field = _dotted(path)
    value: Any = error.instance  # typed `Any | Unset`; always set on a reported error
    expected: Any = error.validator_value
    if error.validator == "additionalProperties":
        known = _schema_of(error).get("properties", {})
        unused = [key for key in known if key not in value]  # what a misspelt key might be
        return [
            Diagnostic(
                doc.file, doc.line((*path, key)), field, f"unknown key '{key}'" + _hint(key, unused)
            )
            for key in value
            if key not in known
        ]
    if error.validator == "required":
        return [
            doc.problem(path, f"missing required key '{key}'")
            for key in expected
            if key not in value
        ]
    if error.validator == "uniqueItems":
        return [
            Diagnostic(
                doc.file, doc.line((*path, i)), field, f"{_show(item)} is listed more than once"
            )
            for i, item in enumerate(value)
            if item in value[:i]
        ]
    if "propertyNames" in error.absolute_schema_path:  # the key itself is wrong; path is its parent
        return [
            Diagnostic(
                doc.file,
                doc.line((*path, value)),
                field,
                f"invalid name {_show(value)}: {_message(error)}",
            )
        ]
    return [doc.problem(path, _message(error))]


_TYPES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _message(error: ValidationError) -> str:
    schema = _schema_of(error)
    expected: Any = error.validator_value
    value: Any = error.instance
    # `errorMessage` and `patternErrorMessage`: the editors' keywords (VS Code's JSON and YAML).
    if "errorMessage" in schema:
        return str(schema["errorMessage"])
    match error.validator:
        case "type":
            types = [expected] if isinstance(expected, str) else expected
            return f"must be {' or '.join(_TYPES[t] for t in types)}, not {_kind(value)}"
        case "enum":
            return f"{_show(value)} is not one of {', '.join(_show(v) for v in expected)}"
        case "pattern":
            return str(schema.get("patternErrorMessage") or f"must match {expected}")
        case "minLength" | "minItems" | "minProperties" if expected == 1:
            return "must not be empty"
        case "minimum":
            return f"must be at least {expected}, not {value}"
        case "maximum":
            return f"must be at most {expected}, not {value}"
    return error.message


def _schema_of(error: ValidationError) -> dict[str, Any]:
    return error.schema if isinstance(error.schema, dict) else {}


def _hint(key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _kind(value: Any) -> str:
    """What a value is, in words, without showing it (it might be a URL with a password)."""
    if value is None or isinstance(value, bool):
        return "null" if value is None else "true or false"
    names = {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        int: "an integer",
        float: "a number",
    }
    return names.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f"'{value}'"
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    return str(value) if isinstance(value, int | float) else _kind(value)


# -- cross-references ---------------------------------------------------------------------------


def _check_systems(doc: Document) -> list[Diagnostic]:
    systems: dict[str, Any] = doc.plain["systems"]
    problems: list[Diagnostic] = []
    with_permissions = [name for name, system in systems.items() if "permissions" in system]
    for name in with_permissions[1:]:
        problems.append(
            doc.problem(
                ("systems", name, "permissions"),
                f"only one system may declare permissions; '{with_permissions[0]}' already does",
            )
        )
    for name, system in systems.items():
        at: JsonPath = ("systems", name)
        role = system["role"]
        if role == "source" and "ingests" in system:
            problems.append(
                doc.problem((*at, "ingests"), "a source system does not ingest other systems")
            )
        if role != "source" and "ingests" not in system:
            problems.append(
                doc.problem(at, f"a {role} system must list the systems it ingests in 'ingests'")
            )
        for i, other in enumerate(system.get("ingests", ())):
            if other == name:
                problems.append(doc.problem((*at, "ingests", i), "a system cannot ingest itself"))
            elif other not in systems:
                problems.append(doc.problem((*at, "ingests", i), f"unknown system '{other}'"))
        tables: dict[str, Any] = system.get("tables", {})
        for table_name, table in tables.items():
            problems += _check_table(doc, (*at, "tables", table_name), table, name, tables)
        for table_name in system.get("user_data", {}):
            where = (*at, "user_data", table_name)
            if "permissions" not in system:
                problems.append(
                    doc.problem(where, "user data belongs on the system that declares permissions")
                )
            if table_name in tables:
                problems.append(
                    doc.problem(where, f"'{table_name}' is already mapped under tables")
                )
    return problems


def _check_table(
    doc: Document, at: JsonPath, table: dict[str, Any], system: str, tables: dict[str, Any]
) -> list[Diagnostic]:
    problems: list[Diagnostic] = []
    kind = table.get("kind", "data")
    subject = table.get("subject")
    if kind == "audit_log":
        problems += [
            doc.problem(
                (*at, key), f"an audit_log table cannot have '{key}': the audit log is never erased"
            )
            for key in ("on_erasure", "identities")
            if key in table
        ]
    elif "on_erasure" in table and "identities" not in table and subject is None:
        problems.append(
            doc.problem(
                (*at, "on_erasure"), "needs 'identities' or 'subject' to find the subject's rows"
            )
        )
    if "identities" in table and subject is not None:
        problems.append(
            doc.problem(
                (*at, "subject"),
                "a table is found either by 'identities' or by a 'subject' link, not both; "
                "map the link alone (rows reached through it are the subject's)",
            )
        )
    if kind == "system_log" and "identities" not in table:
        problems.append(
            doc.problem(at, "a system_log table needs 'identities' to find the subject's log rows")
        )
    if subject is not None:
        referenced = subject["references"].rpartition(".")[0]
        if referenced not in tables:
            problems.append(
                doc.problem(
                    (*at, "subject", "references"), f"no table '{referenced}' in system '{system}'"
                )
            )
        erasure = table.get("on_erasure")
        if isinstance(erasure, dict) and subject["column"] in erasure.get("mask", {}):
            column = subject["column"]
            problems.append(
                doc.problem(
                    (*at, "on_erasure", "mask", column),
                    f"cannot mask '{column}': it links the row to the subject (subject.column)",
                )
            )
    return problems


def _check_access(doc: Document) -> list[Diagnostic]:
    roles = doc.plain["roles"]
    problems: list[Diagnostic] = []
    if "admin_role" in doc.plain:
        if doc.plain["admin_role"] not in roles:
            problems.append(
                doc.problem(("admin_role",), f"'{doc.plain['admin_role']}' is not in roles")
            )
    elif "admin" not in roles:
        problems.append(doc.problem(("roles",), "must include 'admin', the default admin_role"))
    for user, spec in doc.plain["users"].items():
        for i, role in enumerate(spec["roles"]):
            if role not in roles:
                problems.append(
                    doc.problem(
                        ("users", user, "roles", i), f"role '{role}' is not declared in roles"
                    )
                )
    return problems


def _check_permissions(systems: Document, access: Document) -> list[Diagnostic]:
    if any("permissions" in system for system in systems.plain["systems"].values()):
        return []
    return [
        Diagnostic(
            access.file,
            None,
            "",
            f"no system in {SYSTEMS_FILE} declares 'permissions', so there is nowhere to apply it",
        )
    ]


def _check_settings(doc: Document, root: Path) -> list[Diagnostic]:
    """dsr.yaml beyond its schema: the outbox must be inside the workspace (packages hold
    personal data, and only the outbox may)."""
    outbox = doc.plain.get("exports", {}).get("outbox")
    problem = outbox_problem(root, outbox) if outbox is not None else None
    return [doc.problem(("exports", "outbox"), problem)] if problem else []


def _check_request(
    doc: Document, settings: Settings | None, systems: set[str] | None, users: set[str] | None
) -> list[Diagnostic]:
    """A request that matched its schema, against its file name, the settings, the data map and
    access.yaml (approvers; `users` None: access.yaml is invalid, so not checked).

    Checks that need an invalid file (dsr.yaml or systems.yaml) are skipped; that file's own
    problems are reported instead.
    """
    data: dict[str, Any] = doc.plain
    problems: list[Diagnostic] = []
    stem = Path(doc.file).name.removesuffix(".yaml")
    if data["id"] != stem:
        problems.append(
            doc.problem(("id",), f"'{data['id']}' must equal the file name without .yaml, '{stem}'")
        )
    if systems is not None and isinstance(data["systems"], list):
        for i, name in enumerate(data["systems"]):
            if name not in systems:
                hint = _hint(name, sorted(systems))
                problems.append(
                    doc.problem(
                        ("systems", i), f"unknown system '{name}' (not in {SYSTEMS_FILE}){hint}"
                    )
                )
    first_seen: dict[str, int] = {}
    for i, identity in enumerate(data["subject"]["identities"]):
        at: JsonPath = ("subject", "identities", i)
        key_id = identity["hash"].split(":")[1]
        if settings is not None and key_id != settings.identity_key_id:
            problems.append(
                doc.problem(
                    (*at, "hash"),
                    f"hashed with key id '{key_id}', but {SETTINGS_FILE} identity.key_id is "
                    f"'{settings.identity_key_id}': re-file the request with `dsr new`, or "
                    "re-hash it with the current key",
                )
            )
        if identity["hash"] in first_seen:
            problems.append(
                doc.problem(
                    at,
                    f"the same {identity['type']} is listed more than once "
                    f"(first at subject.identities[{first_seen[identity['hash']]}])",
                )
            )
        first_seen.setdefault(identity["hash"], i)
    for i, approval in enumerate(data.get("approvals", ())):
        by = approval["by"]
        if users is not None and by not in users:
            # `erin` for `erin@contoso.example` is a likely slip that difflib does not see
            named = [u for u in sorted(users) if u.partition("@")[0].casefold() == by.casefold()]
            hint = f"; did you mean '{named[0]}'?" if named else _hint(by, sorted(users))
            where = (
                f"not a user in {ACCESS_FILE}{hint}"
                if users
                else f"there is no {ACCESS_FILE} to name tenant admins"
            )
            problems.append(doc.problem(("approvals", i, "by"), f"unknown user '{by}' ({where})"))
    if "approvals" in data and data["type"] != "export":
        problems.append(
            doc.problem(
                ("approvals",), f"only exports are approved; this request is an {data['type']}"
            )
        )
    dates = _request_dates(doc, problems)
    received, ext = dates.get(("received",)), data.get("extension")
    due, told = dates.get(("extension", "due")), dates.get(("extension", "subject_told"))
    if settings is not None and received and ext and due and told:
        extension = Extension(due=due, reason=ext["reason"], subject_told=told)
        problems += [
            doc.problem(("extension", p.field), p.message)
            for p in deadlines.extension_problems(received, settings.deadline_days, extension)
        ]
    return problems


def _request_dates(doc: Document, problems: list[Diagnostic]) -> dict[JsonPath, date]:
    """Every date in a request that is a real one; `2026-02-30` (quoted) is reported instead."""
    paths: list[JsonPath] = [("received",)]
    if "extension" in doc.plain:
        paths += [("extension", "due"), ("extension", "subject_told")]
    paths += [("approvals", i, "at") for i in range(len(doc.plain.get("approvals", ())))]
    found: dict[JsonPath, date] = {}
    for path in paths:
        text: Any = doc.plain
        for part in path:
            text = text[part]
        try:
            found[path] = date.fromisoformat(text)
        except ValueError:
            problems.append(doc.problem(path, f"'{text}' is not a valid date"))
    return found


# -- building the model -------------------------------------------------------------------------

_SETTINGS_FIELDS = {  # (section, key) in dsr.yaml -> Settings field; absent: the model default
    ("state", "path"): "state_path",
    ("state", "url"): "state_url",
    ("identity", "key"): "identity_key",
    ("identity", "key_id"): "identity_key_id",
    ("identity", "development_key"): "development_key",
    ("deadlines", "days"): "deadline_days",
    ("exports", "outbox"): "outbox",
    ("exports", "expire_after_days"): "expire_after_days",
    ("safety", "max_revocations"): "max_revocations",
}


def _build_settings(data: dict[str, Any]) -> Settings:
    given = {
        name: data[section][key]
        for (section, key), name in _SETTINGS_FIELDS.items()
        if key in data.get(section, {})
    }
    for name in ("deadline_days", "expire_after_days", "max_revocations"):
        if name in given:
            given[name] = int(given[name])  # JSON Schema's integer admits 30.0
    if "development_key" in given:
        given["development_key"] = Sensitive(given["development_key"])
    return Settings(workspace=data["workspace"], **given)


def _build_systems(data: dict[str, Any]) -> dict[str, System]:
    return {
        name: System(
            name=name,
            role=SystemRole(spec["role"]),
            url=spec["url"],
            erase_at_source=spec.get("erase_at_source", True),
            ingests=tuple(spec.get("ingests", ())),
            refresh=_build_refresh(spec["refresh"]) if "refresh" in spec else None,
            tables={t: _build_table(t, table) for t, table in spec.get("tables", {}).items()},
            permissions=PermissionsMap(**spec["permissions"]) if "permissions" in spec else None,
            user_data={
                t: _build_table(
                    t,
                    {
                        "primary_key": table["primary_key"],
                        "identities": {"email": table["user"]},
                        "on_erasure": table["on_erasure"],
                    },
                )
                for t, table in spec.get("user_data", {}).items()
            },
        )
        for name, spec in data.items()
    }


def _build_refresh(data: dict[str, Any]) -> Refresh:
    return Refresh(sql=tuple(data.get("sql", ())), command=tuple(data.get("command", ())))


def _build_table(name: str, data: dict[str, Any]) -> Table:
    erasure, mask, reason = _build_erasure(data.get("on_erasure"))
    subject = None
    if "subject" in data:
        table, _, column = data["subject"]["references"].rpartition(".")
        subject = SubjectLink(column=data["subject"]["column"], table=table, references=column)
    return Table(
        name=name,
        primary_key=data.get("primary_key"),
        identities=dict(data.get("identities", {})),
        subject=subject,
        erasure=erasure,
        mask=mask,
        reason=reason,
        kind=TableKind(data.get("kind", "data")),
    )


def _build_erasure(
    rule: str | dict[str, Any] | None,
) -> tuple[ErasureStrategy | None, dict[str, MaskStrategy], str | None]:
    if rule is None:
        return None, {}, None
    if rule == "delete":
        return ErasureStrategy.DELETE, {}, None
    assert isinstance(rule, dict)  # the schema allows nothing else
    if "retain" in rule:
        return ErasureStrategy.RETAIN, {}, rule["retain"]
    # A bare YAML `null` means the "null" strategy too: `phone: null` reads as intended.
    mask = {
        column: MaskStrategy(s if s is not None else "null") for column, s in rule["mask"].items()
    }
    return ErasureStrategy.MASK, mask, rule["reason"]


def _build_access(data: dict[str, Any]) -> Access:
    users = {
        name: DesiredUser(
            name=name, roles=frozenset(spec["roles"]), protected=spec.get("protected", False)
        )
        for name, spec in data["users"].items()
    }
    extra = {"admin_role": data["admin_role"]} if "admin_role" in data else {}
    return Access(roles=tuple(data["roles"]), users=users, **extra)


def _build_request(doc: Document, deadline_days: int | None) -> Request:
    """A request that passed every check: dates are real and any extension is lawful."""
    data: dict[str, Any] = doc.plain
    received = date.fromisoformat(data["received"])
    extension = None
    if "extension" in data:
        ext = data["extension"]
        extension = Extension(
            due=date.fromisoformat(ext["due"]),
            reason=ext["reason"],
            subject_told=date.fromisoformat(ext["subject_told"]),
        )
    systems = data["systems"]
    return Request(
        id=data["id"],
        type=RequestType(data["type"]),
        subject_kind=SubjectKind(data["subject"]["kind"]),
        identities=tuple(
            IdentityHash(type=i["type"], hash=i["hash"]) for i in data["subject"]["identities"]
        ),
        received=received,
        requested_by=data["requested_by"],
        due=deadlines.due_date(received, deadline_days, extension),
        systems=None if systems == "all" else tuple(systems),
        extension=extension,
        legal_hold=data.get("legal_hold"),
        cancelled=data.get("cancelled"),
        approvals=tuple(
            Approval(by=a["by"], at=date.fromisoformat(a["at"])) for a in data.get("approvals", ())
        ),
        file=doc.file,
    )
