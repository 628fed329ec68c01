"""The registry's shared decoded versions: by revision, newest kept, bounded."""

from __future__ import annotations

from kukeon.api import AnyResource, parse_resource
from kukeon.store.shareddecodes import SharedDecodes


def realm(name: str) -> AnyResource:
    return parse_resource(
        {"apiVersion": "kukeon.io/v1beta1", "kind": "Realm", "metadata": {"name": name}}
    )


def test_a_version_is_found_only_at_its_revision() -> None:
    shared = SharedDecodes()
    first = realm("a")
    shared.keep(b"k", 5, first)
    assert shared.get(b"k", 5) is first
    assert shared.get(b"k", 6) is None
    newer = realm("a")
    shared.keep(b"k", 7, newer)
    shared.keep(b"k", 6, realm("a"))  # a list racing the watch: older, ignored
    assert shared.get(b"k", 7) is newer
    shared.forget(b"k", 8)
    assert shared.get(b"k", 7) is None


def test_the_oldest_keys_go_first_beyond_the_bound() -> None:
    shared = SharedDecodes(max_keys=3)
    for index in range(5):
        shared.keep(f"k{index}".encode(), 1, realm(f"r{index}"))
    assert len(shared) == 3
    assert shared.get(b"k0", 1) is None
    assert shared.get(b"k4", 1) is not None


def test_a_deleted_key_is_not_kept_again_from_an_older_version() -> None:
    """A list read before the delete, or a write's result, handled after the watch saw the
    delete, would keep the deleted object until MAX_KEYS newer keys pushed it out."""
    shared = SharedDecodes()
    shared.keep(b"k", 5, realm("a"))
    shared.forget(b"k", 7)  # deleted at 7
    shared.keep(b"k", 6, realm("a"))  # read at 6, handled late
    assert len(shared) == 0
    again = realm("a")
    shared.keep(b"k", 9, again)  # made again
    assert shared.get(b"k", 9) is again
    shared.forget(b"k", 10)
    shared.keep(b"k", 9, realm("a"))
    assert len(shared) == 0


def test_what_is_remembered_of_forgotten_keys_is_bounded() -> None:
    shared = SharedDecodes(max_keys=3)
    for index in range(5):
        shared.forget(f"k{index}".encode(), 1)
    shared.keep(b"k0", 1, realm("r0"))  # its forgetting is itself forgotten: kept
    assert shared.get(b"k0", 1) is not None
    shared.keep(b"k4", 1, realm("r4"))
    assert shared.get(b"k4", 1) is None


def test_a_replaced_version_is_still_found_at_its_revision_for_a_while() -> None:
    """Every watch of the process meets a change; one that comes after another took the new
    version still finds the one before (a selective watch compares it), within a bound."""
    shared = SharedDecodes(max_replaced=2)
    first = realm("a")
    shared.keep(b"a", 5, first)
    shared.keep(b"a", 9, realm("a"))
    assert shared.get(b"a", 5) is first
    assert shared.get(b"a", 6) is None
    for key in (b"b", b"c"):
        shared.keep(key, 1, realm("b"))
        shared.keep(key, 2, realm("b"))
    assert shared.get(b"a", 5) is None  # the oldest replaced went first
    shared.forget(b"c", 3)
    assert shared.get(b"c", 1) is None
