"""How the executor cuts a plan into batches: pure, no I/O.

A run of consecutive changes whose actions batch (row changes, verifications, completions,
waits) is split by dependency level (a change comes after every change it depends on) and,
within a level, by action, in the order the plan first names each action; a batch never holds
a change and one it depends on. Any other change (permissions, refreshes, exports) is a batch
of its own, where the plan puts it. So the number of batches does not grow with the number of
requests: 1,000 erasures make as many batches as 10.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from reconciler.plan.actions import Action
from reconciler.plan.model import Change

# Carried out together per system and table (batched.py).
ROW_ACTIONS = frozenset({Action.DELETE_ROWS, Action.MASK_ROWS, Action.PURGE_LOGS})
BATCHED = ROW_ACTIONS | {Action.AWAIT_SOURCE, Action.VERIFY, Action.COMPLETE}


def batches(changes: Sequence[Change]) -> Iterator[list[Change]]:
    """The plan's changes, in batches, each in plan order."""
    window: list[Change] = []
    for change in changes:
        if change.action in BATCHED:
            window.append(change)
            continue
        yield from _levels(window)
        window = []
        yield [change]
    yield from _levels(window)


def _levels(window: list[Change]) -> Iterator[list[Change]]:
    level: dict[str, int] = {}
    groups: dict[tuple[int, Action], list[Change]] = {}
    for change in window:
        n = 1 + max((level[d] for d in change.depends_on if d in level), default=-1)
        level[change.id] = n
        groups.setdefault((n, change.action), []).append(change)
    # By level, then by the order in which the plan first names each action in that level.
    yield from (groups[k] for k in sorted(groups, key=lambda k: k[0]))
