"""Row changes carried out for many requests at once: every delete, mask and purge of one
table in one batch becomes one read of the rows still there and one write, chunked by the
connector (500 keys a statement), however many requests the batch holds.

Each request's change still gets its own result: the rows of its keys found in the table
(a row two requests share counts for the first, as it did when they ran one by one). Deleting
or masking the same keys again is harmless (deleted rows are gone; a masked row is matched as
masked and not planned again), so a batch cut short by a crash is simply planned and run again.
This module must not journal, audit or decide what to change: the executor does the first two,
the planner the third.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from reconciler.apply.context import ChangeResult, Context, Handled
from reconciler.connectors import Connector
from reconciler.desired.files import SYSTEMS_FILE
from reconciler.desired.model import System, Table
from reconciler.errors import DsrError
from reconciler.observe.model import Match, Observed
from reconciler.plan.actions import Action
from reconciler.plan.model import Change
from reconciler.privacy.masking import mask_value
from reconciler.store import Outcome

# What a batch handler gives back for each change: how it went, or why it failed.
Done = dict[str, Handled | DsrError]


def run_rows(action: Action, changes: Sequence[Change], ctx: Context) -> Done:
    """Carries out delete_rows, mask_rows or purge_logs changes, one group per system and
    table; when a group's write fails, its changes are carried out one by one, so that only
    those that fail on their own fail."""
    groups: dict[tuple[str, bool, str], list[Change]] = {}
    for c in changes:
        groups.setdefault((c.system, c.params.user_data, c.params.table or ""), []).append(c)
    done: Done = {}
    for group in groups.values():
        try:
            done |= _run_group(action, group, ctx)
        except DsrError as exc:
            if len(group) == 1:
                done[group[0].id] = exc
                continue
            # The group's write was rolled back: one request's rows may be what the database
            # refused (a trigger, a lock), so each request is tried on its own, and only
            # the one refused fails.
            for c in group:
                try:
                    done |= _run_group(action, [c], ctx)
                except DsrError as own:
                    done[c.id] = own
    return done


def _run_group(action: Action, group: list[Change], ctx: Context) -> Done:
    table, conn, key = table_of(group[0], ctx)
    # Logs are read again: the refreshes and deletes before this may have written some.
    observed: Observed = ctx.fresh() if action is Action.PURGE_LOGS else ctx.observed
    wanted = {c.id: sorted(match_of(observed, c).pending, key=repr) for c in group}
    keys = list(dict.fromkeys(k for c in group for k in wanted[c.id]))
    cols = sorted(table.mask) if action is Action.MASK_ROWS else []
    present = conn.select_where_in(table.name, [key, *cols], key, keys) if keys else []
    if present and cols:
        updates = [
            {
                key: row[0],
                **{
                    c: mask_value(table.mask[c], v, ctx.key)
                    for c, v in zip(cols, row[1:], strict=True)
                },
            }
            for row in present
        ]
        conn.update_by_key(table.name, key, updates)
    elif present:
        conn.delete_where_in(table.name, key, [row[0] for row in present])
    found = {row[0] for row in present}
    details: dict[str, Any] = {"table": table.name}
    if action is Action.MASK_ROWS:
        details["columns"] = cols
    done: Done = {}
    for c in group:
        mine = found.intersection(wanted[c.id])
        found -= mine
        done[c.id] = (ChangeResult(c, Outcome.SUCCEEDED, len(mine)), dict(details))
    return done


def system_of(change: Change, ctx: Context) -> tuple[System, Connector]:
    system = ctx.desired.systems.get(change.system)
    if system is None:
        raise DsrError(f"system {change.system} is no longer in {SYSTEMS_FILE}")
    return system, ctx.connectors[change.system]


def table_of(change: Change, ctx: Context) -> tuple[Table, Connector, str]:
    system, conn = system_of(change, ctx)
    name = change.params.table
    assert name is not None
    table = (system.user_data if change.params.user_data else system.tables)[name]
    assert table.primary_key
    return table, conn, table.primary_key


def match_of(observed: Observed, change: Change) -> Match:
    obs = observed.systems.get(change.system)
    if obs is None or obs.error:
        raise DsrError(f"{change.system} could not be read: {obs.error if obs else 'not observed'}")
    return obs.matches.get((change.request or "", change.params.table or ""), Match())
