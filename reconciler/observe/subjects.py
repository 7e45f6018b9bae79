"""Which data subjects dsr must look for, and how their keyed hashes are looked up. Pure.

Erasures, open and completed (tombstones, even when their request file is gone), and approved
exports not yet built. A request file holds only keyed hashes, so a row belongs to a subject
when the keyed hash of its normalised identity value is one of the subject's hashes: looked
up by hex string in a `SubjectIndex` (roles, access.yaml), or by raw digest in `Wanted`
(every row of an identity table, where speed matters).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from reconciler.desired.approvals import approval_status
from reconciler.desired.model import Desired, RequestType, SubjectKind
from reconciler.privacy.identity import IdentityKey, RawHasher, split_hash
from reconciler.store.records import Tombstone

# (identity type, keyed hash) -> the requests whose subject has it
SubjectIndex = dict[tuple[str, str], set[str]]


@dataclass(frozen=True, slots=True)
class Subject:
    request_id: str
    identities: tuple[tuple[str, str], ...]  # (type, keyed hash)
    systems: tuple[str, ...] | None  # None: every system
    kind: SubjectKind = SubjectKind.CUSTOMER

    def in_scope(self, system: str) -> bool:
        return self.systems is None or system in self.systems


def pending_subjects(
    desired: Desired, completed: Mapping[str, Tombstone], built: Collection[str]
) -> list[Subject]:
    """Every subject dsr must look for, by request id."""
    out: dict[str, Subject] = {}
    for c in completed.values():
        out[c.request_id] = Subject(c.request_id, c.identities, c.systems, c.subject_kind)
    for r in desired.requests.values():
        if r.cancelled and r.id not in completed:
            out.pop(r.id, None)
            continue
        if r.type is RequestType.EXPORT and (
            r.id in built or not approval_status(r, desired.access)[0]
        ):
            continue
        identities = tuple((i.type, i.hash) for i in r.identities)
        out[r.id] = Subject(r.id, identities, r.systems, r.subject_kind)
    return [out[k] for k in sorted(out)]


def subject_index(subjects: Iterable[Subject]) -> SubjectIndex:
    index: SubjectIndex = defaultdict(set)
    for s in subjects:
        for pair in s.identities:
            index[pair].add(s.request_id)
    return index


def users_in_access(
    desired: Desired, key: IdentityKey, completed: Mapping[str, Tombstone]
) -> frozenset[str]:
    """User erasures, open or completed, whose subject is (again) a user in access.yaml.

    The users are hashed only when some user erasure is looked for, by e-mail and only under
    the keys such erasures were hashed with: a plan with none hashes no user at all."""
    if desired.access is None:
        return frozenset()
    erasures = {
        c.request_id: Subject(c.request_id, _emails(c.identities), c.systems, c.subject_kind)
        for c in completed.values()
        if c.subject_kind is SubjectKind.USER
    } | {
        r.id: Subject(
            r.id, _emails((i.type, i.hash) for i in r.identities), r.systems, r.subject_kind
        )
        for r in desired.requests.values()
        if r.type is RequestType.ERASURE and r.subject_kind is SubjectKind.USER
    }
    find = Wanted(erasures.values(), key).finder("email") if erasures else None
    if find is None:
        return frozenset()
    found: set[str] = set()
    for user in desired.access.users:
        found |= find(user)
    return frozenset(found)


def _emails(identities: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    return tuple((kind, h) for kind, h in identities if kind == "email")


class Wanted:
    """The subjects' identities as raw digests, for matching values by keyed hash: per
    identity type, per key (the current one and every previous one), the digests some
    subject's hash holds under that key and whose requests they name.

    A value names a request when its digest under some key is one the request holds under
    that key's id: the same rule as looking `matching_hashes` up in a `SubjectIndex`, with
    raw digests instead of hex strings, and no hashing under a key no subject used."""

    def __init__(self, subjects: Iterable[Subject], key: IdentityKey) -> None:
        by_id: dict[tuple[str, str], dict[bytes, set[str]]] = defaultdict(lambda: defaultdict(set))
        for s in subjects:
            for kind, value in s.identities:
                parts = split_hash(value)
                if parts is not None:
                    by_id[kind, parts[0]][parts[1]].add(s.request_id)
        self.keys: dict[str, list[tuple[IdentityKey, dict[bytes, frozenset[str]]]]] = {}
        for k in (key, *key.previous):
            for (kind, key_id), digests in sorted(by_id.items()):
                if key_id == k.key_id:
                    frozen = {d: frozenset(r) for d, r in digests.items()}
                    self.keys.setdefault(kind, []).append((k, frozen))
        self._finders = {kind: self._finder(kind) for kind in self.keys}

    def _finder(self, kind: str) -> Callable[[str], frozenset[str]]:
        pairs = [(RawHasher(k.secret).of(kind), digests) for k, digests in self.keys[kind]]
        none: frozenset[str] = frozenset()
        if len(pairs) == 1:  # one key, the usual case: one hash and one lookup per value
            [(digest, digests)] = pairs
            return lambda value: digests.get(digest(value), none)

        def find(value: str) -> frozenset[str]:
            found = none
            for digest, digests in pairs:
                found = found | digests.get(digest(value), none)
            return found

        return find

    def finder(self, kind: str) -> Callable[[str], frozenset[str]] | None:
        """The requests a value of type `kind` names, as a function; None when no subject
        is looked for by that type (nothing to hash)."""
        return self._finders.get(kind)

    def requests(self, kind: str, value: str) -> frozenset[str]:
        """The requests whose subject `value` (an identity of type `kind`) names."""
        find = self._finders.get(kind)
        return find(value) if find else frozenset()
