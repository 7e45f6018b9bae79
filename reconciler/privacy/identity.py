"""Identity normalisation and keyed hashing.

`hmac-sha256:<key id>:<hex>` over the normalised value is the only form in which an
identifier is ever written by dsr. Pure functions: the key is passed in, never read here
from the environment (`workspace.identity_key` does that, at the edge).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
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
    if kind == "email":
        return raw.strip().lower()
    if kind == "phone":
        return "+" + _NOT_DIGIT.sub("", raw)
    return raw.strip()


def derive(key: IdentityKey, purpose: str) -> IdentityKey:
    """A key for another purpose, derived from `key` (HMAC of the purpose's name): one secret
    to keep, and what one purpose hashes never doubles as another's."""
    secret = hmac.new(key.secret, f"dsr:{purpose}".encode(), hashlib.sha256).digest()
    return IdentityKey(f"{key.key_id}/{purpose}", secret, key.development)
