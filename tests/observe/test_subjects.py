"""Which subjects observing looks for (`observe/subjects.py`), on policy texts and tombstones.

Pure: the desired state is loaded from YAML texts (nothing is written), tombstones are built
in memory, identities are hashed with the test key.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from plan.golden import desired_from

from reconciler.desired.model import Desired, SubjectKind
from reconciler.observe.subjects import (
    Subject,
    pending_subjects,
    subject_index,
    users_in_access,
)
from reconciler.privacy.identity import hash_identity
from reconciler.store.records import Tombstone

from .golden import KEY

SYSTEMS = """\
systems:
  crm:
    role: source
    url: sqlite:///crm.db
    tables:
      customers: {primary_key: id, identities: {email: email}, on_erasure: delete}
  insights:
    role: platform
    url: sqlite:///insights.db
    ingests: [crm]
    permissions: {table: user_roles, user: user_email, role: role}
    tables:
      profiles: {primary_key: id, identities: {email: email}, on_erasure: delete}
"""
ACCESS = """\
roles: [admin, viewer]
users:
  erin@contoso.example: {roles: [admin]}
  Dave@Contoso.example: {roles: [viewer]}
"""
DONE_AT = datetime(2026, 11, 10, 9, 30, tzinfo=UTC)


def h(raw: str) -> str:
    return hash_identity("email", raw, KEY)


def request(
    rid: str,
    raw: str,
    *,
    type: str = "erasure",
    kind: str = "customer",
    systems: str = "all",
    requested_by: str = "privacy@contoso.example",
    extra: str = "",
) -> dict[str, str]:
    text = (
        f"id: {rid}\ntype: {type}\nsubject:\n  kind: {kind}\n  identities:\n"
        f'    - {{type: email, hash: "{h(raw)}"}}\nreceived: 2026-11-20\n'
        f"requested_by: {requested_by}\nsystems: {systems}\n{extra}"
    )
    return {f"policies/requests/{rid}.yaml": text}


def desired(tmp_path: Path, *requests: dict[str, str], access: bool = True) -> Desired:
    files = {"policies/systems.yaml": SYSTEMS}
    if access:
        files["policies/access.yaml"] = ACCESS
    for r in requests:
        files |= r
    # The key id of the test key is the one the golden dsr.yaml names.
    assert KEY.key_id == "t1"
    return desired_from(files, tmp_path)


def tombstone(
    rid: str,
    raw: str,
    kind: SubjectKind = SubjectKind.CUSTOMER,
    systems: tuple[str, ...] | None = None,
) -> Tombstone:
    return Tombstone(rid, kind, (("email", h(raw)),), systems, DONE_AT)


APPROVED = "approvals:\n  - {by: erin@contoso.example, at: 2026-11-21}\n"


def ids(subjects: list[Subject]) -> list[str]:
    return [s.request_id for s in subjects]


def test_open_erasures_are_looked_for_by_their_hashes_and_scope(tmp_path: Path) -> None:
    d = desired(
        tmp_path,
        request("DSR-1", "ana@example.com"),
        request("DSR-2", "ben@example.com", systems="[crm]"),
    )
    s1, s2 = pending_subjects(d, {}, ())
    assert s1 == Subject("DSR-1", (("email", h("ana@example.com")),), None)
    assert s2.systems == ("crm",) and s2.in_scope("crm") and not s2.in_scope("insights")


def test_a_tombstone_is_looked_for_even_when_its_request_file_is_gone(tmp_path: Path) -> None:
    done = tombstone("DSR-1", "ana@example.com", systems=("crm",))
    (subject,) = pending_subjects(desired(tmp_path), {"DSR-1": done}, ())
    assert subject == Subject("DSR-1", done.identities, ("crm",), SubjectKind.CUSTOMER)


def test_the_request_file_wins_over_its_tombstone(tmp_path: Path) -> None:
    done = tombstone("DSR-1", "ana@example.com", systems=("crm",))
    d = desired(tmp_path, request("DSR-1", "ana@example.com"))
    (subject,) = pending_subjects(d, {"DSR-1": done}, ())
    assert subject.systems is None


def test_cancelled_requests_are_dropped_unless_they_completed(tmp_path: Path) -> None:
    cancelled = "cancelled: the subject withdrew it\n"
    d = desired(
        tmp_path,
        request("DSR-1", "ana@example.com", extra=cancelled),
        request("DSR-2", "ben@example.com", extra=cancelled),
    )
    done = {"DSR-2": tombstone("DSR-2", "ben@example.com")}
    assert ids(pending_subjects(d, done, ())) == ["DSR-2"]


def test_held_erasures_are_still_looked_for(tmp_path: Path) -> None:
    """The planner, not the observer, decides that a legal hold stops the erasure."""
    d = desired(tmp_path, request("DSR-1", "ana@example.com", extra="legal_hold: case 7\n"))
    assert ids(pending_subjects(d, {}, ())) == ["DSR-1"]


def test_exports_are_looked_for_only_once_approved_and_until_built(tmp_path: Path) -> None:
    d = desired(
        tmp_path,
        request("DSR-4", "ana@example.com", type="export", extra=APPROVED),
        request("DSR-5", "ben@example.com", type="export"),
        request("DSR-6", "cara@example.com", type="export", extra=APPROVED),
        # approved only by the admin who requested it: does not count
        request(
            "DSR-7",
            "dan@example.com",
            type="export",
            requested_by="erin@contoso.example",
            extra=APPROVED,
        ),
        request("DSR-8", "dave@contoso.example", type="export", kind="user", extra=APPROVED),
    )
    found = pending_subjects(d, {}, {"DSR-6"})
    assert ids(found) == ["DSR-4", "DSR-8"]
    assert found[1].kind is SubjectKind.USER


def test_subjects_come_sorted_and_the_index_finds_every_request_of_a_person(
    tmp_path: Path,
) -> None:
    d = desired(
        tmp_path,
        request("DSR-2", "ana@example.com"),
        request("DSR-1", " Ana@Example.com"),
        request("DSR-3", "ben@example.com"),
    )
    subjects = pending_subjects(d, {}, ())
    assert ids(subjects) == ["DSR-1", "DSR-2", "DSR-3"]
    index = subject_index(subjects)
    assert index[("email", h("ana@example.com"))] == {"DSR-1", "DSR-2"}
    assert index[("email", h("ben@example.com"))] == {"DSR-3"}


def test_users_in_access_are_user_erasures_whose_user_is_listed(tmp_path: Path) -> None:
    d = desired(
        tmp_path,
        request("DSR-1", "dave@contoso.example", kind="user"),  # Dave@Contoso.example listed
        request(
            "DSR-2", "erin@contoso.example"
        ),  # a customer who is also a user: not a user erasure
        request("DSR-3", "frank@contoso.example", kind="user"),  # not listed
        request("DSR-4", "erin@contoso.example", type="export", kind="user", extra=APPROVED),
    )
    assert users_in_access(d, KEY, {}) == frozenset({"DSR-1"})


def test_a_completed_user_erasure_whose_user_came_back_is_in_access(tmp_path: Path) -> None:
    done = {
        "DSR-9": tombstone("DSR-9", "erin@contoso.example", SubjectKind.USER),
        "DSR-10": tombstone("DSR-10", "erin@contoso.example"),  # a customer erasure
    }
    assert users_in_access(desired(tmp_path), KEY, done) == frozenset({"DSR-9"})


def test_no_access_file_means_no_user_is_in_it(tmp_path: Path) -> None:
    d = desired(tmp_path, request("DSR-1", "dave@contoso.example", kind="user"), access=False)
    assert users_in_access(d, KEY, {}) == frozenset()


class _CountedName(str):
    """A user name that counts its normalisations: one per keyed hash of it."""

    normalised = 0

    def strip(self, chars: str | None = None) -> str:
        _CountedName.normalised += 1
        return super().strip(chars)


def _counted(d: Desired) -> Desired:
    assert d.access is not None
    users = {_CountedName(name): user for name, user in d.access.users.items()}
    return replace(d, access=replace(d.access, users=users))


def test_users_are_hashed_only_when_a_user_erasure_is_looked_for(tmp_path: Path) -> None:
    _CountedName.normalised = 0
    d = _counted(
        desired(
            tmp_path / "none",
            request("DSR-2", "erin@contoso.example"),  # a customer erasure
            request("DSR-4", "erin@contoso.example", type="export", kind="user", extra=APPROVED),
        )
    )
    done = {"DSR-10": tombstone("DSR-10", "erin@contoso.example")}  # a customer erasure
    assert users_in_access(d, KEY, done) == frozenset()
    assert _CountedName.normalised == 0

    d = _counted(desired(tmp_path / "one", request("DSR-1", "dave@contoso.example", kind="user")))
    assert users_in_access(d, KEY, {}) == frozenset({"DSR-1"})
    assert _CountedName.normalised == 2  # each of the two users once, under the one key
