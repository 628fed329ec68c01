"""The CellSet model: selector, strategy, template identity, the cells it describes."""

from __future__ import annotations

from typing import Any

import pytest

from kukeon.api import (
    CELLSET_LABEL,
    TEMPLATE_HASH_LABEL,
    Cell,
    CellSet,
    InvalidResource,
    key_of,
    parent_of,
    parse_resource,
)
from kukeon.api.cellset import NAME_MAX, resolve, template_hash
from kukeon.api.meta import Kind
from kukeon.api.placement import NodeView, choose_node


def set_doc(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "CellSet",
        "metadata": {"name": "web"},
        "spec": {
            "realmId": "r",
            "spaceId": "s",
            "stackId": "st",
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web", "tier": "front"}},
                "spec": {"containers": [{"id": "main", "image": "busybox"}]},
            },
            **spec,
        },
    }


def errors_of(doc: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidResource) as caught:
        parse_resource(doc)
    return {error.field: error.message for error in caught.value.causes}


def test_a_set_lives_in_its_stack() -> None:
    cellset = parse_resource(set_doc())
    assert isinstance(cellset, CellSet)
    assert key_of(cellset) == ("r", "s", "st", "web")
    assert parent_of(cellset) == (Kind.STACK, ("r", "s", "st"))


def test_cells_are_named_and_labelled() -> None:
    cellset = parse_resource(set_doc())
    assert isinstance(cellset, CellSet)
    hash_ = cellset.template_hash()
    assert len(hash_) == 8
    cell = parse_resource(cellset.cell_document(f"web-{hash_}-abcde", hash_))
    assert isinstance(cell, Cell)
    assert key_of(cell) == ("r", "s", "st", f"web-{hash_}-abcde")
    assert cell.metadata.labels == {
        "app": "web",
        "tier": "front",
        CELLSET_LABEL: "web",
        TEMPLATE_HASH_LABEL: hash_,
    }
    assert cell.spec.containers[0].image == "busybox"


def test_the_hash_follows_the_template_only() -> None:
    one = parse_resource(set_doc())
    scaled = parse_resource(set_doc(replicas=7))
    doc = set_doc()
    doc["spec"]["template"]["spec"]["containers"][0]["image"] = "httpd"
    changed = parse_resource(doc)
    assert isinstance(one, CellSet)
    assert isinstance(scaled, CellSet)
    assert isinstance(changed, CellSet)
    assert one.template_hash() == scaled.template_hash() != changed.template_hash()


def test_template_annotations_go_to_the_cells_and_roll_them() -> None:
    plain = parse_resource(set_doc())
    assert isinstance(plain, CellSet)
    # What the hash was before templates had annotations: an upgrade rolls no set.
    assert plain.template_hash() == "031bb943"
    doc = set_doc()
    doc["spec"]["template"]["metadata"]["annotations"] = {}
    empty = parse_resource(doc)
    assert isinstance(empty, CellSet)
    assert empty.template_hash() == plain.template_hash()
    doc["spec"]["template"]["metadata"]["annotations"] = {"kukeon.io/restartedAt": "now"}
    restarted = parse_resource(doc)
    assert isinstance(restarted, CellSet)
    hash_ = restarted.template_hash()
    assert hash_ != plain.template_hash()
    cell = parse_resource(restarted.cell_document(f"web-{hash_}-abcde", hash_))
    assert cell.metadata.annotations == {"kukeon.io/restartedAt": "now"}


def test_the_selector_must_match_the_template_labels() -> None:
    doc = set_doc(selector={"matchLabels": {"app": "api"}})
    assert "needs app=api" in errors_of(doc)["spec.selector.matchLabels"]
    doc = set_doc(selector={"matchLabels": {}})
    assert "spec.selector.matchLabels" in errors_of(doc)
    doc = set_doc()
    del doc["spec"]["selector"]
    assert "spec.selector" in errors_of(doc)


def test_the_template_has_no_identity() -> None:
    doc = set_doc()
    template = doc["spec"]["template"]["spec"]
    template["id"] = "x"
    template["containers"][0]["cellId"] = "x"
    template["containers"][0]["realmId"] = "r"
    errors = errors_of(doc)
    assert "spec.template.spec.id" in errors
    assert "spec.template.spec.containers[0].cellId" in errors
    assert "spec.template.spec.containers[0].realmId" in errors


def test_the_template_follows_the_cells_rules() -> None:
    doc = set_doc()
    doc["spec"]["template"]["spec"]["containers"] = []
    assert "spec.template.spec.containers" in errors_of(doc)


def test_unknown_fields_are_refused() -> None:
    for field in ("spread", "profile"):
        assert f"spec.{field}" in errors_of(set_doc(**{field: 1}))


def test_the_strategy() -> None:
    cellset = parse_resource(set_doc(replicas=10))
    assert isinstance(cellset, CellSet)
    assert cellset.spec.surge_and_unavailable() == (3, 2)  # 25%: surge up, unavailable down
    rolling = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": "0%"}}
    cellset = parse_resource(set_doc(strategy=rolling))
    assert isinstance(cellset, CellSet)
    assert cellset.spec.surge_and_unavailable() == (1, 0)
    small = parse_resource(set_doc(replicas=1, strategy={"rollingUpdate": {"maxSurge": "0%"}}))
    assert isinstance(small, CellSet)
    assert small.spec.surge_and_unavailable() == (0, 1)  # never both zero
    both_zero = {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}}
    assert "spec.strategy.rollingUpdate.maxUnavailable" in errors_of(set_doc(strategy=both_zero))
    recreate = {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}
    assert "spec.strategy.rollingUpdate" in errors_of(set_doc(strategy=recreate))
    bad = {"rollingUpdate": {"maxSurge": "1.5%"}}
    assert any(
        f.startswith("spec.strategy.rollingUpdate.maxSurge")
        for f in errors_of(set_doc(strategy=bad))
    )
    assert resolve("50%", 3, round_up=True) == 2
    assert resolve("50%", 3, round_up=False) == 1


@pytest.mark.parametrize("value", ["-5%", "1.5%", "abc", 3.5, True, None, 20000, [1]])
def test_a_wrong_count_or_percentage_is_one_error_naming_the_field(value: Any) -> None:
    doc = set_doc(strategy={"rollingUpdate": {"maxSurge": value}})
    with pytest.raises(InvalidResource) as caught:
        parse_resource(doc)
    causes = [(c.field, c.message) for c in caught.value.causes]
    assert [field for field, _ in causes] == ["spec.strategy.rollingUpdate.maxSurge"]
    assert "a count from 0 to 10000 or a percentage of replicas" in causes[0][1]
    assert "constrained" not in str(caught.value)


def test_a_long_name_is_refused() -> None:
    doc = set_doc()
    doc["metadata"]["name"] = "a" * (NAME_MAX + 1)
    assert "metadata.name" in errors_of(doc)


def test_the_progress_deadline() -> None:
    cellset = parse_resource(set_doc())
    assert isinstance(cellset, CellSet)
    assert cellset.spec.progress_deadline_seconds == 600
    assert "spec.progressDeadlineSeconds" in errors_of(set_doc(progressDeadlineSeconds=0))
    assert "spec.progressDeadlineSeconds" in errors_of(set_doc(progressDeadlineSeconds="60"))
    late = errors_of(set_doc(progressDeadlineSeconds=10, minReadySeconds=10))
    assert "greater than spec.minReadySeconds" in late["spec.progressDeadlineSeconds"]
    # The default too: a minReadySeconds of 600 or more needs a longer deadline.
    assert "spec.progressDeadlineSeconds" in errors_of(set_doc(minReadySeconds=600))


def test_the_sets_node_selector_goes_to_every_cell_and_rolls_them() -> None:
    doc = set_doc(nodeSelector={"zone": "a"})
    doc["spec"]["template"]["spec"]["nodeSelector"] = {"disk": "ssd"}
    cellset = parse_resource(doc)
    assert isinstance(cellset, CellSet)
    hash_ = cellset.template_hash()
    cell = parse_resource(cellset.cell_document(f"web-{hash_}-abcde", hash_))
    assert isinstance(cell, Cell)
    assert cell.spec.node_selector == {"disk": "ssd", "zone": "a"}
    nodes = [
        NodeView("n1", ready=True, labels={"disk": "ssd", "zone": "b"}),
        NodeView("n2", ready=True, labels={"disk": "ssd", "zone": "a"}),
    ]
    assert choose_node(cell, nodes).node == "n2"  # the scheduler honours it
    other = parse_resource({**doc, "spec": {**doc["spec"], "nodeSelector": {"zone": "b"}}})
    assert isinstance(other, CellSet)
    assert other.template_hash() != hash_
    # Without one, the hash is the template's alone (as before the field existed).
    plain = parse_resource(set_doc())
    assert isinstance(plain, CellSet)
    assert plain.template_hash() == template_hash(plain.spec.template)
    doc["spec"]["nodeSelector"] = {"disk": "hdd"}
    why = errors_of(doc)["spec.nodeSelector.disk"]
    assert "conflicts with spec.template.spec.nodeSelector (disk=ssd)" in why


def test_the_lost_node_rules() -> None:
    cellset = parse_resource(set_doc())
    assert isinstance(cellset, CellSet)
    assert cellset.spec.lost_node.replace_after_seconds == 60
    assert cellset.spec.lost_node.stop_on_return is True
    refused = errors_of(set_doc(lostNode={"stopOnReturn": False}))
    assert "spec.lostNode.stopOnReturn" in refused
    assert "spec.lostNode.replaceAfterSeconds" in errors_of(
        set_doc(lostNode={"replaceAfterSeconds": -1})
    )
