"""Label selectors: a=b, a==b, a!=b, a (exists), !a (absent)."""

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
    ],
)
def test_selector_matching(selector: str | None, labels: dict[str, str], matches: bool) -> None:
    assert parse_selector(selector).matches(labels) is matches


@pytest.mark.parametrize("selector", ["a=b,,c", "=b", "a=b c", "!", "a=-x", "a=b=c"])
def test_bad_selectors_name_the_term(selector: str) -> None:
    with pytest.raises(Invalid) as caught:
        parse_selector(selector)
    assert "label selector" in str(caught.value)
    assert caught.value.causes[0].field == "labelSelector"
