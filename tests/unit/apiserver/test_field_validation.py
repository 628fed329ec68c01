"""The parts of fieldValidation=Warn|Ignore below the routes: repeated keys collected (the
last value kept) with their paths from JSON and YAML bodies alike, and the warnings'
headers bounded and read back by the client as they were written."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kukeon.apiserver.bodies import BodyError, decode_body
from kukeon.apiserver.fieldvalidation import WARNINGS_MAX, header_values
from kukeon.client.apiclient import warning_texts

JSON = "application/json"
YAML = "application/yaml"


@pytest.mark.parametrize(
    ("raw", "content_type", "value", "paths"),
    [
        (b'{"a":1,"a":2}', JSON, {"a": 2}, ["a"]),
        (
            b'{"m":{"l":{"x":"1","x":"2"}},"s":[{"i":1,"i":2}]}',
            JSON,
            {"m": {"l": {"x": "2"}}, "s": [{"i": 2}]},
            ["m.l.x", "s[0].i"],
        ),
        # a repeat inside a value a later repeat replaced is not kept, so not named
        (b'{"a":{"b":1,"b":2},"a":{"c":3}}', JSON, {"a": {"c": 3}}, ["a"]),
        (b"a: 1\na: 2\n", YAML, {"a": 2}, ["a"]),
        (b"m:\n  l: {x: '1', x: '2'}\ns:\n- i: 1\n  i: 2\n", YAML, None, ["m.l.x", "s[0].i"]),
        # equal as JSON's text: the scan's own check could not see these
        (b"l:\n  1: a\n  '1': b\n  true: c\n  'true': d\n", YAML, None, ["l.1", "l.true"]),
    ],
)
def test_repeated_keys_are_collected_with_their_paths(
    raw: bytes, content_type: str, value: object, paths: list[str]
) -> None:
    found: list[str] = []
    decoded = decode_body(raw, content_type, duplicates=found)
    assert sorted(found) == sorted(paths)
    if value is not None:
        assert decoded == value
    with pytest.raises(BodyError) as refused:  # without a list: refused, as before
        decode_body(raw, content_type)
    assert refused.value.code in (400, 422)


@settings(max_examples=100, deadline=None)
@given(
    # what YAML's reader takes in a quoted key: letters, digits, punctuation
    keys=st.lists(
        st.text(
            alphabet=st.characters(categories=["L", "N", "P", "Zs"], max_codepoint=0xFFFF),
            min_size=1,
            max_size=6,
        ),
        min_size=1,
        max_size=6,
    ),
    repeats=st.lists(st.integers(0, 5), max_size=4),
)
def test_json_and_yaml_name_the_same_repeats(keys: list[str], repeats: list[int]) -> None:
    pairs = [(key, index) for index, key in enumerate(keys)]
    pairs += [(keys[i % len(keys)], 100 + i) for i in repeats]
    body = "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{v}" for k, v in pairs) + "}"
    expected = dict(pairs)
    for content_type in (JSON, YAML):  # JSON text is YAML too
        found: list[str] = []
        assert decode_body(body.encode(), content_type, duplicates=found) == expected
        assert sorted(found) == sorted({k for k in keys if sum(p[0] == k for p in pairs) > 1})


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=300), min_size=1, max_size=60))
def test_warning_headers_are_bounded_and_read_back(texts: list[str]) -> None:
    values = header_values(texts)
    assert len(values) <= WARNINGS_MAX + 1
    assert all(v.isascii() and v.isprintable() for v in values)
    read = [text for value in values for text in warning_texts(value)]
    assert len(read) == len(values)
    for sent, got in zip(texts, read, strict=False):
        if got.endswith("more warnings are not shown"):
            break
        shown = "".join(c if " " <= c <= "~" else "?" for c in sent)
        assert got == shown if len(shown) <= 256 else got == shown[:253] + "..."
