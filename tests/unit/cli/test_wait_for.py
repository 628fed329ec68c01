"""`kukectl wait --for`: kubectl's forms beside kukeon's state=STATE. `condition=NAME[=VALUE]`
reads `status.conditions` (a CellSet's Available, a node's Ready), and a kind without
conditions keeps condition=Ready as its state Ready; `jsonpath={PATH}[=VALUE]` compares the
template's text. Before, condition=Available was refused and condition=Ready on a CellSet
waited for a state it never has, until the timeout."""

from __future__ import annotations

from typing import Any

import click
import pytest

from kukeon.api import AnyResource, parse_resource
from kukeon.cli.wait import Wanted, _parse_condition, observe


def _cellset(**conditions: str) -> AnyResource:
    return parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "CellSet",
            "metadata": {"name": "api"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "api"}},
                "template": {
                    "metadata": {"labels": {"app": "api"}},
                    "spec": {"containers": [{"id": "main", "image": "busybox"}]},
                },
            },
            "status": {
                "readyReplicas": 2,
                "conditions": [{"type": t, "status": s} for t, s in conditions.items()],
            },
        }
    )


def _cell(state: str, **status: Any) -> AnyResource:
    return parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {"name": "web"},
            "spec": {"containers": [{"id": "main", "image": "busybox"}]},
            "status": {"state": state, **status},
        }
    )


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        ("delete", Wanted("delete")),
        ("state=Ready", Wanted("state", "Ready")),
        ("condition=Available", Wanted("condition", "Available")),
        ("condition=Available=false", Wanted("condition", "Available", "false")),
        ("jsonpath={.status.state}=Ready", Wanted("jsonpath", "{.status.state}", "Ready")),
        ("jsonpath={.status.network.ip}", Wanted("jsonpath", "{.status.network.ip}")),
        ("jsonpath=.status.readyReplicas=2", Wanted("jsonpath", "{.status.readyReplicas}", "2")),
    ],
)
def test_the_forms_of_for(text: str, wanted: Wanted) -> None:
    assert _parse_condition(text) == wanted


@pytest.mark.parametrize(
    "text",
    [
        "color=blue",
        "state=",
        "condition=",
        "condition=a=b=c",
        "jsonpath={.a}=",
        "jsonpath={}",
        "jsonpath={.a}x",
        "jsonpath={.items[0,1]}=1",  # a union (kubectl's filters are read)
    ],
)
def test_other_forms_are_usage_errors(text: str) -> None:
    with pytest.raises(click.exceptions.Exit) as exit_:
        _parse_condition(text)
    assert exit_.value.exit_code == 2


def test_a_condition_is_read_from_the_conditions() -> None:
    available = _cellset(Available="True", Progressing="False")
    assert observe(available, Wanted("condition", "available")) == (True, "Available is True")
    assert observe(available, Wanted("condition", "Progressing")) == (False, "Progressing is False")
    assert observe(available, Wanted("condition", "Progressing", "false"))[0]
    assert observe(available, Wanted("condition", "ReplicaFailure")) == (
        False,
        "it has no ReplicaFailure condition",
    )
    # a CellSet has no state: condition=Ready is not met by anything it could reach
    assert observe(available, Wanted("condition", "Ready")) == (False, "it has no Ready condition")


def test_condition_ready_of_a_kind_without_conditions_is_its_state() -> None:
    assert observe(_cell("Ready"), Wanted("condition", "Ready")) == (True, "it is Ready")
    assert observe(_cell("Pending"), Wanted("condition", "Ready")) == (False, "it is Pending")
    assert observe(_cell("Pending"), Wanted("state", "pending")) == (True, "it is Pending")


def test_condition_ready_false_of_a_kind_without_conditions_is_any_other_state() -> None:
    # kubectl's --for=condition=Ready=false waits for the condition to be False; it was
    # met by a Ready cell (the value was dropped on the way to state=Ready).
    ready, stopped = _cell("Ready"), _cell("Stopped")
    assert observe(ready, Wanted("condition", "Ready", "false")) == (False, "it is Ready")
    assert observe(stopped, Wanted("condition", "ready", "False")) == (True, "it is Stopped")
    assert observe(ready, Wanted("condition", "Ready", "true")) == (True, "it is Ready")
    assert not observe(ready, Wanted("condition", "Ready", "Unknown"))[0]


def test_a_timeout_says_why_the_state_is_not_reached_yet() -> None:
    # the cell's reason and message, as describe shows them (the timeout said only Pending)
    waiting = _cell("Pending", reason="ContainersNotReady", message="container app: no /ready")
    assert observe(waiting, Wanted("condition", "Ready")) == (
        False,
        "it is Pending: ContainersNotReady: container app: no /ready",
    )


def test_a_jsonpath_is_compared_as_text() -> None:
    assert observe(_cellset(), Wanted("jsonpath", "{.status.readyReplicas}", "2"))[0]
    pending = _cell("Pending")
    assert observe(pending, Wanted("jsonpath", "{.status.network.ip}")) == (
        False,
        "{.status.network.ip} is ''",
    )
    placed = _cell("Ready", network={"ip": "10.0.0.5"})
    assert observe(placed, Wanted("jsonpath", "{.status.network.ip}"))[0]
    assert not observe(placed, Wanted("jsonpath", "{.status.state}", "Stopped"))[0]
