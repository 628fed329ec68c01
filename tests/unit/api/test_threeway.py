"""The three-way merge `kukectl apply` writes (kubectl's): the manifest's fields set, the
fields the last apply named and this one does not removed, everything else of the stored
object kept; containers, env and ports merged by key, other lists replaced whole."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from kukeon.api.threeway import three_way

KEYS = st.sampled_from(["a", "b", "c", "d", "e"])
LEAVES = st.one_of(st.integers(-3, 3), st.text(max_size=3), st.booleans(), st.none())
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(KEYS, inner, max_size=3)),
    max_leaves=8,
)
DOCUMENTS = st.dictionaries(KEYS, VALUES, max_size=5)


def _only_what_it_named_went(named: dict[str, Any], stored: dict[str, Any], kept: Any) -> None:
    """Of a map the manifest dropped, what stays (``kept``, None when nothing did): each key
    the record named is gone, but a map the record and the object both hold there, which
    loses only what the record named below it, one level down alike (a map the record named
    empty keeps what others put in it); every key others added is kept as stored."""
    kept = kept or {}
    for inner, value in named.items():
        below = stored.get(inner)
        if isinstance(value, dict) and isinstance(below, dict):
            _only_what_it_named_went(value, below, kept.get(inner))
        else:
            assert inner not in kept
    for inner in stored.keys() - named.keys():
        assert kept[inner] == stored[inner]


@given(DOCUMENTS, DOCUMENTS, DOCUMENTS)
def test_named_fields_are_set_dropped_ones_removed_the_rest_kept(
    original: dict[str, Any], modified: dict[str, Any], live: dict[str, Any]
) -> None:
    merged = three_way(original, modified, live)
    for key, value in modified.items():
        if not (isinstance(value, dict) and isinstance(live.get(key), dict)):
            assert merged[key] == value
    for key in original.keys() - modified.keys():
        named, stored = original[key], live.get(key)
        if isinstance(named, dict) and isinstance(stored, dict):  # only what it named goes
            _only_what_it_named_went(named, stored, merged.get(key))
        else:
            assert key not in merged
    for key in live.keys() - original.keys() - modified.keys():
        assert merged[key] == live[key]


def test_a_map_dropped_whole_keeps_what_others_put_in_a_map_it_named() -> None:
    """The case hypothesis found: the record named `a.c` as an empty map, someone else put
    `x` in it; the manifest drops `a`. `c` loses what the record named in it (nothing), so
    `x` stays, as the module's rule says one level down (the test asserted `c` gone)."""
    merged = three_way({"a": {"c": {}, "d": 1}}, {}, {"a": {"c": {"x": None}, "d": 1, "e": 2}})
    assert merged == {"a": {"c": {"x": None}, "e": 2}}


@given(st.one_of(st.none(), DOCUMENTS), DOCUMENTS, DOCUMENTS)
def test_applying_the_same_manifest_again_changes_nothing(
    original: dict[str, Any] | None, modified: dict[str, Any], live: dict[str, Any]
) -> None:
    once = three_way(original, modified, live)
    assert three_way(modified, modified, once) == once


CONTAINER_LISTS = st.lists(
    st.fixed_dictionaries(
        {"id": st.sampled_from(["x", "y", "z"])},
        optional={
            "image": st.sampled_from(["i", "j"]),
            "env": st.lists(st.sampled_from(["A=1", "A=2", "B=1"]), max_size=3),
        },
    ),
    max_size=3,
)
CELLS = st.fixed_dictionaries({}, optional={"containers": CONTAINER_LISTS, "a": VALUES})


@given(st.one_of(st.none(), CELLS), CELLS, CELLS)
def test_containers_applied_twice_change_nothing_and_keep_others(
    original: dict[str, Any] | None, modified: dict[str, Any], live: dict[str, Any]
) -> None:
    once = three_way(original, modified, live)
    assert three_way(modified, modified, once) == once
    ids = [c["id"] for c in once.get("containers", [])]
    named = [c["id"] for c in modified.get("containers", [])]
    stored = [c["id"] for c in live.get("containers", [])]
    recorded = [c["id"] for c in (original or {}).get("containers", [])]
    unique = all(len(set(ids)) == len(ids) for ids in (named, stored, recorded))
    if "containers" in modified and unique and "containers" in live:
        before = set(recorded)
        assert ids == named + [i for i in stored if i not in named and i not in before]


@given(DOCUMENTS)
def test_a_manifest_over_itself_is_itself(document: dict[str, Any]) -> None:
    assert three_way(document, document, document) == document


def _containers(*names: str, **fields: Any) -> list[dict[str, Any]]:
    return [{"id": name, "image": "busybox", **fields} for name in names]


def test_maps_merge_key_by_key() -> None:
    live = {"labels": {"app": "web", "team": "a"}, "nodeSelector": {"disk": "ssd"}}
    original = {"labels": {"app": "web", "old": "x"}}
    merged = three_way(
        original, {"labels": {"app": "api"}}, {**live, "labels": {**live["labels"], "old": "x"}}
    )
    assert merged == {"labels": {"app": "api", "team": "a"}, "nodeSelector": {"disk": "ssd"}}


def test_a_map_dropped_from_the_manifest_keeps_what_others_added() -> None:
    """The manifest no longer has `annotations` at all: the ones it named go, the
    scheduler's and `kukectl annotate`'s stay."""
    live = {"annotations": {"owner": "a", "kukeon.io/scheduled-by": "scheduler", "note": "x"}}
    merged = three_way({"annotations": {"owner": "a"}}, {}, live)
    assert merged == {"annotations": {"kukeon.io/scheduled-by": "scheduler", "note": "x"}}
    assert three_way({"annotations": {"owner": "a"}}, {}, {"annotations": {"owner": "b"}}) == {}
    assert three_way({"env": ["A=1"]}, {}, {"env": ["A=1", "B=2"]}) == {"env": ["B=2"]}


def test_containers_merge_by_id_field_by_field() -> None:
    live = {
        "containers": [
            {"id": "a", "image": "busybox", "env": ["X=1", "Y=2"], "args": ["1"]},
            {"id": "b", "image": "busybox"},
            {"id": "sidecar", "image": "busybox"},  # added by someone else
        ]
    }
    original = {
        "containers": [
            {"id": "a", "image": "busybox", "env": ["X=1"]},
            {"id": "b", "image": "busybox"},
        ]
    }
    modified = {
        "containers": [
            {"id": "a", "image": "busybox:2", "env": ["X=5"]},
            {"id": "c", "image": "busybox"},
        ]
    }
    merged = three_way(original, modified, live)
    assert merged["containers"] == [
        # the image and X set, Y (set env's) and args (never named) kept
        {"id": "a", "image": "busybox:2", "env": ["X=5", "Y=2"], "args": ["1"]},
        {"id": "c", "image": "busybox"},  # added
        {"id": "sidecar", "image": "busybox"},  # b dropped by the manifest; sidecar kept
    ]


def test_env_dropped_since_the_last_apply_goes_ports_merge_by_entry() -> None:
    live = {"env": ["A=1", "B=2", "C=3"], "ports": ["8080:80", "9090:90"], "args": ["x", "y"]}
    original = {"env": ["A=1", "B=2"], "ports": ["8080:80"], "args": ["x", "y"]}
    modified = {"env": ["A=1"], "ports": ["8081:80"], "args": ["z"]}
    merged = three_way(original, modified, live)
    assert merged == {"env": ["A=1", "C=3"], "ports": ["8081:80", "9090:90"], "args": ["z"]}


def test_a_list_whose_keys_repeat_is_replaced_whole() -> None:
    merged = three_way(None, {"env": ["A=1", "A=2"]}, {"env": ["B=1"]})
    assert merged == {"env": ["A=1", "A=2"]}


def test_a_probe_is_replaced_whole() -> None:
    live = {"livenessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 10}}
    merged = three_way(None, {"livenessProbe": {"tcpSocket": {"port": 80}}}, live)
    assert merged == {"livenessProbe": {"tcpSocket": {"port": 80}}}


def test_a_record_that_is_no_object_is_read_as_none() -> None:
    merged = three_way({"labels": "not a map"}, {"labels": {"a": "1"}}, {"labels": {"b": "2"}})
    assert merged == {"labels": {"a": "1", "b": "2"}}
