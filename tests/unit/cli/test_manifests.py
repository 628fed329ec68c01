"""apply/delete planning: validation of every document, ordering, parents, update decisions."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from kukeon.api import AnyResource, Kind, key_of, parse_resource, to_document
from kukeon.api.applying import updated_object
from kukeon.cli.manifests import (
    Source,
    apply_order,
    default_object,
    delete_order,
    load_documents,
    parent_chain,
    read_sources,
)
from kukeon.cli.runner import ManifestProblems

MIXED = """\
apiVersion: v1beta1
kind: Cell
metadata: {name: web}
spec:
  realmId: r
  containers: [{id: main, image: busybox}]
---
apiVersion: v1beta1
kind: Stack
metadata: {name: st}
---
apiVersion: v1beta1
kind: Realm
metadata: {name: r}
---
apiVersion: v1beta1
kind: Space
metadata: {name: s}
spec: {realmId: r}
---
apiVersion: v1beta1
kind: Realm
metadata: {name: r2}
"""


def test_parents_before_children_file_order_within_a_kind() -> None:
    documents = load_documents([Source("m.yaml", MIXED)])
    assert [d.name for d in apply_order(documents)] == [
        "realm/r",
        "realm/r2",
        "space/s",
        "stack/st",
        "cell/web",
    ]
    assert [d.name for d in delete_order(documents)] == [
        "cell/web",
        "stack/st",
        "space/s",
        "realm/r",
        "realm/r2",
    ]
    assert [d.position for d in documents] == [0, 1, 2, 3, 4]


def test_every_invalid_document_is_listed_with_source_and_index() -> None:
    bad = """\
apiVersion: v1beta1
kind: Realm
metadata: {name: ok}
---
apiVersion: v1beta1
kind: Cell
metadata: {name: web}
spec: {containers: [{id: a}, {id: b, image: x, colour: red}]}
---
kind: Nope
"""
    with pytest.raises(ManifestProblems) as problems:
        load_documents([Source("good.yaml", MIXED), Source("bad.yaml", bad)])
    lines = problems.value.lines
    assert all(line.startswith("bad.yaml: document ") for line in lines), lines
    assert any(
        "document 1" in line and "spec.containers[0].image: required" in line for line in lines
    )
    assert any(
        "document 1" in line and "spec.containers[1].colour: unknown field" in line
        for line in lines
    )
    assert any(line.startswith("bad.yaml: document 2") and "kind" in line for line in lines)


def test_empty_input_is_a_problem() -> None:
    with pytest.raises(ManifestProblems, match="no objects"):
        load_documents([Source("-", "")])


def test_read_sources(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("b")
    (tmp_path / "a.json").write_text("a")
    (tmp_path / "notes.txt").write_text("ignored")
    sources = read_sources([str(tmp_path), "-"], stdin=io.StringIO("from stdin"))
    assert [s.text for s in sources] == ["a", "b", "from stdin"]
    with pytest.raises(ManifestProblems, match="no such file"):
        read_sources([str(tmp_path / "missing.yaml")])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ManifestProblems, match=r"no \*\.yaml"):
        read_sources([str(empty)])


def test_a_file_that_is_not_text_is_named(tmp_path: Path) -> None:
    """It was `cannot read manifests: 'utf-8' codec can't decode byte 0xbd...`, no file."""
    (tmp_path / "good.yaml").write_text("kind: Realm")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"kind: \xbd\x00")
    with pytest.raises(ManifestProblems) as info:
        read_sources([str(tmp_path)])
    assert info.value.lines == [f"{binary}: not UTF-8 text (byte 0xbd at offset 6)"]


def test_parent_chain_and_default_parents() -> None:
    (cell,) = [
        d.resource for d in load_documents([Source("m", MIXED)]) if d.resource.kind == "Cell"
    ]
    chain = parent_chain(cell)
    assert chain == [
        (Kind.REALM, ("r",)),
        (Kind.SPACE, ("r", "default")),
        (Kind.STACK, ("r", "default", "default")),
    ]
    stack = default_object(Kind.STACK, ("r", "default", "default"))
    assert key_of(stack) == ("r", "default", "default")
    assert parent_chain(default_object(Kind.REALM, ("r",))) == []


def _stored(document: Mapping[str, Any]) -> AnyResource:
    stored = dict(document)
    stored["metadata"] = {**document["metadata"], "resourceVersion": "5", "uid": "u"}
    stored["status"] = {"state": "Ready"}
    return parse_resource(stored)


CELL: dict[str, Any] = {
    "apiVersion": "kukeon.io/v1beta1",
    "kind": "Cell",
    "metadata": {"name": "web", "labels": {"a": "1"}},
    "spec": {"containers": [{"id": "main", "image": "busybox"}]},
}


def test_unchanged_when_spec_labels_annotations_match() -> None:
    desired = parse_resource(CELL)
    current = _stored(CELL)
    assert updated_object(desired, current) is None
    # a document read back from the server (status, uid, resourceVersion) is unchanged too
    round_trip = parse_resource(to_document(current))
    assert updated_object(round_trip, current) is None


def test_changes_keep_identity_and_status() -> None:
    changed = parse_resource({**CELL, "metadata": {"name": "web", "labels": {"a": "2"}}})
    current = _stored(CELL)
    update = updated_object(changed, current)
    assert update is not None
    assert update.metadata.labels == {"a": "2"}
    assert update.metadata.resource_version == "5"
    assert update.metadata.uid == "u"
    assert str(update.status.state) == "Ready"


def test_server_owned_node_name_is_kept() -> None:
    scheduled = {**CELL, "spec": {**CELL["spec"], "nodeName": "node-a"}}
    current = _stored(scheduled)
    assert updated_object(parse_resource(CELL), current) is None


def test_kukeon_annotations_set_by_the_system_are_kept() -> None:
    annotated = {
        **CELL,
        "metadata": {
            **CELL["metadata"],
            "annotations": {"kukeon.io/scheduled-by": "scheduler", "team": "old"},
        },
    }
    current = _stored(annotated)
    # the manifest says nothing of kukeon.io/scheduled-by: kept; its own annotation wins
    desired = parse_resource(
        {**CELL, "metadata": {**CELL["metadata"], "annotations": {"team": "new"}}}
    )
    update = updated_object(desired, current)
    assert update is not None
    assert update.metadata.annotations == {"kukeon.io/scheduled-by": "scheduler", "team": "new"}
    same = parse_resource(
        {**CELL, "metadata": {**CELL["metadata"], "annotations": {"team": "old"}}}
    )
    assert updated_object(same, current) is None


def test_a_node_document_sorts_first_to_apply_and_last_to_delete() -> None:
    node = """\
apiVersion: kukeon.io/v1beta1
kind: Node
metadata: {name: n1, labels: {zone: a}}
spec: {}
"""
    documents = load_documents([Source("m.yaml", MIXED), Source("node.yaml", node)])
    assert apply_order(documents)[0].name == "node/n1"
    assert delete_order(documents)[-1].name == "node/n1"


def test_a_restart_stamp_in_a_set_template_survives_apply() -> None:
    """`rollout restart` writes `kukeon.io/restartedAt` into the template; an apply of the
    manifest, which does not name it, keeps it (else every cell would roll again)."""
    from tests.unit.api.test_cellset import set_doc

    manifest = set_doc()
    manifest["spec"]["template"]["metadata"]["annotations"] = {"team": "a"}
    restarted = to_document(parse_resource(manifest))
    restarted["spec"]["template"]["metadata"]["annotations"]["kukeon.io/restartedAt"] = "t1"
    restarted["metadata"] = {**restarted["metadata"], "resourceVersion": "5", "uid": "u"}
    current = parse_resource(restarted)
    assert updated_object(parse_resource(manifest), current) is None
    manifest["spec"]["template"]["metadata"]["annotations"] = {"team": "b"}
    update = updated_object(parse_resource(manifest), current)
    assert update is not None
    assert to_document(update)["spec"]["template"]["metadata"]["annotations"] == {
        "kukeon.io/restartedAt": "t1",
        "team": "b",
    }
