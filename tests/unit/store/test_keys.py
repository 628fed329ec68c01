"""Key layout: one prefix per kind, scoped by parent names, table-driven hierarchy."""

from __future__ import annotations

import pytest

from kukeon.api import Kind
from kukeon.store import KINDS, Invalid, KeyLayout, key_for
from kukeon.store.keys import child_kinds, parent_key, range_end, scope_depth


def test_keys_follow_the_design_layout() -> None:
    assert key_for(Kind.REALM, ("r",)) == "/kukeon/registry/realms/r"
    assert key_for(Kind.SPACE, ("r", "s")) == "/kukeon/registry/spaces/r/s"
    assert key_for(Kind.STACK, ("r", "s", "st")) == "/kukeon/registry/stacks/r/s/st"
    assert key_for(Kind.CELL, ("r", "s", "st", "c")) == "/kukeon/registry/cells/r/s/st/c"


def test_hierarchy_comes_from_the_table() -> None:
    assert set(KINDS) == set(Kind)
    assert [scope_depth(kind) for kind in (Kind.REALM, Kind.SPACE, Kind.STACK, Kind.CELL)] == [
        0,
        1,
        2,
        3,
    ]
    assert child_kinds(Kind.REALM) == [Kind.SPACE, Kind.SECRET, Kind.CELL_PROFILE]
    assert child_kinds(Kind.CELL) == []
    assert child_kinds(Kind.SECRET) == []
    assert parent_key(Kind.CELL, ("r", "s", "st", "c")) == (Kind.STACK, ("r", "s", "st"))
    assert parent_key(Kind.REALM, ("r",)) is None


def test_scope_prefixes_end_with_a_slash() -> None:
    layout = KeyLayout("/t/")
    assert layout.scope_prefix(Kind.CELL, ()) == "/t/registry/cells/"
    # "r" must not match realm "rx": the prefix ends at the separator.
    assert layout.scope_prefix(Kind.CELL, ("r",)) == "/t/registry/cells/r/"
    assert layout.children_prefixes(Kind.SPACE, ("r", "s")) == [
        (Kind.STACK, "/t/registry/stacks/r/s/"),
        (Kind.SECRET, "/t/registry/secrets/r/s/"),
        (Kind.CELL_PROFILE, "/t/registry/cellprofiles/r/s/"),
    ]
    assert layout.split(Kind.CELL, b"/t/registry/cells/r/s/st/c") == ("r", "s", "st", "c")


@pytest.mark.parametrize(
    ("kind", "key"),
    [(Kind.SPACE, ("r",)), (Kind.REALM, ("a", "b")), (Kind.REALM, ("a/b",)), (Kind.REALM, ("",))],
)
def test_malformed_keys_are_invalid(kind: Kind, key: tuple[str, ...]) -> None:
    with pytest.raises(Invalid):
        key_for(kind, key)


def test_scope_longer_than_the_kind_allows_is_invalid() -> None:
    with pytest.raises(Invalid, match="more than 1 parent"):
        KeyLayout().scope_prefix(Kind.SPACE, ("r", "s"))


def test_range_end_of_a_prefix() -> None:
    assert range_end(b"/a/") == b"/a0"
    assert range_end(b"a\xff") == b"b"
    assert range_end(b"\xff\xff") == b"\0"


def test_a_secret_key_has_three_scope_parts_with_placeholders() -> None:
    assert key_for(Kind.SECRET, ("r", "-", "-", "a")) == "/kukeon/registry/secrets/r/-/-/a"
    assert key_for(Kind.SECRET, ("r", "s", "t", "a")) == "/kukeon/registry/secrets/r/s/t/a"
    assert parent_key(Kind.SECRET, ("r", "-", "-", "a")) == (Kind.REALM, ("r",))
    assert parent_key(Kind.SECRET, ("r", "s", "-", "a")) == (Kind.SPACE, ("r", "s"))
    assert parent_key(Kind.SECRET, ("r", "s", "t", "a")) == (Kind.STACK, ("r", "s", "t"))
    # The realm's range holds every Secret within the realm, the space's only its own.
    layout = KeyLayout("/t")
    assert (Kind.SECRET, "/t/registry/secrets/r/") in layout.children_prefixes(Kind.REALM, ("r",))
    with pytest.raises(Invalid, match="a stack needs its space"):
        key_for(Kind.SECRET, ("r", "-", "t", "a"))
