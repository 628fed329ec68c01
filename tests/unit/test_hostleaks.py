"""The integration suites' leak check (tests/fixtures/hostleaks.py): what it blames, on
made-up host listings."""

from __future__ import annotations

from tests.fixtures.hostleaks import LeakGuard

Thing = tuple[str, str]


class Host:
    """A host whose listing a test changes between the guard's looks."""

    def __init__(self, *things: Thing) -> None:
        self.things = set(things)

    def snapshot(self) -> set[Thing]:
        return set(self.things)


BRIDGE = ("bridge", "k-r1s1-abc (10.160.0.1)")
TABLE = ("nft table", "inet kukeon_test_abc")


def test_what_a_module_leaves_is_blamed_on_it() -> None:
    host = Host()
    guard = LeakGuard(snapshot=host.snapshot)
    guard.module_starts()
    guard.module_ended("tests/integration/a.py")
    guard.module_starts()
    host.things |= {BRIDGE, TABLE}
    guard.module_ended("tests/integration/b.py")
    guard.module_starts()
    guard.module_ended("tests/integration/c.py")
    assert guard.leaks() == {"tests/integration/b.py": [BRIDGE, TABLE]}


def test_a_longer_lived_fixtures_objects_are_not_leaks_once_it_is_torn_down() -> None:
    host = Host()
    guard = LeakGuard(snapshot=host.snapshot)
    guard.module_starts()
    host.things.add(BRIDGE)  # a session-scoped fixture, first used here
    guard.module_ended("tests/integration/a.py")
    guard.module_starts()
    guard.module_ended("tests/integration/b.py")
    host.things.clear()  # its teardown, at the session's end
    assert guard.leaks() == {}


def test_what_was_there_before_is_never_blamed() -> None:
    host = Host(TABLE)
    guard = LeakGuard(snapshot=host.snapshot)
    guard.module_starts()
    guard.module_ended("tests/integration/a.py")
    assert guard.leaks() == {}


def test_an_object_removed_then_made_again_is_blamed_on_the_module_that_left_it() -> None:
    host = Host()
    guard = LeakGuard(snapshot=host.snapshot)
    guard.module_starts()
    host.things.add(TABLE)
    guard.module_ended("tests/integration/a.py")  # a package fixture's, say
    host.things.clear()
    guard.module_ended("tests/integration/b.py")
    host.things.add(TABLE)
    guard.module_ended("tests/integration/c.py")
    assert guard.leaks() == {"tests/integration/c.py": [TABLE]}
