"""get's tables read documents: the server's JSON (every default written out) and a model's
own fields (``shown``) give the same rows, and a document's missing fields read as the
models' defaults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kukeon.api import AnyResource, Kind, parse_resource, to_document
from kukeon.cli.tables import TableLayout, render_table

NOW = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)
CREATED = (NOW - timedelta(hours=5, minutes=3)).isoformat()
CELL_SPEC = {
    "realmId": "prod",
    "spaceId": "edge",
    "stackId": "web",
    "containers": [{"id": "main", "image": "busybox"}, {"id": "side", "image": "busybox"}],
}


def _parsed(
    kind: str, spec: dict[str, Any], status: dict[str, Any] | None = None, **meta: Any
) -> AnyResource:
    document: dict[str, Any] = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": kind,
        "metadata": {"name": "x", "creationTimestamp": CREATED, "labels": {"tier": "a"}, **meta},
        "spec": spec,
    }
    if status is not None:
        document["status"] = status
    return parse_resource(document)


RESOURCES = [
    _parsed("Realm", {}, {"state": "Ready", "cgroupPath": "/kukeon/prod"}),
    _parsed(
        "Space", {"realmId": "prod"}, {"network": {"bridgeName": "kk0", "subnet": "10.1.0.0/24"}}
    ),
    _parsed("Stack", {"realmId": "prod", "spaceId": "edge"}),
    _parsed(
        "Cell",
        CELL_SPEC,
        {
            "state": "Pending",
            "reason": "Pulling",
            "network": {"ip": "10.1.0.5"},
            "containers": [
                {"id": "main", "ready": True, "restartCount": 3},
                {"id": "side", "ready": False, "state": "Ready", "reason": "CrashLoop"},
            ],
        },
    ),
    _parsed("Cell", CELL_SPEC, deletionTimestamp=NOW.isoformat()),
    _parsed(
        "Node",
        {"unschedulable": True},
        {"state": "Ready", "addresses": [{"type": "InternalIP", "address": "10.0.0.7"}]},
    ),
    _parsed("Secret", {}, None, realm="prod", space="edge"),
]


@pytest.mark.parametrize("res", RESOURCES, ids=lambda r: f"{r.kind}")
@pytest.mark.parametrize("wide", [False, True])
def test_the_servers_json_and_the_model_give_the_same_rows(res: AnyResource, wide: bool) -> None:
    layout = TableLayout(
        Kind(res.kind), wide=wide, with_parents=True, label_columns=("tier",), show_labels=True
    )
    from_model = render_table(Kind(res.kind), [res], now=NOW, layout=layout)
    assert render_table(Kind(res.kind), [to_document(res)], now=NOW, layout=layout) == from_model


def test_missing_fields_read_as_the_models_defaults() -> None:
    bare = {"kind": "Cell", "metadata": {"name": "web"}, "spec": CELL_SPEC}
    assert render_table(Kind.CELL, [bare], now=NOW, wide=True).splitlines()[1].split() == [
        *("web", "Pending", "0/2", "0", "<none>", "<none>", "<none>", "<none>", "<none>")
    ]
    node = {"kind": "Node", "metadata": {"name": "n1"}}
    assert render_table(Kind.NODE, [node], now=NOW, wide=True).splitlines()[1].split() == [
        *("n1", "Unknown", "<none>", "<none>", "0", "0Mi", "<none>", "<none>")
    ]


def test_a_container_status_without_ready_counts_by_its_state() -> None:
    """A status written before ``ready`` existed: a container that runs is ready."""
    cell = {
        "kind": "Cell",
        "metadata": {"name": "old"},
        "spec": CELL_SPEC,
        "status": {"containers": [{"id": "main", "state": "Ready"}, {"id": "side"}]},
    }
    assert render_table(Kind.CELL, [cell], now=NOW).splitlines()[1].split()[2] == "1/2"
