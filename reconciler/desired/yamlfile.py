"""YAML with line numbers: parse one policy file into its data and the line of every key and
list item, so that every later problem can be reported as `file:line: field: message`.

Duplicate keys are reported, `on:` stays the text 'on', impossible dates are errors, and a
syntax error becomes one line at the line PyYAML points to. No schema, no model here.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, cast

import yaml
from yaml.constructor import ConstructorError
from yaml.error import Mark
from yaml.reader import ReaderError

from reconciler.errors import Diagnostic

JsonPath = tuple[str | int, ...]  # keys and list indexes from the document root

_STR_TAG = "tag:yaml.org,2002:str"
_MERGE_TAG = "tag:yaml.org,2002:merge"


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
        return Diagnostic(self.file, self.line(path), dotted(path), message)


def read_document(root: Path, file: str) -> tuple[Document | None, list[Diagnostic]]:
    """Read and parse `root/file`; None if it is missing, unreadable or not YAML."""
    try:
        text = (root / file).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [Diagnostic(file, None, "", "file not found")]
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1  # where the editor shows the bad byte
        return None, [Diagnostic(file, line, "", f"not UTF-8: {exc.reason} (byte {exc.start})")]
    except OSError as exc:
        return None, [Diagnostic(file, None, "", f"cannot read: {exc}")]
    return parse_yaml(text, file)


def parse_yaml(text: str, file: str) -> tuple[Document | None, list[Diagnostic]]:
    """Parse one YAML document (empty: `{}`). None, with the reason, if it is not valid YAML.

    Duplicate keys are reported but do not stop parsing; as in PyYAML, the last one wins.
    """
    lines: dict[JsonPath, int] = {(): 1}
    duplicates: list[Diagnostic] = []
    if len(text) > MAX_CHARACTERS:
        limit = f"{MAX_CHARACTERS:,} characters"
        return None, [Diagnostic(file, None, "", f"is larger than {limit}: not a policy file")]
    try:
        data, dated = _build(text, file, lines, duplicates)
    except (_Unusual, yaml.YAMLError):
        # Anything the one pass does not handle (and every error) takes the careful path:
        # refuse aliases and deep nesting first, then compose and construct as PyYAML does.
        lines.clear()
        lines[()] = 1
        duplicates.clear()
        try:
            _screen(text)
            data = _load(text, file, lines, duplicates)
        except yaml.YAMLError as exc:
            return None, [_syntax_problem(file, text, exc)]
        dated = True
    return Document(file, data, _plain(data) if dated else data, lines), duplicates


# Bounds on what a policy file may be: no input may reach the user as a traceback, take
# minutes, or take gigabytes (an alias bomb is nine lines long).
MAX_CHARACTERS = 1_000_000
MAX_DEPTH = 64


class _Refused(yaml.MarkedYAMLError):
    """Valid YAML that a policy file may not use."""


def _screen(text: str) -> None:
    """Refuses anchors and aliases (`&name`, `*name`: an alias bomb expands a few lines into
    gigabytes) and nesting deeper than MAX_DEPTH, before anything is built. libyaml's event
    parser is iterative, so this pass itself is bounded by the file's size."""
    depth = 0
    for event in yaml.parse(text, Loader=_Parser):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused(
                None,
                None,
                "anchors and aliases (&name, *name) are not allowed in policy files: write "
                "the values out",
                cast(Mark, event.start_mark),
            )
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                where = cast(Mark, event.start_mark)
                raise _Refused(None, None, f"nested more than {MAX_DEPTH} levels deep", where)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


# libyaml (C) when PyYAML has it, for the speed of loading a thousand request files.
_Parser: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Unusual(Exception):
    """Something the one-pass builder leaves to the careful path: an anchor, an alias, nesting
    deeper than MAX_DEPTH, an explicit collection tag, a merge key, a complex key, or a second
    document."""


_MAP_TAGS = (None, "!", "tag:yaml.org,2002:map")
_SEQ_TAGS = (None, "!", "tag:yaml.org,2002:seq")


def _build(
    text: str, file: str, lines: dict[JsonPath, int], duplicates: list[Diagnostic]
) -> tuple[Any, bool]:
    """The data of a plain policy file in one pass over libyaml's events (no node tree, no
    second walk), recording lines and duplicate keys on the way; whether any value is not
    JSON (a date), so that `Document.plain` needs its own copy. Raises `_Unusual` for what
    only the careful path handles, and YAML errors as PyYAML raises them."""
    loader = _Loader(text)
    try:
        loader.get_event()  # stream start
        if loader.check_event(yaml.StreamEndEvent):
            return {}, False
        loader.get_event()  # document start
        event = loader.get_event()
        lines[()] = event.start_mark.line + 1
        builder = _Builder(loader, file, lines, duplicates)
        data = builder.value(event, (), 0)
        loader.get_event()  # document end
        if not loader.check_event(yaml.StreamEndEvent):
            raise _Unusual("a second document")
        return data, builder.dated
    finally:
        loader.dispose()


class _Builder:
    """Builds values from events the way `_Loader` composes and constructs them: scalars are
    resolved and constructed by the loader itself; mapping keys are the text as written."""

    def __init__(
        self, loader: Any, file: str, lines: dict[JsonPath, int], duplicates: list[Diagnostic]
    ) -> None:
        self.loader = loader
        self.file = file
        self.lines = lines
        self.duplicates = duplicates
        self.first: dict[JsonPath, int] = {}  # the first line of each duplicated key
        self.dated = False

    def value(self, event: Any, path: JsonPath, depth: int) -> Any:
        kind = type(event)
        if event.anchor is not None or kind is yaml.AliasEvent:
            raise _Unusual("an anchor or alias")
        if kind is yaml.ScalarEvent:
            return self.scalar(event)
        if depth >= MAX_DEPTH:
            raise _Unusual("deep nesting")
        if kind is yaml.MappingStartEvent and event.tag in _MAP_TAGS:
            return self.mapping(path, depth + 1)
        if kind is yaml.SequenceStartEvent and event.tag in _SEQ_TAGS:
            return self.sequence(path, depth + 1)
        raise _Unusual("a tagged collection")

    def scalar(self, event: Any) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag == _STR_TAG:
            return event.value
        node = yaml.ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
        value = self.loader.construct_object(node, deep=True)
        if isinstance(value, date):
            self.dated = True
        return value

    def mapping(self, path: JsonPath, depth: int) -> dict[str, Any]:
        get, lines = self.loader.get_event, self.lines
        out: dict[str, Any] = {}
        while True:
            event: Any = get()
            if type(event) is not yaml.ScalarEvent:
                if type(event) is yaml.MappingEndEvent:
                    return out
                raise _Unusual("a complex key or an alias")
            key = event.value
            if event.anchor is not None or event.tag is not None or key == "<<":
                raise _Unusual("an anchor, a tagged key or a merge key")
            start: Any = event.start_mark  # set on every event libyaml makes
            line = start.line + 1
            child = (*path, key)
            if key in out:
                first = self.first.setdefault(child, lines[child])
                message = f"duplicate key '{key}' (first on line {first})"
                self.duplicates.append(Diagnostic(self.file, line, dotted(child), message))
            lines[child] = line
            event = get()
            if _plain_text(event):
                out[key] = event.value
            else:
                out[key] = self.value(event, child, depth)

    def sequence(self, path: JsonPath, depth: int) -> list[Any]:
        get, lines = self.loader.get_event, self.lines
        out: list[Any] = []
        while True:
            event = get()
            if type(event) is yaml.SequenceEndEvent:
                return out
            child = (*path, len(out))
            lines[child] = event.start_mark.line + 1
            out.append(event.value if _plain_text(event) else self.value(event, child, depth))


def _plain_text(event: Any) -> bool:
    """Whether `event` is a scalar that `_Loader` would construct as its text: untagged, and
    quoted or starting with a character no implicit resolver looks at (`resolve` would give
    str). The common case, answered without calling the resolver."""
    return (
        type(event) is yaml.ScalarEvent
        and event.tag is None
        and event.anchor is None
        and (not event.implicit[0] or event.value[:1] not in _RESOLVED_FIRST)
    )


def _load(text: str, file: str, lines: dict[JsonPath, int], duplicates: list[Diagnostic]) -> Any:
    """The careful path: compose the node tree, index it, construct it (after `_screen`)."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return {}
        lines[()] = node.start_mark.line + 1
        _index(node, (), file, lines, duplicates)
        return loader.construct_document(node)
    finally:
        loader.dispose()


class _Loader(_Parser):  # type: ignore[misc]
    """A safe loader whose mapping keys are the text as written: `on:` is 'on', not True."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        self.flatten_mapping(node)
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key_node.tag = _STR_TAG
        return cast(dict[Hashable, Any], super().construct_mapping(node, deep))

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> date:
        # `2026-02-30` looks like a date to YAML but is none: PyYAML raises a bare ValueError.
        try:
            return cast(date, super().construct_yaml_timestamp(node))
        except ValueError as exc:
            raise ConstructorError(
                None, None, f"'{node.value}' is not a valid date ({exc})", node.start_mark
            ) from exc


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_timestamp)

# The first characters of plain scalars that an implicit resolver may turn into something other
# than a string ('' for the empty scalar, null). The safe loader has no resolvers on every
# character (None) and none by path, which `_plain_text` relies on.
_RESOLVED_FIRST = frozenset(_Loader.yaml_implicit_resolvers)
assert None not in _RESOLVED_FIRST and not _Loader.yaml_path_resolvers


def _index(
    node: yaml.Node,
    path: JsonPath,
    file: str,
    lines: dict[JsonPath, int],
    duplicates: list[Diagnostic],
) -> None:
    """Record the line of every key and item under `node`, and report duplicate keys. (The
    tree is at most MAX_DEPTH deep and shares no node: `_screen` refused aliases.)"""
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
                        dotted(child),
                        f"duplicate key '{key}' (first on line {first[key]})",
                    )
                )
            first.setdefault(key, line)
            lines[child] = line
            _index(value_node, child, file, lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _index(item, (*path, i), file, lines, duplicates)


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


def dotted(path: JsonPath) -> str:
    """`systems.crm.ingests[0]`"""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text
