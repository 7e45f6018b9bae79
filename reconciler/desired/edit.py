"""Editing a request file's text for the commands that record a reviewed act on it (`dsr
approve`, `dsr deliver`): lines are added, never rewritten, so its comments and layout stay as
reviewed; the result is parsed back and must hold exactly the old data plus the new entry; the
file is replaced through a temp file and a rename, refused if it changed meanwhile."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import stat
from pathlib import Path

import yaml

from reconciler.desired.model import Approval
from reconciler.desired.yamlfile import parse_yaml
from reconciler.errors import DsrError

_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]*")  # written as is; anything else JSON-quoted


def with_approval(text: str, file: str, approval: Approval) -> str:
    """`text` with `approval` appended to its `approvals:` list (added at the end if absent).

    Only lines are added (or, in a `[...]` list, one item before the `]`); the result is parsed
    back and must equal the old data plus the approval, else the file is left to a person.
    """
    newline = "\r\n" if "\r\n" in text else "\n"
    item = f"{{by: {_scalar(approval.by)}, at: {approval.at.isoformat()}}}"
    cannot = DsrError(
        f"{file}: cannot add the approval without rewriting the file; add it by hand under "
        f"approvals: as - {item}"
    )
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        raise cannot from None
    if not isinstance(root, yaml.MappingNode) or root.flow_style:
        raise cannot
    node = next(
        (v for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.value == "approvals"),
        None,
    )
    if node is None:
        body = text if not text or text.endswith(("\n", "\r")) else text + newline
        changed = f"{body}approvals:{newline}  - {item}{newline}"
    elif isinstance(node, yaml.SequenceNode) and node.value and node.flow_style:
        close = node.end_mark.index - 1  # the `]`
        if text[close] != "]":
            raise cannot
        changed = f"{text[:close]}, {item}{text[close:]}"
    elif isinstance(node, yaml.SequenceNode) and node.value:
        first = node.value[0]
        lines = text.splitlines(keepends=True)
        before = lines[first.start_mark.line][: first.start_mark.column].rstrip()
        if not before.endswith("-") or before[:-1].strip():
            raise cannot
        end = _last_line(node.value[-1])
        if not lines[end].endswith(("\n", "\r")):
            lines[end] += newline
        lines.insert(end + 1, f"{before[:-1]}- {item}{newline}")
        changed = "".join(lines)
    else:
        raise cannot
    old, _ = parse_yaml(text, file)
    new, _ = parse_yaml(changed, file)
    if old is None or new is None or not isinstance(old.plain, dict):
        raise cannot
    expected = dict(old.plain)
    entry = {"by": approval.by, "at": approval.at.isoformat()}
    expected["approvals"] = [*old.plain.get("approvals", ()), entry]
    if new.plain != expected:
        raise cannot
    return changed


def _last_line(node: yaml.Node) -> int:
    """The line (0-based) that holds the last character of `node`."""
    if isinstance(node, yaml.MappingNode | yaml.SequenceNode) and not node.flow_style:
        if isinstance(node, yaml.MappingNode) and node.value:
            return _last_line(node.value[-1][1])
        if isinstance(node, yaml.SequenceNode) and node.value:
            return _last_line(node.value[-1])
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        # a block scalar ends at the start of the line after it
        mark = node.end_mark
        return mark.line - 1 if mark.column == 0 else mark.line
    return int(node.end_mark.line)


def _scalar(value: str) -> str:
    """`value` as a YAML scalar in a flow mapping: plain when that reads back as the same
    string, else double-quoted (JSON strings are YAML double-quoted scalars)."""
    if _PLAIN.fullmatch(value) and yaml.safe_load(f"{{by: {value}}}") == {"by": value}:
        return value
    return json.dumps(value, ensure_ascii=False)


def read_text(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as handle:  # keep the file's line endings
        return handle.read()


def replace_file(path: Path, file: str, original: str, text: str, command: str) -> None:
    """Replace `path` with `text` through a hidden temp file and a rename; refused if the file
    changed since it was read (a concurrent edit must not be lost)."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(temp, "x", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(OSError):
            os.chmod(temp, stat.S_IMODE(path.stat().st_mode))
        if read_text(path) != original:
            raise DsrError(f"{file} changed while {command} ran; run it again")
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def with_entry(text: str, file: str, key: str, entry: Approval) -> str:
    """`text` with `key: {by: ..., at: ...}` added as its last line (the key must be absent).
    The result is parsed back and must equal the old data plus the entry."""
    newline = "\r\n" if "\r\n" in text else "\n"
    item = f"{{by: {_scalar(entry.by)}, at: {entry.at.isoformat()}}}"
    cannot = DsrError(
        f"{file}: cannot add {key} without rewriting the file; add it by hand: {key}: {item}"
    )
    body = text if not text or text.endswith(("\n", "\r")) else text + newline
    changed = f"{body}{key}: {item}{newline}"
    old, _ = parse_yaml(text, file)
    new, _ = parse_yaml(changed, file)
    if old is None or new is None or not isinstance(old.plain, dict) or key in old.plain:
        raise cannot
    if new.plain != {**old.plain, key: {"by": entry.by, "at": entry.at.isoformat()}}:
        raise cannot
    return changed
