"""The plan: an explicit, serialisable list of changes, and whether it may be applied.

Pure data. The executor acts on `Change.action` and `Change.params`; `reason` is for people
and is never branched on. Only `planfile.py` knows how a plan is written to disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from reconciler.desired.model import digest_of
from reconciler.plan.actions import Action

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Change:
    id: str  # deterministic: the same desired + observed state gives the same id
    action: Action
    system: str
    target: str  # what it acts on, for display and audit (no raw personal data)
    reason: str
    params: dict[str, str] = field(default_factory=dict)  # what the executor needs
    request: str | None = None
    rows: int = 0
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Retained:
    """Rows of a subject that erasure keeps (as they are, or masked), and why."""

    system: str
    table: str
    rows: int
    reason: str
    masked: bool = False


@dataclass(frozen=True, slots=True)
class RequestView:
    """One request as the plan sees it: its deadline and state, for people and for status."""

    id: str
    type: str
    subject_kind: str
    state: str  # pending | waiting | blocked | held | completed | cancelled
    due: str | None = None  # ISO date; None for a tombstone whose request file is gone
    days_left: int | None = None
    note: str | None = None
    reingested: bool = False
    retained: tuple[Retained, ...] = ()

    @property
    def overdue(self) -> bool:
        return (
            self.days_left is not None
            and self.days_left < 0
            and self.state
            not in (
                "completed",
                "cancelled",
            )
        )


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
    def has_changes(self) -> bool:
        return bool(self.changes)

    @property
    def can_apply(self) -> bool:
        return not self.errors

    @property
    def blocked(self) -> tuple[RequestView, ...]:
        """Requests the plan cannot move (a system unreadable, a conflict to resolve): the
        rest of the plan applies, but the run is not a success."""
        return tuple(v for v in self.requests if v.state == "blocked")

    @property
    def id(self) -> str:
        """Identifies everything the plan says (not when it was made): any edit to a saved
        plan's changes, parameters, dependencies, warnings or errors changes its id."""
        return digest_of(
            {
                "desired": self.desired_digest,
                "observed": self.observed_digests,
                "changes": [
                    [
                        c.id,
                        c.action.value,
                        c.system,
                        c.target,
                        c.reason,
                        sorted(c.params.items()),
                        c.request,
                        c.rows,
                        list(c.depends_on),
                    ]
                    for c in self.changes
                ],
                "warnings": list(self.warnings),
                "errors": list(self.errors),
                "requests": [repr(v) for v in self.requests],
            }
        )[7:23]
