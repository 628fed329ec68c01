"""What bounds the CPU a request body's decoding takes (``apiserver.bodies``): a YAML body's
nodes and directive lines (the web console's pasted manifests' too), JSON's repeated keys,
and the warnings and causes they make.

Each refusal is shown to happen before the parser reads on: the hostile bodies end in a
syntax error, which a scan that went on to the end would have answered instead.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import make_mocked_request
from hypothesis import given, settings
from hypothesis import strategies as st

from kukeon.apiserver.bodies import (
    MAX_MANIFEST_NODES,
    MAX_YAML_DIRECTIVES,
    MAX_YAML_NODES,
    BodyError,
    check_manifest,
    decode_body,
    decode_json,
    decode_yaml,
)
from kukeon.apiserver.fieldvalidation import CAUSES_MAX, WARNINGS_KEY, FieldChecks, warn
from kukeon.apiserver.status import ApiError

MiB = 1024 * 1024
BROKEN_END = "\n: ]: [\n"  # a syntax error for any parser that reaches it

values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet="ab :-#'\"", max_size=5),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(alphabet="abk", min_size=1, max_size=3), children, max_size=4)
    ),
    max_leaves=40,
)


def _nodes(value: Any) -> int:
    """The nodes YAML writes ``value`` as: itself, and each key and value or item within."""
    if isinstance(value, list):
        return 1 + sum(_nodes(item) for item in value)
    if isinstance(value, dict):
        return 1 + sum(1 + _nodes(item) for item in value.values())
    return 1


@settings(max_examples=300)
@given(values, st.integers(min_value=1, max_value=60), st.sampled_from([None, True, False]))
def test_a_yaml_body_is_read_up_to_its_node_limit_and_refused_past_it(
    value: Any, limit: int, flow: bool | None
) -> None:
    raw = yaml.safe_dump(value, default_flow_style=flow).encode()
    if _nodes(value) <= limit:
        assert decode_yaml(raw, max_nodes=limit) == value
    else:
        with pytest.raises(BodyError) as refused:
            decode_yaml(raw, max_nodes=limit)
        assert refused.value.code == 413
        assert f"more than {limit} nodes" in refused.value.message


@pytest.mark.parametrize(
    "body",
    [
        "".join(f"k{i}: {i}\n" for i in range(100_000)),
        "[" + "1," * 500_000 + "1]",
        "".join(f"- {i}\n" for i in range(100_000)),
        "a:\n" + "".join(f"  - {{k: {i}, v: [{i}, {i}]}}\n" for i in range(20_000)),
    ],
    ids=["keys", "flow items", "block items", "mappings in a sequence"],
)
def test_a_yaml_body_of_too_many_nodes_is_refused_without_being_read_to_its_end(
    body: str,
) -> None:
    raw = (body + BROKEN_END).encode()
    started = time.process_time()
    with pytest.raises(BodyError) as refused:
        decode_body(raw, "application/yaml")
    assert time.process_time() - started < 0.5  # ~30 ms; the whole read took 2-4 s
    assert refused.value.code == 413
    assert refused.value.message.startswith(
        f"the YAML request body has more than {MAX_YAML_NODES} nodes (keys, values and items)"
    )
    assert "send a document this large as JSON" in refused.value.message


def test_a_yaml_body_at_the_node_limit_is_read() -> None:
    items = MAX_YAML_NODES - 1  # and the sequence itself
    raw = ("[" + "1," * (items - 1) + "1]").encode()
    assert decode_body(raw, "application/yaml") == [1] * items
    keys = (MAX_YAML_NODES - 1) // 2
    mapping = decode_body("".join(f"k{i}: {i}\n" for i in range(keys)).encode(), "text/yaml")
    assert len(mapping) == keys


def test_the_node_limit_reads_an_ordinary_cell_with_large_annotations() -> None:
    document = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Cell",
        "metadata": {"name": "c", "annotations": {"note": "x" * 256 * 1024}},
        "spec": {"containers": [{"id": "main", "image": "busybox", "args": ["a"] * 2000}]},
    }
    assert decode_body(yaml.safe_dump(document).encode(), "application/yaml") == document


def test_directive_lines_past_the_limit_are_refused_before_any_parser_reads_them() -> None:
    tags = "".join(f"%TAG !t{i}! tag:x,{i}:\n" for i in range(40_000))
    started = time.process_time()
    with pytest.raises(BodyError) as refused:
        decode_body((tags + "---\na: 1\n" + BROKEN_END).encode(), "application/yaml")
    assert time.process_time() - started < 0.5  # libyaml took ~8 s over 40,000
    assert refused.value.code == 400
    assert f"more than {MAX_YAML_DIRECTIVES} lines beginning with '%'" in refused.value.message


def test_a_few_directives_are_read() -> None:
    raw = b"%YAML 1.1\n%TAG !k! tag:yaml.org,2002:\n---\na: !k!str 1\n"
    assert decode_body(raw, "application/yaml") == {"a": "1"}
    at_limit = "".join(f"%TAG !t{i}! tag:x,{i}:\n" for i in range(MAX_YAML_DIRECTIVES))
    assert decode_body((at_limit + "---\na: 1\n").encode(), "application/yaml") == {"a": 1}


def test_json_repeating_50000_keys_is_read_in_linear_time() -> None:
    pairs = ",".join(f'"k{i}":1,"k{i}":2,"k{i}":3' for i in range(50_000))
    raw = ('{"a":{' + pairs + '},"b":[{"x":1,"x":2}]}').encode()
    assert len(raw) > MiB
    started = time.process_time()
    found: list[str] = []
    value = decode_json(raw, duplicates=found)
    assert time.process_time() - started < 3  # ~0.2 s; a search per repeat took ~40 s
    assert found == [f"a.k{i}" for i in range(50_000)] + ["b[0].x"]
    assert value["a"]["k7"] == 3
    assert value["b"] == [{"x": 2}]
    with pytest.raises(BodyError) as refused:
        decode_json(raw)
    assert (refused.value.code, refused.value.field) == (422, "a.k0")


def _checks(level: str) -> FieldChecks:
    return FieldChecks(make_mocked_request("POST", f"/x?fieldValidation={level}"))


def test_a_strict_refusal_names_at_most_causes_max_repeated_keys() -> None:
    paths = [f"spec.k{i}" for i in range(50_000)]
    with pytest.raises(ApiError) as refused:
        _checks("Strict").repeated(paths)
    assert len(refused.value.causes) == CAUSES_MAX
    assert refused.value.causes[0].field == "spec.k0"
    assert refused.value.message.endswith("'spec.k9' and 49990 more")


def test_warnings_are_recorded_once_each_in_linear_time() -> None:
    checks = _checks("Warn")
    started = time.process_time()
    checks.repeated([f"spec.k{i}" for i in range(50_000)] + ["spec.k0"])
    warn(checks.request, 'duplicate field "spec.k1"')
    assert time.process_time() - started < 2  # a list searched per warning: minutes
    warnings = checks.request[WARNINGS_KEY]
    recorded = list(warnings)
    assert len(recorded) == 50_000
    assert recorded[:2] == ['duplicate field "spec.k0"', 'duplicate field "spec.k1"']


def _cell(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Cell",
        "metadata": {"name": f"c{index}", "labels": {"app": "web", "tier": "front"}},
        "spec": {
            "realmId": "r",
            "spaceId": "s",
            "stackId": "st",
            "containers": [
                {
                    "id": "main",
                    "image": "busybox",
                    "args": ["sh", "-c", "sleep 1000"],
                    "env": [{"name": f"E{i}", "value": str(i)} for i in range(5)],
                }
            ],
        },
    }


@pytest.mark.parametrize(
    "body",
    [
        "".join(f"k{i}: {i}\n" for i in range(100_000)),
        "[" + "1," * 500_000 + "1]",
        "".join(f"---\n- {i}\n- {i}\n" for i in range(30_000)),
    ],
    ids=["keys", "flow items", "documents"],
)
def test_a_pasted_manifest_of_too_many_nodes_is_refused_before_the_reader_reads_it(
    body: str,
) -> None:
    started = time.process_time()
    with pytest.raises(BodyError) as refused:
        check_manifest((body + BROKEN_END).encode())
    assert time.process_time() - started < 0.5  # ~50 ms; the reader took ~9 s over 1 MiB
    assert refused.value.code == 413
    assert f"more than {MAX_MANIFEST_NODES} nodes" in refused.value.message
    assert "apply a manifest this large with kukectl" in refused.value.message


def test_a_pasted_list_of_500_cells_is_read() -> None:
    text = yaml.safe_dump({"kind": "List", "items": [_cell(i) for i in range(500)]})
    assert check_manifest(text.encode()) == text
    hundreds = "---\n".join(yaml.safe_dump(_cell(i)) for i in range(500))
    assert check_manifest(hundreds.encode()) == hundreds
    with pytest.raises(BodyError, match="lines beginning with '%'"):
        check_manifest(("%TAG !t! tag:x:\n" * 65 + "---\na: 1\n").encode())
