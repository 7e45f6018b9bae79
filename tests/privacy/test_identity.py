"""Keyed hashing: the fast raw-digest path (precomputed HMAC states, used to stream identity
tables) agrees with `hash_identity` on every value and key; the pads a database is given
are RFC 2104's; secrets never show in a repr."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

from reconciler.connectors.pushdown import KeyDigests
from reconciler.observe.subjects import Subject, Wanted, subject_index
from reconciler.privacy.identity import (
    IdentityKey,
    RawHasher,
    hash_identity,
    is_plain,
    matching_hashes,
    pads,
    split_hash,
)

KINDS = st.sampled_from(["email", "phone", "customer_id"])
SECRETS = st.binary(min_size=1, max_size=130)  # shorter and longer than SHA-256's block


@given(kind=KINDS, value=st.text(), secret=SECRETS)
def test_raw_digest_is_the_keyed_hash(kind: str, value: str, secret: bytes) -> None:
    key = IdentityKey("k", secret, development=False)
    assert (
        hash_identity(kind, value, key)
        == f"hmac-sha256:k:{RawHasher(secret).digest(kind, value).hex()}"
    )


@given(secret=SECRETS, message=st.binary())
def test_pads_are_rfc_2104(secret: bytes, message: bytes) -> None:
    p = pads(secret)
    manual = hashlib.sha256(p.outer + hashlib.sha256(p.inner + message).digest()).digest()
    assert manual == hmac.new(secret, message, hashlib.sha256).digest()


@given(
    values=st.lists(st.tuples(KINDS, st.text(max_size=12)), max_size=8),
    probes=st.lists(st.tuples(KINDS, st.text(max_size=12)), max_size=8),
    old=st.booleans(),
)
def test_wanted_finds_what_the_subject_index_finds(
    values: list[tuple[str, str]], probes: list[tuple[str, str]], old: bool
) -> None:
    previous = IdentityKey("k0", b"old", development=False)
    key = IdentityKey("k1", b"new", development=False, previous=(previous,))
    subjects = [
        Subject(
            f"R{i}", ((kind, hash_identity(kind, v, previous if old and i % 2 else key)),), None
        )
        for i, (kind, v) in enumerate(values)
    ]
    index = subject_index(subjects)
    wanted = Wanted(subjects, key)
    for kind, v in [*values, *probes]:
        expected: set[str] = set()
        for h in matching_hashes(kind, v, key):
            expected |= index.get((kind, h), set())
        assert wanted.requests(kind, v) == expected


def test_a_hash_of_another_form_matches_nothing() -> None:
    assert split_hash("hmac-sha256:k1:" + "ab" * 32) == ("k1", bytes.fromhex("ab" * 32))
    assert split_hash("hmac-sha256:k1:" + "AB" * 32) is None  # never written upper-case
    assert split_hash("sha256:k1:" + "ab" * 32) is None
    assert split_hash("hmac-sha256:k1:abc") is None
    assert split_hash("hmac-sha256:k1:" + "zz" * 32) is None


def test_plain_values_are_printable_ascii_only() -> None:
    assert is_plain(" Ana.Example+1@example.com ~")
    assert is_plain("")
    for other in ("a\tb", "a\n", "\x7f", "É", "\u00a0", "٠", "\u212a"):
        assert not is_plain(other)


def test_secrets_do_not_show() -> None:
    secret = b"a-very-secret-key"
    p = pads(secret)
    shown = repr(p) + repr(RawHasher(secret)) + repr(KeyDigests(p, frozenset({b"x" * 32})))
    assert "***" in shown
    for s in (secret.decode(), p.inner.hex(), str(p.inner), str(p.outer)):
        assert s not in shown
