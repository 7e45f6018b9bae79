"""The plan: an explicit, serialisable list of changes, and whether it may be applied.

Pure data. The executor acts on `Change.action` and `Change.params`; `Change.reason` says why
the planner asked (a closed set, for reports and tests) and `Change.detail` says it in words,
for people. Neither is read by the executor. Only `planfile.py` knows how a plan is written to
disk.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from reconciler.desired.model import RequestType, SubjectKind, digest_of
from reconciler.plan.actions import Action, Reason
from reconciler.store.records import RequestState

FORMAT_VERSION = 2


@dataclass(frozen=True, slots=True)
class Retained:
    """Rows of a subject that erasure keeps (as they are, or masked), and why."""

    system: str
    table: str
    rows: int
    reason: str
    masked: bool = False


@dataclass(frozen=True, slots=True)
class TableCount:
    """A table and how many of the subject's rows it holds (an export includes it; a source's
    owner must delete them)."""

    system: str
    table: str
    rows: int


@dataclass(frozen=True, slots=True)
class Params:
    """What the executor needs to carry out a change beyond its action, system and request.

    Each action reads its own fields: `user` and `role` the permission changes; `table` (and
    `user_data`, for a platform's user-data table) delete, mask and purge; `tables` verify and
    await (`awaited`: the rows the owner must delete); `systems`, `retained`, `reingested`,
    `due` and `no_data_found` complete; `exports` and `no_data_found` build_export;
    `delivered` expire_export.
    """

    user: str | None = None
    role: str | None = None
    table: str | None = None
    user_data: bool = False
    tables: tuple[str, ...] = ()
    systems: tuple[str, ...] = ()
    retained: tuple[Retained, ...] = ()
    reingested: bool = False
    exports: tuple[TableCount, ...] = ()
    awaited: tuple[TableCount, ...] = ()
    due: str | None = None  # ISO date
    no_data_found: bool = False
    delivered: bool = False


@dataclass(frozen=True, slots=True)
class Change:
    id: str  # deterministic: the same desired + observed state gives the same id
    action: Action
    system: str
    target: str  # what it acts on, for display and audit (no raw personal data)
    reason: Reason
    detail: str  # the reason in words, for people
    params: Params = Params()
    request: str | None = None
    rows: int = 0
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RequestView:
    """One request as the plan sees it: its deadline and state, for people and for status."""

    id: str
    type: RequestType
    subject_kind: SubjectKind | None  # None: unknown, the request file is gone
    state: RequestState
    due: str | None = None  # ISO date; None for a tombstone whose request file is gone
    days_left: int | None = None
    note: str | None = None
    reingested: bool = False
    retained: tuple[Retained, ...] = ()

    @property
    def overdue(self) -> bool:
        return self.days_left is not None and self.days_left < 0 and not self.state.finished


@dataclass(slots=True)
class PlanPart:
    """What one part of the planner (permissions, erasures, exports) contributes to a plan."""

    changes: list[Change] = field(default_factory=list)
    views: list[RequestView] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Plan:
    workspace: str
    created_at: str  # ISO 8601, UTC; from the caller's clock, never read here
    desired_digest: str
    observed_digests: dict[str, str]
    changes: tuple[Change, ...] = ()
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()  # reasons the plan is refused
    requests: tuple[RequestView, ...] = ()
    format_version: int = FORMAT_VERSION

    @property
    def waiting(self) -> frozenset[str]:
        """Ids of the changes that wait on a source's owner: each `await_source`, and every
        change that depends on one. Apply reports them; they are not changes it makes."""
        found: set[str] = set()
        for c in self.changes:  # a change comes after every change it depends on
            if c.action is Action.AWAIT_SOURCE or any(d in found for d in c.depends_on):
                found.add(c.id)
        return frozenset(found)

    @property
    def has_changes(self) -> bool:
        """Apply would change something now (waiting on someone else is not a change)."""
        waiting = self.waiting
        return any(c.id not in waiting for c in self.changes)

    @property
    def can_apply(self) -> bool:
        return not self.errors

    @property
    def blocked(self) -> tuple[RequestView, ...]:
        """Requests the plan cannot move (a system unreadable, a conflict to resolve): the
        rest of the plan applies, but the run is not a success."""
        return tuple(v for v in self.requests if v.state is RequestState.BLOCKED)

    @property
    def id(self) -> str:
        """Identifies everything the plan says (not when it was made): any edit to a saved
        plan's changes, parameters, dependencies, warnings, errors or requests changes it."""
        content = dataclasses.asdict(self)
        del content["created_at"]
        return digest_of(content)[7:23]
