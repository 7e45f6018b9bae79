"""The closed sets a plan is made of: what a change does (`Action`) and why (`Reason`).

Adding an `Action` means teaching the planner to produce it, the executor to carry it out
(`apply/handlers.py`), the renderer to show it (`render/plan.py`) and
`schemas/plan.schema.json` to accept it; `tests/plan/test_actions.py` fails for a member that
lacks a handler or a renderer. A `Reason` is why the planner asked for a change; the executor
never reads it (what it needs is in `Change.params`).
"""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
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

    @property
    def per_request(self) -> bool:
        """Done for one request (permission changes and refreshes serve everyone)."""
        return self not in (*PERMISSION_ACTIONS, Action.REFRESH)


class Reason(StrEnum):
    """Why the planner asked for a change (`Change.detail` says it in words)."""

    IN_ACCESS = "in_access"  # access.yaml gives the role
    MANUAL_GRANT = "manual_grant"  # the platform holds a role access.yaml does not give
    NOT_IN_ACCESS = "not_in_access"  # the platform holds a user access.yaml does not list
    ERASE_AT_SOURCE = "erase_at_source"
    MASK_RETAINED = "mask_retained"  # rows kept under an obligation, their personal data masked
    USER_DATA = "user_data"  # data the platform created about one of its users
    REINGESTED = "reingested"  # a completed erasure's subject came back
    SOURCE_NOT_WRITABLE = "source_not_writable"
    UPSTREAM_CHANGED = "upstream_changed"  # a system it ingests was erased in this run
    HOLDS_ERASED = "holds_erased"  # it still holds subjects whose sources are clean
    PROVE_ABSENT = "prove_absent"
    SYSTEM_LOGS = "system_logs"
    ALL_STEPS_DONE = "all_steps_done"
    APPROVED = "approved"  # an export's approval counts
    EXPIRED = "expired"  # an export package's time is up
    PACKAGE_DAMAGED = "package_damaged"  # a built package is missing, replaced or damaged
    DELIVERED = "delivered"  # the package reached the subject: it goes
    CANCELLED = "cancelled"


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
