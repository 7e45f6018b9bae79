"""Identity normalisation and keyed hashing.

`hmac-sha256:<key id>:<hex>` over the normalised value is the only form in which an
identifier is ever written by dsr. Pure functions: the key is passed in, never read here
from the environment (`workspace.identity_key` does that, at the edge).

HMAC-SHA256 is `sha256(opad_key || sha256(ipad_key || message))` (RFC 2104). `pads` gives
the two 64-byte blocks, for a database that computes the hash itself (observe's pushdown);
`RawHasher` absorbs them into SHA-256 states once per key, for matching a stream of values
in Python. The pads are the key in another form: they are secret like it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass

from reconciler.privacy.withhold import Sensitive

_NOT_DIGIT = re.compile(r"\D")


@dataclass(frozen=True, slots=True)
class IdentityKey:
    key_id: str
    secret: bytes
    development: bool  # the demo's published key: fine for the demo, never for real data
    # Keys this one replaced, still used to match requests and tombstones hashed with them
    # (dsr.yaml identity.previous) until they are retired; new hashes use this key only.
    previous: tuple[IdentityKey, ...] = ()

    def __repr__(self) -> str:
        return f"IdentityKey(key_id={self.key_id!r}, secret=***, development={self.development})"


def matching_hashes(kind: str, value: str, key: IdentityKey) -> list[str]:
    """The hashes a request may hold for `value`: under the current key and every previous
    one (a request filed before a key rotation keeps matching)."""
    return [hash_identity(kind, value, k) for k in (key, *key.previous)]


def hash_identity(kind: str, value: str, key: IdentityKey) -> str:
    raw = value.reveal() if isinstance(value, Sensitive) else value
    digest = _keyed(key.secret).copy()  # the key's HMAC state is computed once, not per row
    digest.update(f"{kind}:{_normal(kind, raw)}".encode())
    return f"hmac-sha256:{key.key_id}:{digest.hexdigest()}"


@functools.lru_cache(maxsize=8)
def _keyed(secret: bytes) -> hmac.HMAC:
    return hmac.new(secret, digestmod=hashlib.sha256)


def _normal(kind: str, raw: str) -> str:
    """E-mail: trimmed and lower-cased. Phone: digits with a leading `+`. Others: trimmed."""
    return _normaliser(kind)(raw)


def _normaliser(kind: str) -> Callable[[str], str]:
    if kind == "email":
        return lambda raw: raw.strip().lower()
    if kind == "phone":
        return lambda raw: "+" + _NOT_DIGIT.sub("", raw)
    return str.strip


# Characters a value may hold for a database to normalise it exactly as `_normal` does:
# printable ASCII. Python's strip() and lower() and the regex \D act on Unicode (tabs, NBSP,
# "É", Arabic-Indic digits); SQL's trim, lower and regexes do not, or depend on a collation.
PLAIN = re.compile(r"[ -~]*")


def is_plain(value: str) -> bool:
    """Whether `value` is printable ASCII only: the values a database may hash itself."""
    return PLAIN.fullmatch(value) is not None


BLOCK = 64  # SHA-256's block size, in bytes


@dataclass(frozen=True, slots=True)
class Pads:
    """The inner and outer HMAC-SHA256 blocks of a key. Secret: never printed or logged."""

    inner: bytes
    outer: bytes

    def __repr__(self) -> str:
        return "Pads(***)"


def pads(secret: bytes) -> Pads:
    """The key padded to SHA-256's block (hashed first when longer), XOR 0x36 and XOR 0x5c."""
    block = hashlib.sha256(secret).digest() if len(secret) > BLOCK else secret
    block = block.ljust(BLOCK, b"\0")
    return Pads(bytes(b ^ 0x36 for b in block), bytes(b ^ 0x5C for b in block))


def split_hash(value: str) -> tuple[str, bytes] | None:
    """(key id, raw digest) of `hmac-sha256:<key id>:<hex>`; None when it is not that form."""
    scheme, _, rest = value.partition(":")
    key_id, _, hexdigest = rest.rpartition(":")
    if scheme != "hmac-sha256" or not key_id or len(hexdigest) != 64:
        return None
    if hexdigest != hexdigest.lower():  # never written so: it matches nothing, as before
        return None
    try:
        return key_id, bytes.fromhex(hexdigest)
    except ValueError:
        return None


class RawHasher:
    """The raw HMAC-SHA256 digest of normalised values under one key, fast: the inner and
    outer SHA-256 states are computed once, and each value costs two `copy()`s and two
    short updates. Holds nothing that grows with the values hashed."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, secret: bytes) -> None:
        p = pads(secret)
        self._inner = hashlib.sha256(p.inner)
        self._outer = hashlib.sha256(p.outer)

    def __repr__(self) -> str:
        return "RawHasher(***)"

    def digest(self, kind: str, value: str) -> bytes:
        return self.of(kind)(value)

    def of(self, kind: str) -> Callable[[str], bytes]:
        """The digest function for identities of type `kind` (the loop of a table scan)."""
        prefix = f"{kind}:"
        normal = _normaliser(kind)
        inner_state, outer_state = self._inner, self._outer

        def digest(value: str) -> bytes:
            inner = inner_state.copy()
            inner.update((prefix + normal(value)).encode())
            outer = outer_state.copy()
            outer.update(inner.digest())
            return outer.digest()

        return digest


def derive(key: IdentityKey, purpose: str) -> IdentityKey:
    """A key for another purpose, derived from `key` (HMAC of the purpose's name): one secret
    to keep, and what one purpose hashes never doubles as another's."""
    secret = hmac.new(key.secret, f"dsr:{purpose}".encode(), hashlib.sha256).digest()
    return IdentityKey(f"{key.key_id}/{purpose}", secret, key.development)
