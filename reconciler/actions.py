"""The closed set of things a plan can ask the executor to do.

Adding a member means teaching the planner to produce it, the executor to carry it out,
the renderer to show it and `schemas/plan.schema.json` to accept it; tests parametrise over
every member so a forgotten one fails.
"""

from __future__ import annotations

from enum import Enum


class Action(Enum):
    GRANT_ROLE = "grant_role"
    REVOKE_ROLE = "revoke_role"
    REMOVE_USER = "remove_user"

    @property
    def verb(self) -> str:
        return _VERBS[self]


_VERBS = {
    Action.GRANT_ROLE: "grant",
    Action.REVOKE_ROLE: "revoke",
    Action.REMOVE_USER: "remove",
}
