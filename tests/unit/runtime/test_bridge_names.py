"""Bridge names: always a valid interface name, stable, readable when possible, distinct."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kukeon.runtime.network import bridge_name, instance_tag, is_valid_ifname

dns_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?", fullmatch=True)
any_name = st.text(min_size=0, max_size=80)


@pytest.mark.parametrize(
    ("realm", "space", "expected"),
    [
        ("a", "b", "kk-a-b"),
        ("prod", "web", "kk-prod-web"),
        ("prod", "web-1", "kk-prod-web-1"),
        ("default", "default", None),  # 18 bytes: hashed
        ("my-realm", "x", None),  # a dash in the realm would make the split ambiguous
    ],
)
def test_readable_form_when_it_fits(realm: str, space: str, expected: str | None) -> None:
    name = bridge_name(realm, space)
    if expected is None:
        assert name.startswith("k-")
        assert len(name) <= 15
    else:
        assert name == expected


def test_hashed_form_keeps_a_readable_prefix() -> None:
    assert bridge_name("production", "frontend").startswith("k-prfr-")


def test_ambiguous_splits_do_not_collide() -> None:
    assert bridge_name("a-b", "c") != bridge_name("a", "b-c")
    assert bridge_name("ab", "c") != bridge_name("a", "bc")


@given(realm=any_name, space=any_name)
def test_always_a_valid_interface_name(realm: str, space: str) -> None:
    name = bridge_name(realm, space)
    assert is_valid_ifname(name)
    assert len(name.encode()) <= 15
    assert all(c.isascii() and (c.isalnum() or c == "-") for c in name)


@given(realm=any_name, space=any_name)
def test_deterministic(realm: str, space: str) -> None:
    assert bridge_name(realm, space) == bridge_name(realm, space)


@settings(max_examples=300)
@given(first=st.tuples(dns_label, dns_label), second=st.tuples(dns_label, dns_label))
def test_distinct_inputs_give_distinct_names(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    if first != second:
        assert bridge_name(*first) != bridge_name(*second)


@settings(max_examples=300)
@given(pairs=st.sets(st.tuples(any_name, any_name), min_size=2, max_size=60))
def test_no_collisions_in_a_fleet(pairs: set[tuple[str, str]]) -> None:
    assert len({bridge_name(r, s) for r, s in pairs}) == len(pairs)


@pytest.mark.parametrize(
    ("name", "valid"),
    [("eth0", True), ("", False), (".", False), ("a/b", False), ("a:b", False),
     ("a b", False), ("x" * 15, True), ("x" * 16, False)],
)  # fmt: skip
def test_ifname_rules(name: str, valid: bool) -> None:
    assert is_valid_ifname(name) is valid


def test_another_installation_never_shares_a_bridge_name() -> None:
    default = Path("/var/lib/kukeon")
    assert instance_tag(state_dir=default, registry="anything") == ""
    assert instance_tag(state_dir=Path("/var/lib/kukeon/"), registry="x") == ""
    second = instance_tag(state_dir=Path("/var/lib/kukeon-b"), registry="embedded:b|/kukeon")
    assert len(second) == 6
    assert second != instance_tag(state_dir=Path("/srv/k"), registry="embedded:c|/kukeon")
    # Nodes of one fleet on one host (one etcd prefix) agree, whatever their directories.
    assert instance_tag(state_dir=Path("/a"), registry="e:2379|/p") == instance_tag(
        state_dir=Path("/b"), registry="e:2379|/p"
    )
    for realm, space in [("default", "default"), ("r", "s"), ("a", "bc")]:
        first = bridge_name(realm, space)
        other = bridge_name(realm, space, second)
        assert other != first
        assert len(other.encode()) <= 15
        assert other == bridge_name(realm, space, second)  # stable
    # The default installation keeps its names: an upgrade re-creates no bridge.
    assert bridge_name("r", "s", "") == "kk-r-s"
