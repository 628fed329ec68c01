"""Request bodies and query parameters a hostile client sends: each a 4xx, never a crash."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.test_utils import make_mocked_request
from hypothesis import given, settings
from hypothesis import strategies as st

from kukeon.apiserver import queryparams
from kukeon.apiserver.bodies import (
    MAX_DEPTH,
    BodyError,
    decode_body,
    decode_json,
    decode_yaml,
    json_depth,
)
from kukeon.apiserver.lowlevel import parse_error
from kukeon.apiserver.status import ApiError, Cause

ID_PATH = "spec.containers[0].id"

# --- the depth scanner agrees with the real nesting ---------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab,:'),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(alphabet='[]{}"\\k', max_size=4), children, max_size=3)
    ),
    max_leaves=30,
)


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=300)
@given(json_values)
def test_depth_scanner_matches_the_nesting_of_any_json(value: Any) -> None:
    raw = json.dumps(value).encode()
    assert json_depth(raw) == _depth(value)
    assert decode_json(raw) == value


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet="[]{}:-#&*!|>'\" ab\n,?"),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(alphabet="[]{}:-#&*!'\" ak?", max_size=4), children, max_size=3)
    ),
    max_leaves=30,
)


@settings(max_examples=300)
@given(yaml_values, st.sampled_from([None, True, False]))
def test_yaml_event_scan_reads_what_pyyaml_wrote(value: Any, flow: bool | None) -> None:
    # Block and flow style, every kind of quoting: the scan's state machine (key or value,
    # item index, depth) must accept all of it and the result must be what was dumped.
    raw = yaml.safe_dump(value, default_flow_style=flow).encode()
    assert decode_body(raw, "application/yaml") == value
    if _depth(value) <= MAX_DEPTH:
        assert decode_body(raw, "application/yaml", max_depth=_depth(value)) == value
    if _depth(value) >= 1:
        with pytest.raises(BodyError, match="nested more than"):
            decode_body(raw, "application/yaml", max_depth=_depth(value) - 1)


@settings(max_examples=100)
@given(st.integers(1, 3000), st.sampled_from(["[", '{"a":']))
def test_deep_json_is_refused_before_decoding(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    inner = "1" if opener != "[" else ""
    raw = (opener * depth + inner + closer * depth).encode()
    if depth <= MAX_DEPTH:
        decode_json(raw)
    else:
        with pytest.raises(BodyError) as caught:
            decode_json(raw)
        assert caught.value.code == 400
        assert "nested" in caught.value.message


@pytest.mark.parametrize(
    ("raw", "content_type", "code", "field"),
    [
        (b'{"name":"a","name":"b"}', "application/json", 422, "name"),
        (
            b'{"spec":{"containers":[{"id":"a","id":"b"}]}}',
            "application/json",
            422,
            "spec.containers[0].id",
        ),
        (b"name: a\nname: b\n", "application/yaml", 422, "name"),
        (
            b"spec:\n  containers:\n  - id: a\n    id: b\n",
            "application/yaml",
            422,
            "spec.containers[0].id",
        ),
        (b"[" * 20000 + b"]" * 20000, "application/yaml", 400, ""),
        (b"[" * 10000 + b"]" * 10000, "application/json", 400, ""),
        (b"a: &x [1, 2]\nb: *x\n", "application/yaml", 400, "b"),
        (b"[NaN]", "application/json", 400, ""),
        (b"[1" + b"0" * 5000 + b"]", "application/json", 400, ""),
        (b"\xff\xfe", "application/json", 400, ""),
        (b"a: 1\n---\nb: 2\n", "application/yaml", 400, ""),
        (b"{unclosed", "application/json", 400, ""),
        # tags of no JSON value: refused naming the tag and where (they made bytes, sets,
        # dates that reached the models)
        (b"spec:\n  data:\n    k: !!binary aGVsbG8=\n", "application/yaml", 400, "spec.data.k"),
        (b"metadata: {labels: !!set {a, b}}\n", "application/yaml", 400, "metadata.labels"),
        (b"a:\n- x\n- !!timestamp 2001-12-14\n", "application/yaml", 400, "a[1]"),
        (b"a: !!omap [x: 1]\n", "application/yaml", 400, "a"),
        (b"!!python/object:os.system {}\n", "application/yaml", 400, ""),
        # floats JSON has not, refused as the JSON reader refuses NaN (they passed as YAML)
        (b"spec:\n  limits:\n    memory: .inf\n", "application/yaml", 400, "spec.limits.memory"),
        (b"a:\n- 1\n- .nan\n", "application/yaml", 400, "a[1]"),
        (b"a: !!float -inf\n", "application/yaml", 400, "a"),
        (b"a: 1.0e+999\n", "application/yaml", 400, "a"),
        (b'{"a": 1e999}', "application/json", 400, ""),
        # keys with no text (a number or boolean key is its text, as sigs.k8s.io/yaml's)
        (b"metadata:\n  labels:\n    null: x\n", "application/yaml", 400, "metadata.labels"),
        (b"a:\n  ? [x]\n  : 1\n", "application/yaml", 400, "a"),
    ],
)
def test_hostile_bodies(raw: bytes, content_type: str, code: int, field: str) -> None:
    with pytest.raises(BodyError) as caught:
        decode_body(raw, content_type)
    assert caught.value.code == code
    assert caught.value.field == field
    assert len(caught.value.message) < 400
    if b"!" in raw and b"!!float" not in raw:
        assert "is not accepted: YAML is read as JSON data" in caught.value.message


def test_a_yaml_key_is_text_as_sigs_k8s_io_yaml_makes_it() -> None:
    raw = b"labels:\n  1: a\n  true: b\n  1.5: c\n  .inf: d\n"
    assert decode_body(raw, "application/yaml") == {
        "labels": {"1": "a", "true": "b", "1.5": "c", ".inf": "d"}
    }


def test_yaml_reads_yaml_1_2_scalars() -> None:
    assert decode_body(b"a: yes\nb: on\nc: true\nd: 2026-01-01\n", "application/yaml") == {
        "a": "yes",
        "b": "on",
        "c": True,
        "d": "2026-01-01",
    }


def test_deep_yaml_mapping_is_refused() -> None:
    raw = "".join("  " * i + f"k{i}:\n" for i in range(150)).encode() + b"  " * 150 + b"x: 1\n"
    with pytest.raises(BodyError, match="nested more than 100"):
        decode_body(raw, "application/yaml")


# --- query parameters ----------------------------------------------------------------------------


def _request(query: str) -> Any:
    return make_mocked_request("GET", f"/x?{query}")


@pytest.mark.parametrize(
    "query",
    [
        "resourceVersion=" + "9" * 40,
        "resourceVersion=-1",
        "resourceVersion=1e3",
        "resourceVersion=%EF%BC%91",  # a full-width digit
        "resourceVersion=9223372036854775808",
        "resourceVersion=1&resourceVersion=2",
    ],
)
def test_bad_resource_versions(query: str) -> None:
    with pytest.raises(ApiError) as caught:
        queryparams.resource_version(_request(query))
    assert caught.value.code == 400
    assert caught.value.causes[0].field == "resourceVersion"
    assert len(caught.value.message) < 300


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", None),
        ("resourceVersion=", None),
        ("resourceVersion=0", 0),
        ("resourceVersion=42", 42),
        ("resourceVersion=9223372036854775807", 2**63 - 1),
    ],
)
def test_good_resource_versions(query: str, expected: int | None) -> None:
    assert queryparams.resource_version(_request(query)) == expected


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e308", "-5", "abc", "604801", "1" * 100])
def test_bad_timeouts(value: str) -> None:
    with pytest.raises(ApiError) as caught:
        queryparams.timeout_seconds(_request(f"timeoutSeconds={value}"))
    assert caught.value.code == 400
    assert caught.value.causes == [Cause("timeoutSeconds", caught.value.causes[0].message)]


@pytest.mark.parametrize(
    ("value", "expected"), [("0", None), ("", None), ("2.5", 2.5), ("60", 60.0)]
)
def test_good_timeouts(value: str, expected: float | None) -> None:
    assert queryparams.timeout_seconds(_request(f"timeoutSeconds={value}")) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("1", True), ("YES", True), ("false", False), ("0", False), ("", False)],
)
def test_flags(value: str, expected: bool) -> None:
    assert queryparams.flag(_request(f"watch={value}"), "watch") is expected


@pytest.mark.parametrize("query", ["watch=maybe", "watch=true&watch=false", "watch=" + "x" * 10000])
def test_bad_flags(query: str) -> None:
    with pytest.raises(ApiError) as caught:
        queryparams.flag(_request(query), "watch")
    assert caught.value.code == 400
    assert len(caught.value.message) < 300


def test_dry_run_only_all() -> None:
    assert queryparams.dry_run(_request("dryRun=All")) is True
    assert queryparams.dry_run(_request("")) is False
    with pytest.raises(ApiError):
        queryparams.dry_run(_request("dryRun=" + "x" * 100000))


# --- what aiohttp's parser refuses ---------------------------------------------------------------


def test_parser_errors_become_statuses() -> None:
    # the C parser passes the URL as a bytearray, a header value as bytes
    url: Any = bytearray(b"/apis/" + b"a" * 9000)
    assert parse_error(400, LineTooLong(url, 8190)).code == 414
    assert parse_error(400, LineTooLong(b"aaaa", 8190)).code == 431
    assert parse_error(400, BadHttpMessage("Too many headers received")).code == 431
    bad = parse_error(400, BadHttpMessage("Invalid character in Content-Length:\n\n  xx"))
    assert bad.code == 400
    assert bad.message == "malformed HTTP request: Invalid character in Content-Length:"
    assert parse_error(500, RuntimeError("boom")).to_status()["message"].startswith("internal")


def test_error_messages_are_bounded() -> None:
    error = ApiError(422, "x" * 10**6, causes=[Cause("f" * 10**5, "m" * 10**5)] * 1000)
    status = error.to_status()
    assert len(json.dumps(status)) < 200_000
    assert len(status["details"]["causes"]) == 100


def test_base_60_numbers_are_text_in_a_yaml_body() -> None:
    """`ports: [22:22]` was the integer 1342 (a 422 "got 1342"), as kukectl read it too."""
    body = b"ports: [22:22, 8080:80]\nargs: [1:30]\nn: [0644, 1_000]\n"
    assert decode_yaml(body) == {
        "ports": ["22:22", "8080:80"],
        "args": ["1:30"],
        "n": [0o644, 1000],
    }
