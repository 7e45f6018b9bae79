"""Masking strategies: what a masked value is, and how to tell a value is already masked.

Pure functions. `hash` is keyed (the identity key), so equal inputs give equal outputs and
unique columns stay unique, while the original cannot be recovered without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

from reconciler.desired.model import MaskStrategy
from reconciler.privacy.identity import IdentityKey

REDACTED = "[redacted]"
HASH_PREFIX = "h:"
HASH_LENGTH = len(HASH_PREFIX) + 40
_HASHED = re.compile(r"h:[0-9a-f]{40}")


def mask_value(strategy: MaskStrategy, value: Any, key: IdentityKey) -> Any:
    if strategy is MaskStrategy.NULL:
        return None
    if strategy is MaskStrategy.REDACT:
        return REDACTED
    if value is None or is_masked(strategy, value):
        return value
    digest = hmac.new(key.secret, b"mask:" + str(value).encode(), hashlib.sha256).hexdigest()
    return HASH_PREFIX + digest[:40]


def is_masked(strategy: MaskStrategy, value: Any) -> bool:
    if strategy is MaskStrategy.NULL:
        return value is None
    if strategy is MaskStrategy.REDACT:
        return value == REDACTED or value is None
    return value is None or (isinstance(value, str) and bool(_HASHED.fullmatch(value)))


def min_length(strategy: MaskStrategy) -> int:
    """The shortest string column that can hold the masked value."""
    return {MaskStrategy.NULL: 0, MaskStrategy.REDACT: len(REDACTED)}.get(strategy, HASH_LENGTH)
