"""How each identity table is matched: pushed down to the database, or streamed. Pure.

Pushdown (`connectors/pushdown.py`): the database computes every value's keyed hash and
sends only the rows that may match. Streaming: every identity value is read and hashed in
Python. Both find the same rows (`observe/match.py` judges every row either way); pushdown
moves far fewer of them over the network.

`match: auto` (systems.yaml) pushes down on PostgreSQL only. HMAC needs the key's pads in
the statement. psycopg binds parameters on the server (the extended protocol), so other
sessions see `$1` in pg_stat_activity, not the pads; the server's own log records bound
values only when its administrator turns statement logging on (log_statement, or
log_min_duration_statement with log_parameter_max_length). PyMySQL, MariaDB's and MySQL's
driver, writes parameters into the statement text: SHOW PROCESSLIST and the general log
would show the pads, which are the identity key in another form, to every user with the
PROCESS privilege or access to the log. So MariaDB and MySQL push down only when a system
asks for it (`match: pushdown`), where those users are trusted with the key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from reconciler.connectors.pushdown import SqlHashing
from reconciler.connectors.reflection import ColumnInfo
from reconciler.desired.model import MatchMode, Table

PUSHABLE_TYPES = ("string", "integer")  # column kinds whose text SQL and Python write alike


class Method(StrEnum):
    PUSHDOWN = "pushdown"
    STREAM = "stream"


@dataclass(frozen=True, slots=True)
class HowMatched:
    """How one identity table is matched, and why when `auto` chose to stream. `problem`:
    the data map asked for pushdown where it cannot be done (an error, not a fallback)."""

    method: Method
    why: str = ""
    problem: str | None = None

    def __str__(self) -> str:
        return f"{self.method} ({self.why})" if self.why else str(self.method)


def how_matched(
    mode: MatchMode,
    hashing: SqlHashing | None,
    spec: Table,
    columns: Mapping[str, ColumnInfo] | None = None,
) -> HowMatched:
    """How `spec` (an identity table) is matched on a system set to `mode` whose database
    hashes as `hashing` says (None: not asked, since `mode` is stream); `columns`: the
    table's reflected columns, when known."""
    if mode is MatchMode.STREAM or hashing is None:
        return HowMatched(Method.STREAM, "match: stream")
    if hashing.unable:
        if mode is MatchMode.PUSHDOWN:
            problem = f"match: pushdown, but {hashing.unable}: set match to auto or stream"
            return HowMatched(Method.STREAM, hashing.unable, problem)
        return HowMatched(Method.STREAM, hashing.unable)
    if hashing.key_in_statement and mode is MatchMode.AUTO:
        return HowMatched(
            Method.STREAM,
            f"on {hashing.database} the key's pads would show in SHOW PROCESSLIST; "
            "match: pushdown accepts that",
        )
    for column in sorted(set(spec.identities.values())):
        info = (columns or {}).get(column)
        if info is not None and info.type not in PUSHABLE_TYPES:
            return HowMatched(Method.STREAM, f"column {column} holds {info.type} values")
    return HowMatched(Method.PUSHDOWN)
