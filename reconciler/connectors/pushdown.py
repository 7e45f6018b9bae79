"""Identity matching pushed down to the database: the WHERE clause that keeps, of an identity
table, only the rows whose keyed hash a subject holds, so that only they leave the server.

HMAC-SHA256 is `sha256(opad || sha256(ipad || message))`; the 64-byte pads are derived from
the key in Python (`privacy.identity.pads`) and bound as parameters, the database computes
the rest with its own SHA-256 (PostgreSQL 11+ `sha256(bytea)`, MariaDB 10.0.5+ and MySQL 8
`SHA2(..., 256)`). The clause is a filter, never the judge: `observe/match.py` hashes every
row it returns again, in Python, and decides which request it belongs to.

So the filter may return more rows than match, never fewer. The normalisation `dsr` applies
(`privacy.identity._normal`: Unicode strip() and lower(), the regex `\\D`) is reproduced in
SQL only on values of printable ASCII, where SQL and Python agree whatever the collation
(lower-casing in the "C" or `ascii_bin` collation, trimming spaces, removing non-digits);
a value holding anything else (an "É", a tab, a no-break space, an Arabic-Indic digit) is
returned as it is, and matched in Python. Such values are rare in identity columns.

Which databases push down by default (`match: auto`) is decided in `observe/method.py`; this
module only builds the clause, and never logs it: the pads are the key in another form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from reconciler.privacy.identity import Pads

# A regex for a character outside printable ASCII: a value holding one is left to Python.
# (Not `^[ -~]*$`: in MariaDB's PCRE, `$` also matches before a final newline.)
NOT_PRINTABLE_ASCII = "[^ -~]"
NOT_DIGIT = "[^0-9]"


@dataclass(frozen=True, slots=True)
class KeyDigests:
    """One key's pads, and the raw digests under that key that some subject holds."""

    pads: Pads
    digests: frozenset[bytes]

    def __repr__(self) -> str:
        return f"KeyDigests(pads=***, digests={len(self.digests)})"


@dataclass(frozen=True, slots=True)
class IdentityFilter:
    """Rows whose `column` (an identity of type `kind`, text or integers: integers are
    hashed as their decimal text, as Python's `str()` writes them) hashes, under one of
    `keys`, to one of that key's digests."""

    column: str
    kind: str
    keys: tuple[KeyDigests, ...]


@dataclass(frozen=True, slots=True)
class SqlHashing:
    """Whether a database can compute the keyed hash itself.

    `database`: its name and version, for messages. `unable`: why it cannot (None: it can).
    `key_in_statement`: its driver writes bound parameters into the statement's text
    (PyMySQL does), where other sessions may see them (SHOW PROCESSLIST, the general log)."""

    database: str
    unable: str | None = None
    key_in_statement: bool = False


def where_matching(
    dialect: str, table: sa.TableClause, filters: Sequence[IdentityFilter]
) -> sa.ColumnElement[bool]:
    """The clause: a row is kept when any filter's column matches, or may match (holds a
    character outside printable ASCII). `dialect`: SQLAlchemy's name of the database,
    postgresql, mysql or mariadb."""
    build = _postgresql if dialect == "postgresql" else _mysql
    parts = [build(table.c[f.column], f) for f in filters]
    return sa.or_(*parts) if parts else sa.false()


def _postgresql(column: Any, f: IdentityFilter) -> sa.ColumnElement[bool]:
    from sqlalchemy.dialects import postgresql  # here: a SQLite workspace never loads it

    text = sa.cast(column, sa.Text)
    unplain = sa.collate(text, "C").op("~", is_comparison=True)(
        sa.literal(NOT_PRINTABLE_ASCII, sa.Text)
    )
    normal: sa.ColumnElement[str]
    if f.kind == "email":
        normal = sa.func.lower(sa.collate(sa.func.btrim(text), "C"), type_=sa.Text)
    elif f.kind == "phone":
        digits = sa.func.regexp_replace(text, NOT_DIGIT, "", "g", type_=sa.Text)
        normal = sa.literal("+", sa.Text).op("||", return_type=sa.Text)(digits)
    else:
        normal = sa.func.btrim(text, type_=sa.Text)
    prefixed = sa.literal(f"{f.kind}:", sa.Text).op("||", return_type=sa.Text)(normal)
    message = sa.func.convert_to(prefixed, "UTF8", type_=sa.LargeBinary)
    matches = []
    for k in f.keys:
        inner = sa.func.sha256(_concat_bytes(_pad(k.pads.inner), message), type_=sa.LargeBinary)
        outer = sa.func.sha256(_concat_bytes(_pad(k.pads.outer), inner), type_=sa.LargeBinary)
        wanted = sa.bindparam(None, sorted(k.digests), type_=postgresql.ARRAY(sa.LargeBinary))
        matches.append(outer == sa.any_(wanted))
    return sa.or_(unplain, *matches)


def _concat_bytes(left: Any, right: Any) -> Any:
    return left.op("||", return_type=sa.LargeBinary)(right)


def _pad(block: bytes) -> sa.BindParameter[bytes]:
    return sa.bindparam(None, block, type_=sa.LargeBinary)


def _mysql(column: Any, f: IdentityFilter) -> sa.ColumnElement[bool]:
    from sqlalchemy.dialects import mysql  # here: a SQLite workspace never loads it

    # The test of plainness reads the value as utf8mb4 with a binary collation, so that a
    # case-insensitive collation cannot let a "K" (Kelvin sign) pass for a "k"; the
    # normalisation reads it as ascii_bin, whose LOWER() maps A-Z only (a Turkish collation
    # would lower "I" to a dotless i).
    as_utf8 = sa.collate(sa.cast(column, mysql.CHAR(charset="utf8mb4")), "utf8mb4_bin")
    unplain = as_utf8.op("REGEXP", is_comparison=True)(sa.literal(NOT_PRINTABLE_ASCII))
    text = sa.collate(sa.cast(column, mysql.CHAR(charset="ascii")), "ascii_bin")
    normal: sa.ColumnElement[str]
    if f.kind == "email":
        normal = sa.func.lower(sa.func.trim(text))
    elif f.kind == "phone":
        normal = sa.func.concat("+", sa.func.regexp_replace(text, NOT_DIGIT, ""))
    else:
        normal = sa.func.trim(text)
    message = sa.func.concat(sa.literal(f"{f.kind}:"), normal)
    matches = []
    for k in f.keys:
        inner = sa.func.unhex(sa.func.sha2(sa.func.concat(_pad(k.pads.inner), message), 256))
        outer = sa.func.unhex(sa.func.sha2(sa.func.concat(_pad(k.pads.outer), inner), 256))
        wanted = sa.bindparam(None, sorted(k.digests), type_=sa.LargeBinary, expanding=True)
        matches.append(outer.in_(wanted))
    return sa.or_(unplain, *matches)
