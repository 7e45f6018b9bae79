"""Golden cases of observing's pure step (`observe/match.py`): rows in, matches out.

Each file in cases/ is one case (see golden.py for the format); add a file to add a case.
No database: the driver in golden.py runs the pure functions over whole tables, parents
first, as `observe/collect.py::_match_tables` does over the rows its queries return.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.observe.match import Linked

from . import golden

CASES = golden.case_paths()


def _params() -> list[object]:
    out = []
    for path in CASES:
        reason = golden.load(path).get("xfail")
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(path, id=path.stem, marks=marks))
    return out


@pytest.mark.parametrize("path", _params())
def test_golden(path: Path) -> None:
    case = golden.load(path)
    assert golden.as_expected(golden.run(case)) == golden.expected(case)


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_matches_hold_keys_and_counts_only(path: Path) -> None:
    """What leaves the pure step is primary keys and counts: no raw identity, no hash."""
    case = golden.load(path)
    text = repr(golden.as_expected(golden.run(case)))
    for raw in golden.raw_identities(case):
        assert raw.strip() not in text
    assert "hmac-sha256" not in text


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_row_order_does_not_matter(path: Path) -> None:
    case = golden.load(path)
    reversed_rows = {t: list(reversed(rows)) for t, rows in case.get("rows", {}).items()}
    again = golden.run({**case, "rows": reversed_rows})
    assert golden.as_expected(again) == golden.as_expected(golden.run(case))


def test_linked_values_are_kept_once_per_common_form() -> None:
    """Children are queried with the raw values, once each; both forms find the requests."""
    linked = Linked()
    linked.add(7, "DSR-1")
    linked.add("7 ", "DSR-2")
    linked.add(8, "DSR-1")
    assert linked.raw == [7, 8]
    assert linked.requests("7") == {"DSR-1", "DSR-2"}
    assert linked.requests(None) == set()
    assert not Linked()
