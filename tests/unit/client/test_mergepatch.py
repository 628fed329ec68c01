"""JSON merge patch: the examples of RFC 7386 appendix A, and the inverse."""

from __future__ import annotations

from typing import Any

import pytest

from kukeon.client.mergepatch import apply_merge_patch, create_merge_patch

RFC_7386_EXAMPLES: list[tuple[Any, Any, Any]] = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("target", "patch", "expected"), RFC_7386_EXAMPLES)
def test_rfc_7386_examples(target: Any, patch: Any, expected: Any) -> None:
    assert apply_merge_patch(target, patch) == expected


def test_inputs_are_not_modified() -> None:
    target = {"a": {"b": [1, 2]}, "c": 1}
    patch = {"a": {"b": [3]}, "c": None}
    apply_merge_patch(target, patch)
    assert target == {"a": {"b": [1, 2]}, "c": 1}
    assert patch == {"a": {"b": [3]}, "c": None}


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ({"a": 1, "b": {"c": 2, "d": 3}}, {"a": 1, "b": {"c": 5}, "e": [1]}),
        ({"labels": {"x": "1"}}, {"labels": {}}),
        ({}, {"spec": {"containers": [{"id": "a"}]}}),
    ],
)
def test_create_is_the_inverse_of_apply(source: Any, target: Any) -> None:
    assert apply_merge_patch(source, create_merge_patch(source, target)) == target
