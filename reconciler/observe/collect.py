"""Observe the actual state of every system the desired state needs.

Queries go through connectors (`subjects.py` finds data subjects); turning rows into the
observed model is pure. A system that cannot be read is recorded with its error, not
raised: the planner decides what that blocks.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.connectors import Connector
from reconciler.desired.model import (
    Completed,
    Desired,
    ExportStatus,
    Observed,
    ObservedSystem,
    RefreshStatus,
)
from reconciler.errors import ConnectorError
from reconciler.observe.match import find_subjects, pending_subjects, users_in_access
from reconciler.privacy.identity import IdentityKey


def observe(
    desired: Desired,
    connectors: Mapping[str, Connector],
    key: IdentityKey,
    *,
    completed: Mapping[str, Completed] | None = None,
    refreshes: Mapping[str, RefreshStatus] | None = None,
    exports: Mapping[str, ExportStatus] | None = None,
) -> Observed:
    completed = dict(completed or {})
    exports = dict(exports or {})
    subjects = pending_subjects(desired, completed, exports)
    systems: dict[str, ObservedSystem] = {}
    for name, system in sorted(desired.systems.items()):
        perms = None
        error = None
        if system.permissions is not None:
            try:
                perms = connectors[name].read_permissions(system.permissions)
            except ConnectorError as exc:
                error = str(exc)
        findings = find_subjects(system, connectors[name], subjects, key)
        if system.permissions is None and findings.schema is None and not findings.error:
            continue  # nothing of this system is reconciled now
        systems[name] = ObservedSystem(
            name,
            permissions=perms,
            schema=findings.schema,
            matches=findings.matches,
            error=error or findings.error,
        )
    return Observed(
        systems,
        completed=completed,
        refreshes=dict(refreshes or {}),
        exports=exports,
        users_in_access=users_in_access(desired, key, completed),
    )
