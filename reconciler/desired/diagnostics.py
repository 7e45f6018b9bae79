"""JSON Schema diagnostics: every way a parsed file breaks its schema, as one line each at the
right line, in words a person can act on (a misspelt key gets a suggestion; a value that may be
a secret is described, never shown).

The schemas are `schemas/<name>.schema.json` (`schemas.py` finds them); each is compiled once,
twice over: a file is first checked by jsonschema-rs (compiled Rust, fast enough for a thousand
request files or an access.yaml of 10,000 users), and only a file that fails is walked by the
`jsonschema` package, whose errors carry the paths and schema keywords the messages need.
"""

from __future__ import annotations

import difflib
from functools import cache
from typing import TYPE_CHECKING, Any

import jsonschema_rs

from reconciler.desired.schemas import load_schema
from reconciler.desired.yamlfile import Document, JsonPath, dotted
from reconciler.errors import Diagnostic

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError


def validate(doc: Document, schema: str) -> list[Diagnostic]:
    """Every way `doc` breaks `schemas/<schema>.schema.json`, each at its line."""
    if _checker(schema).is_valid(doc.plain):
        return []
    return [p for error in _validator(schema).iter_errors(doc.plain) for p in _explain(doc, error)]


@cache
def _validator(schema: str) -> Draft202012Validator:
    # Imported here: a tenth of a second that only a file with a problem needs.
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema(schema))


@cache
def _checker(schema: str) -> jsonschema_rs.Draft202012Validator:
    """The same schema for a yes/no answer. `format` is an annotation only, as in `jsonschema`
    without a format checker."""
    return jsonschema_rs.Draft202012Validator(load_schema(schema), validate_formats=False)


def _explain(doc: Document, error: ValidationError) -> list[Diagnostic]:
    """One schema error as diagnostics that a person can act on, at the right lines."""
    path: JsonPath = tuple(error.absolute_path)
    field = dotted(path)
    value: Any = error.instance  # typed `Any | Unset`; always set on a reported error
    expected: Any = error.validator_value
    if error.validator == "additionalProperties":
        known = _schema_of(error).get("properties", {})
        unused = [key for key in known if key not in value]  # what a misspelt key might be
        return [
            Diagnostic(
                doc.file, doc.line((*path, key)), field, f"unknown key '{key}'" + hint(key, unused)
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


def hint(key: str, known: list[str]) -> str:
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
