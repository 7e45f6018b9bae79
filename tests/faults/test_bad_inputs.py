"""Bad input, by hand and generated (`hypothesis`): each case exits 1 with exactly one line of
output, naming `file:line` where a file is at fault, never a traceback, and changes nothing:
the systems' database, the state store and every file of the workspace are byte for byte as
before.

The workspace is the workload after one converged apply, so a state store exists to be
changed. Each case writes its bad file, runs `dsr apply --auto-approve` (or the command it
names) in process, then puts the file back.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faults.conftest import FULL, Fault
from faults.workload import ANA, Runner, build_template, copy_of

REQ = "policies/requests/DSR-F-ANA.yaml"
EXPORT = "policies/requests/DSR-F-CARL.yaml"
NEW = "policies/requests/DSR-F-NEW.yaml"
SETTINGS = "dsr.yaml"
SYSTEMS = "policies/systems.yaml"
ACCESS = "policies/access.yaml"
PLAN = "saved-plan.json"
APPLY = ("apply", "--auto-approve")
APPLY_PLAN = ("apply", PLAN, "--auto-approve")
GENERATED = 300 if FULL else 40


@dataclass(frozen=True)
class Case:
    name: str
    path: str | None  # the file written (None: the command alone is at fault)
    content: Callable[[str], bytes]  # from the file's current text
    args: tuple[str, ...] = APPLY
    # What the one line must name: "line" path:line; "file" the path (the whole file is at
    # fault: its size, or a plan file, which is JSON that dsr wrote); "none" (no file is).
    names: str = "line"
    input: str | None = None
    lines: int = 1  # validation reports every problem at once: one line each
    usage: bool = False  # a command-line mistake: click's usage, a hint and one Error: line
    link: str | None = None  # the file is a symbolic link to this path
    copy: str | None = None  # the file is a copy of this one


def text(value: str) -> Callable[[str], bytes]:
    return lambda _old: value.encode()


def edit(old: str, new: str) -> Callable[[str], bytes]:
    def change(current: str) -> bytes:
        assert old in current, old
        return current.replace(old, new, 1).encode()

    return change


def add(extra: str) -> Callable[[str], bytes]:
    return lambda current: (current + extra).encode()


def drop(line_start: str) -> Callable[[str], bytes]:
    def change(current: str) -> bytes:
        lines = current.splitlines(keepends=True)
        kept = [x for x in lines if not x.startswith(line_start)]
        assert len(kept) < len(lines), line_start
        return "".join(kept).encode()

    return change


def nested_yaml(depth: int) -> str:
    return "".join(f"{'  ' * i}k{i}:\n" for i in range(depth)) + f"{'  ' * depth}v\n"


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)
BIG = "# " + "x" * 1_100_000 + "\n"
PYTHON_APPLY = "!!python/object/apply:os.system ['touch /tmp/dsr-pwned']"


def request_cases() -> list[Case]:
    R = REQ
    return [
        Case("broken YAML", R, text("id: [\n")),
        Case("tab indentation", R, edit("  kind: customer", "\tkind: customer")),
        Case("a list, not a mapping", R, text("- a\n- b\n")),
        Case("a scalar, not a mapping", R, text("just a string\n")),
        Case("empty file", R, text(""), lines=6),  # every required key is missing
        Case("unknown field", R, add("bogus: 1\n")),
        Case("id an integer", R, edit("id: DSR-F-ANA", "id: 12345")),
        Case("id a list", R, edit("id: DSR-F-ANA", "id: [1, 2]")),
        Case("id not the file name", R, edit("id: DSR-F-ANA", "id: DSR-F-OTHER")),
        Case("received 9999-12-31", R, edit("received: 2026-11-20", "received: 9999-12-31")),
        Case("received 1900-01-01", R, edit("received: 2026-11-20", "received: 1900-01-01")),
        Case("received not a date", R, edit("received: 2026-11-20", "received: yesterday")),
        Case("received 2026-02-30", R, edit("received: 2026-11-20", "received: 2026-02-30")),
        Case("received an integer", R, edit("received: 2026-11-20", "received: 20261120")),
        Case("type unknown", R, edit("type: erasure", "type: rectification")),
        Case("type missing", R, drop("type:")),
        Case("received missing", R, drop("received:")),
        Case(
            "identities empty",
            R,
            lambda t: re.sub(r"identities:\n(    .*\n)+", "identities: []\n", t).encode(),
        ),
        Case(
            "raw e-mail for a hash", R, lambda t: re.sub(r"hash: \S+", f"hash: {ANA}", t).encode()
        ),
        Case("identity type unknown", R, edit("- type: email", "- type: passport")),
        Case(
            "hash in another scheme", R, lambda t: re.sub(r"hash: \S+", "hash: md5:abc", t).encode()
        ),
        Case("subject kind unknown", R, edit("kind: customer", "kind: robot")),
        Case("systems an integer", R, edit("systems: all", "systems: 42")),
        Case("systems unknown", R, edit("systems: all", "systems: [nowhere]")),
        Case(
            "requested_by a mapping",
            R,
            edit("requested_by: dpo@contoso.example", "requested_by: {a: 1}"),
        ),
        Case(
            "nested 200 deep (block)",
            R,
            add("extension:\n" + "  " + nested_yaml(200).replace("\n", "\n  ").rstrip() + "\n"),
        ),
        Case("nested 10000 deep (flow)", R, add("extension: " + "[" * 10000 + "]" * 10000 + "\n")),
        Case("alias bomb", R, add(ALIAS_BOMB)),
        Case("an anchor and an alias", R, add("x: &x 1\ny: *x\n")),
        Case("over a million characters", R, add(BIG), names="file"),
        Case("not UTF-8", R, lambda t: t.encode() + b"legal_hold: \xff\xfe\n"),
        Case("a NUL byte", R, add("legal_hold: a\x00b\n")),
        Case("!!python/object/apply tag", R, add(f"legal_hold: {PYTHON_APPLY}\n")),
        Case("!!python/name tag", R, add("legal_hold: !!python/name:os.system\n")),
        Case("extension not a mapping", R, add("extension: 12\n")),
        Case("cancelled an integer", R, add("cancelled: 5\n")),
    ]


def other_file_cases() -> list[Case]:
    S, Y, A, E = SETTINGS, SYSTEMS, ACCESS, EXPORT
    return [
        Case(
            "expire_after_days 999999999",
            S,
            edit("expire_after_days: 7", "expire_after_days: 999999999"),
        ),
        Case("expire_after_days 0", S, edit("expire_after_days: 7", "expire_after_days: 0")),
        Case("expire_after_days -3", S, edit("expire_after_days: 7", "expire_after_days: -3")),
        Case(
            "expire_after_days a string",
            S,
            edit("expire_after_days: 7", "expire_after_days: 7 days"),
        ),
        Case("settings: unknown key", S, add("colour: blue\n")),
        Case("settings: broken YAML", S, text("workspace: [\n")),
        Case("settings: a list", S, text("- workspace\n")),
        Case("settings: max_revocations -1", S, add("safety: {max_revocations: -1}\n")),
        Case("settings: workspace a mapping", S, edit("workspace: faults", "workspace: {a: b}")),
        Case(
            "settings: outbox a path out of the workspace",
            S,
            edit("outbox: state/outbox", "outbox: ../../outside"),
        ),
        Case("settings: !!python tag", S, add(f"extra: {PYTHON_APPLY}\n")),
        Case("settings: alias bomb", S, add(ALIAS_BOMB)),
        Case("settings: nested 200 deep", S, add(nested_yaml(200))),
        Case("settings: over a million characters", S, add(BIG), names="file"),
        Case("settings: not UTF-8", S, lambda t: t.encode() + b"\xc3\x28: 1\n"),
        Case(
            "systems: unknown table key",
            Y,
            edit("on_erasure: delete", "on_erasure: delete\n        colour: blue"),
        ),
        Case("systems: on_erasure unknown", Y, edit("on_erasure: delete", "on_erasure: explode")),
        Case(
            "systems: reference to a missing table",
            Y,
            edit("references: customers.id", "references: nowhere.id"),
        ),
        Case(
            "systems: ingests an unknown system",
            Y,
            edit("ingests: [crm, shop]", "ingests: [crm, nowhere]"),
        ),
        Case("systems: role unknown", Y, edit("role: source", "role: king")),
        Case("systems: primary_key an integer", Y, edit("primary_key: id", "primary_key: 5")),
        Case("systems: broken YAML", Y, text("systems: {crm: [\n")),
        Case(
            "systems: url from an unset variable",
            Y,
            edit("url: env:DSR_TEST_DB", "url: env:DSR_FAULTS_UNSET"),
            names="none",
        ),
        Case("systems: !!python tag", Y, add(f"x: {PYTHON_APPLY}\n")),
        Case("systems: alias bomb", Y, add(ALIAS_BOMB)),
        Case("systems: nested 200 deep", Y, add(nested_yaml(200))),
        Case(
            "access: a role that does not exist",
            A,
            edit("{roles: [contributor]}", "{roles: [pope]}"),
        ),
        Case(
            "access: roles not a list",
            A,
            edit("roles: [admin, contributor, viewer]", "roles: admin"),
        ),
        Case("access: protected a string", A, edit("protected: true", "protected: 'yes'")),
        Case(
            "access: user's unknown field",
            A,
            edit("{roles: [contributor]}", "{roles: [contributor], colour: blue}"),
        ),
        Case("access: admin_role not a role", A, add("admin_role: root\n")),
        Case("access: broken YAML", A, text("users: {\n")),
        Case("export: approval dated 9999-12-31", E, edit("at: 2026-11-21", "at: 9999-12-31")),
        Case(
            "export: approval not a list",
            E,
            lambda t: re.sub(r"approvals:\n.*\n", "approvals: yes\n", t).encode(),
        ),
        Case("export: approval by a number", E, edit("by: erin@contoso.example", "by: 42")),
        Case("a second file with the same id", NEW, text(""), copy=REQ),
        Case(
            "a request file that is a symlink out of the workspace",
            NEW,
            text(""),
            link="/etc/passwd",
        ),
    ]


def plan_cases() -> list[Case]:
    P = PLAN
    return [
        Case("plan: not JSON", P, text("{not json"), APPLY_PLAN, names="file"),
        Case("plan: a JSON array", P, text("[1, 2]"), APPLY_PLAN, names="file"),
        Case("plan: empty", P, text(""), APPLY_PLAN, names="file"),
        Case(
            "plan: nested 100000 deep",
            P,
            text("[" * 100_000 + "]" * 100_000),
            APPLY_PLAN,
            names="file",
        ),
        Case(
            "plan: over 64 MiB",
            P,
            text('{"x": "' + "x" * (65 * 2**20) + '"}'),
            APPLY_PLAN,
            names="file",
        ),
        Case("plan: not UTF-8", P, lambda _t: b'{"plan_id": "\xff"}', APPLY_PLAN, names="file"),
        Case(
            "plan: format version 99", P, text('{"format_version": 99}'), APPLY_PLAN, names="file"
        ),
        Case(
            "plan: changes a string",
            P,
            None_plan(lambda d: d.update(changes="x")),
            APPLY_PLAN,
            names="file",
        ),
        Case(
            "plan: plan_id missing",
            P,
            None_plan(lambda d: d.pop("plan_id")),
            APPLY_PLAN,
            names="file",
        ),
        Case(
            "plan: a change edited, plan_id kept",
            P,
            None_plan(edit_first_change),
            APPLY_PLAN,
            names="file",
        ),
        Case(
            "plan: an unknown action",
            P,
            None_plan(lambda d: d["changes"][0].update(action="drop_table")),
            APPLY_PLAN,
            names="file",
        ),
        Case(
            "plan: a path that does not exist",
            None,
            text(""),
            ("apply", "no-such-plan.json", "--auto-approve"),
        ),
        Case(
            "plan: a directory", None, text(""), ("apply", "policies", "--auto-approve"), usage=True
        ),
    ]


def None_plan(change: Callable[[dict[str, object]], object]) -> Callable[[str], bytes]:
    """A saved plan of this workspace (written by the case's set-up), then `change`d."""

    def build(saved: str) -> bytes:
        data = json.loads(saved)
        change(data)
        return json.dumps(data).encode()

    return build


def edit_first_change(data: dict[str, object]) -> None:
    changes = data["changes"]
    assert isinstance(changes, list)
    changes.append({**changes[0], "rows": 999})


def command_cases() -> list[Case]:
    new = ("new", "erasure", "--email", "-", "--requested-by", "dpo@contoso.example")
    return [
        Case(
            "new: an id that climbs out (../)",
            None,
            text(""),
            (*new, "--id", "../../evil"),
            input=ANA,
        ),
        Case("new: an id with a slash", None, text(""), (*new, "--id", "DSR/evil"), input=ANA),
        Case(
            "new: received 9999-12-31",
            None,
            text(""),
            (*new, "--received", "9999-12-31"),
            input=ANA,
        ),
        Case("new: an address that is not one", None, text(""), new, input="not an address"),
        Case("new: no address on stdin", None, text(""), new, input=""),
        Case(
            "approve: dated in the future",
            None,
            text(""),
            ("approve", "DSR-F-CARL", "--by", "erin@contoso.example", "--on", "2999-01-01"),
        ),
        Case(
            "approve: an unknown request",
            None,
            text(""),
            ("approve", "DSR-NOPE", "--by", "erin@contoso.example"),
        ),
        Case("audit verify --head garbage", None, text(""), ("audit", "verify", "--head", "x:y")),
        Case(
            "apply --lock-timeout -1", None, text(""), ("apply", "--lock-timeout", "-1"), usage=True
        ),
        Case("plan --format yaml", None, text(""), ("plan", "--format", "yaml"), usage=True),
    ]


CASES = request_cases() + other_file_cases() + plan_cases() + command_cases()


# -- running a case ---------------------------------------------------------------------------


def snapshot(runner: Runner) -> dict[str, str]:
    """A digest of every file of the workspace, and of every row of the state store and of
    the systems' database (read through SQLite: a write may still sit in its WAL file)."""
    files = [
        p
        for p in sorted(runner.ws.rglob("*"))
        if p.is_file() and not p.is_symlink() and not p.name.endswith(("-wal", "-shm"))
    ]
    digests = {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    for db in (runner.ws / "state/dsr.db", runner.db):
        with closing(sqlite3.connect(db)) as conn:
            dump = "\n".join(conn.iterdump())
        digests[f"{db} (rows)"] = hashlib.sha256(dump.encode()).hexdigest()
        digests.pop(str(db), None)  # its bytes may move (a checkpoint) while its rows stay
    return digests


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Runner:
    template = build_template(tmp_path_factory.mktemp("template"))
    runner = copy_of(template, tmp_path_factory.mktemp("bad"))
    runner.converge()
    saved = runner.dsr("plan", "--out", str(runner.ws / "base-plan.json"))
    assert saved.exit_code == 0, saved.output
    return runner


def write_case(runner: Runner, case: Case, target: Path, content: bytes | None) -> None:
    if case.link is not None:
        target.symlink_to(case.link)
    elif case.copy is not None:
        target.write_bytes((runner.ws / case.copy).read_bytes())
    else:
        base = runner.ws / "base-plan.json" if case.path == PLAN else target
        if content is None:
            content = case.content(base.read_text() if base.exists() else "")
        target.write_bytes(content)
    runner.placed.add(target)


def run_case(runner: Runner, case: Case, content: bytes | None = None) -> list[str]:
    """Writes the case's file, runs its command, puts everything back; the output lines."""
    before = snapshot(runner)
    target = runner.ws / case.path if case.path else None
    original = target.read_bytes() if target is not None and target.exists() else None
    try:
        if target is not None:
            write_case(runner, case, target, content)
        result = runner.dsr(*case.args, input=case.input)
    finally:
        if target is not None and original is None:
            target.unlink()
        elif target is not None and original is not None:
            target.write_bytes(original)
    lines = Runner.failed_cleanly(result)
    errors = [x for x in lines if x.startswith(("error:", "Error:"))]
    if case.usage:
        assert lines[0].startswith("Usage:") and len(errors) == 1 and len(lines) == 3, lines
    else:
        assert len(lines) == case.lines == len(errors), f"{case.name}: {lines[:5]}"
    line = errors[0]
    if case.path is None:  # a command-line mistake: no file to name
        pass
    elif case.names == "line":
        shown = case.copy or case.path  # two files with one id: the first is named
        assert re.search(rf"({re.escape(shown)}|{re.escape(case.path)}):\d+", line), line
    elif case.names == "file":
        assert f"{case.path}:" in line, line
    assert snapshot(runner) == before, f"{case.name}: something changed"
    return lines


@pytest.mark.fault("bad input, by hand: exit 1, one line, file:line, no traceback, no change")
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_hand_written_bad_input(runner: Runner, fault: Fault, case: Case) -> None:
    run_case(runner, case)
    fault.tried(
        detail="YAML, types, fields, dates, sizes, depth, aliases, tags, plans, CLI; one line "
        "each but an empty request file (one per missing key) and 3 click usage errors"
    )


# -- generated ----------------------------------------------------------------------------------

# A value that is wrong for every field it replaces (each field below wants something else).
WRONG = st.one_of(
    st.integers(min_value=-(10**18), max_value=10**18),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), min_size=1, max_size=2),
    st.booleans(),
    st.none(),
)
REQUEST_FIELDS = ("id", "type", "subject", "received", "requested_by", "systems")
OUT_OF_RANGE = st.one_of(st.integers(max_value=0), st.integers(min_value=3651, max_value=10**30))
FAR_DATES = st.one_of(st.dates(max_value=date(1989, 12, 31)), st.dates(min_value=date(2200, 1, 1)))


def field_value(field: str) -> st.SearchStrategy[object]:
    if field in ("id", "requested_by"):
        return st.one_of(
            st.integers(), st.lists(st.integers(), min_size=1, max_size=2), st.booleans()
        )
    if field == "received":
        return st.one_of(FAR_DATES, st.integers(), st.booleans())
    if field == "subject":  # a mapping would be the right type, with every key wrong in it
        return st.one_of(st.integers(), st.text(max_size=8), st.lists(st.integers(), max_size=2))
    return WRONG


MUTATIONS = st.one_of(
    st.tuples(st.just("unknown field"), st.from_regex(r"\Ax_[a-z]{1,8}\Z"), WRONG),
    st.tuples(st.just("drop"), st.sampled_from(REQUEST_FIELDS), st.none()),
    st.sampled_from(REQUEST_FIELDS).flatmap(
        lambda f: st.tuples(st.just("replace"), st.just(f), field_value(f))
    ),
    st.tuples(st.just("expire_after_days"), st.just("exports"), OUT_OF_RANGE),
)


def mutate(runner: Runner, mutation: tuple[str, str, object]) -> tuple[str, bytes]:
    kind, field, value = mutation
    if kind == "expire_after_days":
        settings = yaml.safe_load((runner.ws / SETTINGS).read_text())
        settings["exports"]["expire_after_days"] = value
        return SETTINGS, yaml.safe_dump(settings).encode()
    data = yaml.safe_load((runner.ws / REQ).read_text())
    if kind == "unknown field":
        data[field] = value
    elif kind == "drop":
        data.pop(field)
    else:
        data[field] = value
    return REQ, yaml.safe_dump(data, allow_unicode=True).encode()


@pytest.mark.fault("bad input, generated (hypothesis mutations of valid request and settings)")
def test_generated_bad_inputs(runner: Runner, fault: Fault) -> None:
    @settings(
        max_examples=GENERATED,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(MUTATIONS)
    def check(mutation: tuple[str, str, object]) -> None:
        path, content = mutate(runner, mutation)
        run_case(runner, Case(f"generated {mutation[0]} {mutation[1]}", path, text("")), content)
        fault.tried()

    check()
    fault.tried(
        0, detail="unknown fields, dropped and mistyped fields, dates and days out of range"
    )
