"""Golden output of kukectl's tables and describe pages (fixed clock)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from kukeon.api import AnyResource, Kind, parse_resource
from kukeon.cli.output import describe, render
from kukeon.cli.tables import TableLayout, WatchTable, human_duration, render_table

NOW = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)


def _cell(
    name: str, *, age: timedelta, containers: list[dict[str, Any]], **status: Any
) -> AnyResource:
    return parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {
                "name": name,
                "creationTimestamp": (NOW - age).isoformat(),
                "resourceVersion": "12",
                "uid": "u-1",
                "labels": {"app": name},
            },
            "spec": {
                "realmId": "prod",
                "spaceId": "edge",
                "stackId": "web",
                "containers": [{"id": c["id"], "image": "busybox"} for c in containers],
            },
            "status": {"containers": containers, **status},
        }
    )


CELLS = [
    _cell(
        "api",
        age=timedelta(minutes=3, seconds=12),
        containers=[
            {"id": "main", "state": "Ready", "restartCount": 2, "pid": 4242},
            {"id": "side", "state": "Ready", "restartCount": 1},
        ],
        state="Ready",
        network={"ip": "10.88.0.5"},
        nodeName="node-a",
        cgroupPath="/kukeon/prod/edge/web/api",
    ),
    _cell(
        "batch-job",
        age=timedelta(days=3, hours=4),
        containers=[{"id": "run", "state": "Stopped", "exitCode": 137, "exitSignal": "SIGKILL"}],
        state="Exited",
    ),
]


def test_cells_table() -> None:
    assert render_table(Kind.CELL, CELLS, now=NOW) == (
        "NAME        STATE    READY   RESTARTS   AGE\n"
        "api         Ready    2/2     3          3m12s\n"
        "batch-job   Exited   0/1     0          3d4h"
    )


WIDE = """\
REALM   SPACE   STACK   NAME        STATE    READY   RESTARTS   AGE     IP          NODE     REASON   CGROUP
prod    edge    web     api         Ready    2/2     3          3m12s   10.88.0.5   node-a   <none>   /kukeon/prod/edge/web/api
prod    edge    web     batch-job   Exited   0/1     0          3d4h    <none>      <none>   <none>   <none>"""  # noqa: E501


def test_cells_table_across_parents_and_wide() -> None:
    assert render_table(Kind.CELL, CELLS, now=NOW, with_parents=True, wide=True) == WIDE


def test_realms_spaces_stacks_tables() -> None:
    realm = parse_resource(
        {
            "apiVersion": "v1beta1",
            "kind": "Realm",
            "metadata": {
                "name": "prod",
                "creationTimestamp": (NOW - timedelta(hours=30)).isoformat(),
            },
        }
    )
    space = parse_resource(
        {
            "apiVersion": "v1beta1",
            "kind": "Space",
            "metadata": {"name": "edge", "deletionTimestamp": NOW.isoformat()},
            "spec": {"realmId": "prod"},
        }
    )
    assert (
        render_table(Kind.REALM, [realm], now=NOW) == "NAME   STATE     AGE\nprod   Pending   30h"
    )
    assert render_table(Kind.SPACE, [space], now=NOW, with_parents=True) == (
        "REALM   NAME   STATE      AGE\nprod    edge   Deleting   <none>"
    )
    assert render(Kind.SPACE, [space], "name") == "space/edge"


def test_yaml_and_json() -> None:
    one = render(Kind.CELL, CELLS[:1], "yaml")
    assert yaml.safe_load(one)["metadata"]["name"] == "api"
    many = render(Kind.CELL, CELLS, "yaml")
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(many)] == ["api", "batch-job"]
    assert '"kind": "List"' in render(Kind.CELL, CELLS, "json")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (-5, "0s"),
        (119, "119s"),
        (120, "2m"),
        (192, "3m12s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600 + 5 * 60, "3h5m"),
        (30 * 3600, "30h"),
        (76 * 3600, "3d4h"),
        (40 * 86400, "40d"),
        (800 * 86400, "2y"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_describe_cell() -> None:
    page = describe(CELLS[1], now=NOW)
    lines = page.splitlines()
    assert lines[0] == "Name:             batch-job"
    assert "Realm:            prod" in lines
    assert "Labels:           app=batch-job" in lines
    assert "Spec:" in lines
    assert "  Containers:" in lines
    assert "    run:" in lines
    assert "      image: busybox" in lines
    assert "      args: []" not in lines  # empty defaults are left out
    assert "  State:               Exited" in lines
    container_header = lines.index("Containers:")
    assert lines[container_header + 1].split() == [
        "ID",
        "STATE",
        "READY",
        "PID",
        "EXIT",
        "CODE",
        "RESTARTS",
        "REASON",
        "MESSAGE",
    ]
    assert lines[container_header + 2].split()[:6] == [
        "run",
        "Stopped",
        "false",
        "<none>",
        "137",
        "(SIGKILL)",
    ]


def test_nodes_table_wide() -> None:
    node = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Node",
            "metadata": {"name": "node-a", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {
                "state": "Ready",
                "addresses": [
                    {"type": "Hostname", "address": "node-a.example.org"},
                    {"type": "InternalIP", "address": "10.0.0.5"},
                ],
                "capacity": {
                    "cpus": 2,
                    "memoryBytes": 24 * 1024**3,
                    "cgroupMode": "hybrid",
                    "containerdVersion": "1.6.20",
                },
            },
        }
    )
    table = render_table(Kind.NODE, [node], now=NOW, wide=True).splitlines()
    assert table[0].split() == [
        "NAME", "STATE", "AGE", "INTERNAL-IP", "CPUS", "MEMORY", "CGROUPS", "CONTAINERD"
    ]  # fmt: skip
    assert table[1].split()[3:] == ["10.0.0.5", "2", "24576Mi", "hybrid", "1.6.20"]


def test_describe_lists_what_each_node_materialised() -> None:
    from kukeon.api import Space, Stack

    space = Space.model_validate(
        {
            "metadata": {"name": "s1"},
            "spec": {"realmId": "r"},
            "status": {
                "state": "Ready",
                "nodes": {
                    "n2": {"state": "Creating", "reason": "ParentNotReadyOnNode"},
                    "n1": {
                        "state": "Ready",
                        "cgroupPath": "/kukeon/r/s1",
                        "bridgeName": "k-abc",
                        "subnet": "10.88.0.0/24",
                    },
                },
            },
        }
    )
    text = describe(space)
    nodes = text.split("Nodes:\n", 1)[1].splitlines()
    assert nodes[0].split() == ["NODE", "STATE", "CGROUP", "BRIDGE", "SUBNET", "REASON"]
    assert nodes[1].split() == ["n1", "Ready", "/kukeon/r/s1", "k-abc", "10.88.0.0/24", "<none>"]
    assert nodes[2].split() == [
        "n2",
        "Creating",
        "<none>",
        "<none>",
        "<none>",
        "ParentNotReadyOnNode",
    ]
    empty = describe(Stack.model_validate({"metadata": {"name": "st"}}))
    assert empty.rstrip().endswith("Nodes:\n  <none>")


def test_watch_rows_stay_under_their_header() -> None:
    table = WatchTable(TableLayout(Kind.CELL))
    table.fit(CELLS, NOW)
    lines = [table.header(), *(table.row(cell, NOW) for cell in CELLS)]
    later = _cell(
        "a-later-cell", age=timedelta(seconds=1), containers=[{"id": "m"}], state="Pending"
    )
    lines.append(table.row(later, NOW))
    starts = [[m.start() for m in re.finditer(r"\S+", line)] for line in lines]
    assert all(columns == starts[0] for columns in starts), "\n".join(lines)


def _node(*, unschedulable: bool) -> AnyResource:
    return parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Node",
            "metadata": {"name": "n1", "creationTimestamp": (NOW - timedelta(hours=2)).isoformat()},
            "spec": {"unschedulable": unschedulable},
            "status": {
                "state": "Ready",
                "addresses": [{"type": "InternalIP", "address": "10.0.0.7"}],
                "capacity": {"cpus": 4, "memoryBytes": 8 << 30, "cgroupMode": "v2"},
                "allocatable": {"cpus": 4, "memoryBytes": 7 << 30},
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KukeondReady",
                        "lastTransitionTime": (NOW - timedelta(minutes=5)).isoformat(),
                    }
                ],
                "lastHeartbeatTime": (NOW - timedelta(seconds=4)).isoformat(),
            },
        }
    )


def test_describe_node_shows_addresses_capacity_conditions_and_heartbeat() -> None:
    page = describe(_node(unschedulable=False), now=NOW)
    assert "  InternalIP: 10.0.0.7" in page
    assert "Last Heartbeat: 2026-01-02T11:59:56+00:00 (4s ago)" in page
    assert "Capacity:\n  cpu:    4\n  memory: 8192Mi" in page
    assert "Allocatable:\n  cpu:    4\n  memory: 7168Mi" in page
    assert "  Cgroup Mode:        v2" in page
    assert "  Ready   True     5m ago            KukeondReady   <none>" in page


def test_describe_shows_only_the_status_fields_the_kind_has() -> None:
    # a node has no cgroup and no ready time: "Cgroup: <none>" on its page meant nothing
    node_status = describe(_node(unschedulable=False), now=NOW).split("Status:\n", 1)[1]
    node_labels = [line.split(":", 1)[0].strip() for line in node_status.splitlines()[:6]]
    assert node_labels == ["State", "Reason", "Message", "Observed Generation", "Node", "Updated"]
    assert "Cgroup:" not in node_status
    assert "Ready Since:" not in node_status
    cell = describe(CELLS[0], now=NOW)
    assert "  Cgroup:              /kukeon/prod/edge/web/api" in cell
    assert "  Ready Since:         <none>" in cell
    realm = describe(
        parse_resource(
            {"apiVersion": "kukeon.io/v1beta1", "kind": "Realm", "metadata": {"name": "r"}}
        ),
        now=NOW,
    )
    assert "  Cgroup:" in realm
    assert "  Ready Since:" in realm


def test_a_cordoned_node_shows_scheduling_disabled() -> None:
    table = render(Kind.NODE, [_node(unschedulable=True)], "table", now=NOW)
    assert table.splitlines()[1].split()[:2] == ["n1", "Ready,SchedulingDisabled"]


def test_a_deleted_objects_watch_row_claims_nothing_ready() -> None:
    # a DELETED event carries the object's last state: its containers were ready then
    cells = WatchTable(TableLayout(Kind.CELL))
    deleted = cells.row(CELLS[0], NOW, event="DELETED")
    assert deleted.split() == ["api", "Deleted", "0/2", "3", "3m12s"]
    assert cells.row(CELLS[0], NOW).split()[1:3] == ["Ready", "2/2"]
    created = (NOW - timedelta(hours=1)).isoformat()
    cell_set = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "CellSet",
            "metadata": {"name": "web", "creationTimestamp": created},
            "spec": {
                "realmId": "prod",
                "spaceId": "edge",
                "stackId": "web",
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"id": "m", "image": "busybox"}]},
                },
            },
            "status": {"replicas": 3, "readyReplicas": 3, "updatedReplicas": 3,
                       "availableReplicas": 3},
        }
    )  # fmt: skip
    sets = WatchTable(TableLayout(Kind.CELL_SET))
    assert sets.row(cell_set, NOW).split() == ["web", "3/3", "3", "3", "60m"]
    assert sets.row(cell_set, NOW, event="DELETED").split() == ["web", "0/3", "3", "0", "60m"]
