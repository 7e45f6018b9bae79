"""How a plan is cut into batches: by dependency level and action within a run of batchable
changes; anything else alone, in place; the number of batches does not grow with requests."""

from __future__ import annotations

import pytest

from reconciler.apply.batches import batches
from reconciler.plan.actions import Action, Reason
from reconciler.plan.model import Change


def change(cid: str, action: Action, *depends_on: str) -> Change:
    return Change(cid, action, "crm", cid, Reason.ERASE_AT_SOURCE, "", depends_on=depends_on)


def erasure(r: int) -> list[Change]:
    """One request's changes as the planner orders them (children first)."""
    return [
        change(f"m{r}", Action.MASK_ROWS),
        change(f"d{r}", Action.DELETE_ROWS, f"m{r}"),
    ]


def plan(requests: int) -> list[Change]:
    erase = [c for r in range(requests) for c in erasure(r)]
    refresh = [change("refresh", Action.REFRESH)]
    rest = [
        c
        for r in range(requests)
        for c in (
            change(f"v{r}", Action.VERIFY, f"m{r}", f"d{r}", "refresh"),
            change(f"c{r}", Action.COMPLETE, f"v{r}"),
        )
    ]
    return [change("grant", Action.GRANT_ROLE), *erase, *refresh, *rest]


@pytest.mark.parametrize("requests", [1, 10, 100])
def test_batches_by_level_and_action(requests: int) -> None:
    cut = batches(plan(requests))
    ids = [[c.id for c in b] for b in cut]
    n = range(requests)
    assert ids == [
        ["grant"],
        [f"m{r}" for r in n],
        [f"d{r}" for r in n],
        ["refresh"],
        [f"v{r}" for r in n],
        [f"c{r}" for r in n],
    ]


def test_no_batch_holds_a_change_and_one_it_depends_on() -> None:
    changes = [
        change("a", Action.DELETE_ROWS),
        change("b", Action.DELETE_ROWS, "a"),
        change("c", Action.DELETE_ROWS),
        change("d", Action.MASK_ROWS, "b"),
        change("e", Action.AWAIT_SOURCE),
    ]
    cut = [[c.id for c in b] for b in batches(changes)]
    assert cut == [["a", "c"], ["e"], ["b"], ["d"]]
    done: set[str] = set()
    for b in batches(changes):
        assert all(set(c.depends_on) <= done for c in b)
        done |= {c.id for c in b}
