"""Observe the actual state of every system the desired state needs.

Queries go through connectors; turning rows into the observed model is pure. A system that
cannot be read is recorded with its error, not raised: the planner decides what that blocks.
"""

from __future__ import annotations

from collections.abc import Mapping

from reconciler.connectors import Connector
from reconciler.errors import ConnectorError
from reconciler.model import Desired, Observed, ObservedSystem


def observe(desired: Desired, connectors: Mapping[str, Connector]) -> Observed:
    systems: dict[str, ObservedSystem] = {}
    for name, system in sorted(desired.systems.items()):
        if system.permissions is None:
            continue  # nothing of this system is reconciled yet
        try:
            perms = connectors[name].read_permissions(system.permissions)
        except ConnectorError as exc:
            systems[name] = ObservedSystem(name, error=str(exc))
            continue
        systems[name] = ObservedSystem(name, permissions=perms)
    return Observed(systems)
