"""The closed set of things a plan can ask the executor to do.

Adding a member means teaching the planner to produce it, the executor to carry it out,
the renderer to show it and `schemas/plan.schema.json` to accept it; tests parametrise over
every member so a forgotten one fails.
"""

from __future__ import annotations

from enum import Enum


class Action(Enum):
    # permissions on the platform
    GRANT_ROLE = "grant_role"
    REVOKE_ROLE = "revoke_role"
    REMOVE_USER = "remove_user"
    # erasure, in the order a request goes through them
    DELETE_ROWS = "delete_rows"  # at a writable source
    MASK_ROWS = "mask_rows"  # at a writable source; the rows are retained
    AWAIT_SOURCE = "await_source"  # a source dsr may not write: its owner must delete
    REFRESH = "refresh"  # a platform or downstream system, once per run
    VERIFY = "verify"  # the subject is absent from every mapped table
    PURGE_LOGS = "purge_logs"  # system-generated logs that mention the subject
    COMPLETE = "complete"  # the receipt in the audit log; the tombstone in the state store
    # exports
    BUILD_EXPORT = "build_export"  # the package, once the approval counts; exactly once
    EXPIRE_EXPORT = "expire_export"  # delete the package; the audit record stays

    @property
    def verb(self) -> str:
        return _VERBS[self]

    @property
    def writes(self) -> bool:
        """Changes data in a system (so later checks must look again)."""
        return self in _WRITES


PERMISSION_ACTIONS = (Action.GRANT_ROLE, Action.REVOKE_ROLE, Action.REMOVE_USER)

_VERBS = {
    Action.GRANT_ROLE: "grant",
    Action.REVOKE_ROLE: "revoke",
    Action.REMOVE_USER: "remove",
    Action.DELETE_ROWS: "delete",
    Action.MASK_ROWS: "mask",
    Action.AWAIT_SOURCE: "await",
    Action.REFRESH: "refresh",
    Action.VERIFY: "verify",
    Action.PURGE_LOGS: "purge",
    Action.COMPLETE: "complete",
    Action.BUILD_EXPORT: "build",
    Action.EXPIRE_EXPORT: "expire",
}
_WRITES = {
    Action.GRANT_ROLE,
    Action.REVOKE_ROLE,
    Action.REMOVE_USER,
    Action.DELETE_ROWS,
    Action.MASK_ROWS,
    Action.REFRESH,
    Action.PURGE_LOGS,
}
