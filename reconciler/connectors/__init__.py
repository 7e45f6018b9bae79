"""Connectors: how dsr reads and changes a system. One Protocol, one SQL implementation.

The planner never sees a connector; commands open them, the observer and executor use them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from reconciler.model import PermissionsMap, System


class Connector(Protocol):
    system: str

    def read_permissions(self, mapping: PermissionsMap) -> frozenset[tuple[str, str]]: ...

    def grant_role(self, mapping: PermissionsMap, user: str, role: str) -> int: ...

    def revoke_role(self, mapping: PermissionsMap, user: str, role: str) -> int: ...

    def remove_user(self, mapping: PermissionsMap, user: str) -> int: ...

    def close(self) -> None: ...


def connect(system: System, workspace: Path) -> Connector:
    from reconciler.connectors.sql import SqlConnector, resolve_url

    return SqlConnector(system.name, resolve_url(system, workspace))
