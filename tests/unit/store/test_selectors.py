"""Label selectors: a=b, a==b, a!=b, a in (x,y), a notin (x), a (exists), !a (absent)."""

from __future__ import annotations

import pytest

from kukeon.store import Invalid, parse_selector


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        (None, {}, True),
        ("", {"a": "b"}, True),
        ("a=b", {"a": "b"}, True),
        ("a==b", {"a": "b"}, True),
        ("a=b", {"a": "c"}, False),
        ("a!=b", {}, True),
        ("a!=b", {"a": "b"}, False),
        ("e", {"e": ""}, True),
        ("e", {}, False),
        ("!e", {}, True),
        ("!e", {"e": "x"}, False),
        ("a=b, c!=d ,e", {"a": "b", "c": "x", "e": "1"}, True),
        ("a=b,c!=d,e", {"a": "b", "c": "d", "e": "1"}, False),
        ("kukeon.io/node=n1", {"kukeon.io/node": "n1"}, True),
        ("a = b", {"a": "b"}, True),
        ("a=", {"a": ""}, True),
        ("a in (x,y)", {"a": "y"}, True),
        ("a in (x, y)", {"a": "z"}, False),
        ("a in (x,y)", {}, False),
        ("a in ()", {"a": ""}, True),
        ("a notin (x,y)", {"a": "z"}, True),
        ("a notin (x,y)", {}, True),  # as Kubernetes': notin and != match the key's absence
        ("a notin (x)", {"a": "x"}, False),
        ("tier in (web,api),env notin (prod),!legacy", {"tier": "api", "env": "dev"}, True),
        ("tier in (web,api),env notin (prod),!legacy", {"tier": "api", "legacy": ""}, False),
        ("in", {"in": "1"}, True),  # a keyword only where an operator is expected
    ],
)
def test_selector_matching(selector: str | None, labels: dict[str, str], matches: bool) -> None:
    assert parse_selector(selector).matches(labels) is matches


@pytest.mark.parametrize(
    ("selector", "term"),
    [
        ("a=b,,c", "empty term"),
        ("=b", "'=b'"),
        ("a=b c", "'a=b c'"),
        ("!", "'!'"),
        ("a=-x", "'a=-x'"),
        ("a=b=c", "'a=b=c'"),
        ("a=b,", "empty term"),
        ("x,a in (b,-c),z", "'a in (b,-c)'"),
        ("a in (x", "'a in (x'"),
        ("a in x", "'a in x'"),
        ("a in (x y)", "'a in (x y)'"),
        ("a notin", "'a notin'"),
        ("a foo (x)", "'a foo (x)'"),
        ("!a=b", "'!a=b'"),
        ("a>1", "'a>1'"),
    ],
)
def test_bad_selectors_name_the_term(selector: str, term: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_selector(selector)
    assert "label selector" in str(caught.value)
    assert caught.value.causes[0].field == "labelSelector"
    assert term in caught.value.causes[0].message


def test_a_set_is_no_invalid_key() -> None:
    """The red team's case: `a in (x,y)` was one term with an invalid key."""
    assert "invalid label key" not in str(parse_selector("a in (x,y)"))
    with pytest.raises(Invalid) as caught:
        parse_selector("a in (x,y")
    assert "expected ',' or ')'" in str(caught.value)
