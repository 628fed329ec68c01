"""``kukectl top``'s arithmetic and tables, as ``kubectl top`` prints them."""

from __future__ import annotations

from typing import Any

from kukeon.cli.top import (
    MiB,
    NodeRow,
    Reading,
    Row,
    cell_rows,
    cpu_millicores,
    format_cpu,
    format_memory,
    format_percent,
    node_row,
    render_cells,
    render_nodes,
    sort_rows,
)

T0 = "2026-12-03T10:00:00.000000Z"
T1 = "2026-12-03T10:00:01.000000Z"


def _cell(name: str, at: str, cpu: float, memory: int, **extra: Any) -> dict[str, Any]:
    return {
        "realm": "prod",
        "space": "edge",
        "stack": "web",
        "cell": name,
        "timestamp": at,
        "cpuUsageSeconds": cpu,
        "memoryWorkingSetBytes": memory,
        "memoryUsageBytes": memory * 2,
        "memoryLimitBytes": None,
        "pids": 3,
        **extra,
    }


def test_cpu_is_millicores_between_two_readings() -> None:
    first = Reading(at=100.0, cpu_seconds=5.0, memory_bytes=None, pids=None)
    second = Reading(at=102.0, cpu_seconds=5.5, memory_bytes=None, pids=None)
    assert cpu_millicores(first, second) == 250.0
    # no time between them, a counter that went back (a new cgroup), a missing figure
    assert cpu_millicores(first, first) is None
    assert cpu_millicores(second, Reading(103.0, 1.0, None, None)) is None
    assert cpu_millicores(first, Reading(103.0, None, None, None)) is None


def test_columns_as_kubectl_prints_them() -> None:
    assert format_cpu(249.6) == "250m"
    assert format_cpu(0.2) == "0m"
    assert format_cpu(None) == "<unknown>"
    assert format_memory(12 * MiB + 1000) == "12Mi"
    # kubectl's 0Mi would read as nothing used: under a MiB, KiB rounded up
    assert format_memory(1000) == "1Ki"
    assert format_memory(1) == "1Ki"
    assert format_memory(348 * 1024) == "348Ki"
    assert format_memory(MiB - 1) == "1024Ki"
    assert format_memory(MiB) == "1Mi"
    assert format_memory(0) == "0Mi"
    assert format_memory(None) == "<unknown>"
    assert format_percent(500, 2000) == "25%"
    assert format_percent(1, 0) == "<unknown>"


def test_cell_rows_pair_the_two_answers_by_cell() -> None:
    first = [_cell("api", T0, 1.0, 10 * MiB), _cell("batch", T0, 4.0, 1 * MiB)]
    second = [
        _cell("batch", T1, 4.75, 2 * MiB),
        _cell("api", T1, 1.1, 12 * MiB),
        _cell("new", T1, 0.5, 3 * MiB),  # started between the readings: no rate
    ]
    rows = {row.key[3]: row for row in cell_rows(first, second, containers=False)}
    assert round(rows["api"].millicores or 0) == 100
    assert round(rows["batch"].millicores or 0) == 750
    assert rows["new"].millicores is None
    assert rows["batch"].memory_bytes == 2 * MiB  # the later reading's working set
    assert rows["api"].pids == 3


def test_container_rows() -> None:
    def with_containers(at: str, cpu: float) -> dict[str, Any]:
        containers = [
            {"name": "app", "cpuUsageSeconds": cpu, "memoryWorkingSetBytes": 5 * MiB, "pids": 2},
            {"name": "sidecar", "cpuUsageSeconds": 1.0, "memoryWorkingSetBytes": MiB, "pids": 1},
        ]
        return _cell("api", at, cpu + 1.0, 6 * MiB, containers=containers)

    rows = cell_rows([with_containers(T0, 2.0)], [with_containers(T1, 2.5)], containers=True)
    assert [(row.container, round(row.millicores or 0)) for row in rows] == [
        ("app", 500),
        ("sidecar", 0),
    ]
    table = render_cells(rows, with_parents=False, containers=True)
    assert table.splitlines() == [
        "CELL   NAME      CPU(cores)   MEMORY(bytes)   PIDS",
        "api    app       500m         5Mi             2",
        "api    sidecar   0m           1Mi             1",
    ]


def test_cells_table_with_parents_and_sorting() -> None:
    rows = [
        Row(("prod", "edge", "web", "b"), None, 10.0, 300 * MiB, 4),
        Row(("prod", "edge", "web", "a"), None, 900.0, 20 * MiB, 1),
        Row(("dev", "x", "y", "c"), None, None, None, None),
    ]
    assert [row.key[3] for row in sort_rows(rows, None)] == ["c", "a", "b"]
    assert [row.key[3] for row in sort_rows(rows, "cpu")] == ["a", "b", "c"]
    assert [row.key[3] for row in sort_rows(rows, "memory")] == ["b", "a", "c"]
    table = render_cells(sort_rows(rows, None), with_parents=True, containers=False)
    assert table.splitlines() == [
        "REALM   SPACE   STACK   NAME   CPU(cores)   MEMORY(bytes)   PIDS",
        "dev     x       y       c      <unknown>    <unknown>       <unknown>",
        "prod    edge    web     a      900m         20Mi            1",
        "prod    edge    web     b      10m          300Mi           4",
    ]


def test_node_rows() -> None:
    def answer(at: str, cpu: float) -> dict[str, Any]:
        return {
            "timestamp": at,
            "cpus": 2,
            "cpuUsageSeconds": cpu,
            "memoryTotalBytes": 4096 * MiB,
            "memoryUsedBytes": 1024 * MiB,
            "loadAverage": [0.5, 0.25, 0.125],
        }

    row = node_row("n1", answer(T0, 100.0), answer(T1, 100.5))
    assert row == NodeRow("n1", 500.0, 2, 1024 * MiB, 4096 * MiB, 0.5)
    assert render_nodes([row, NodeRow("n2")]).splitlines() == [
        "NAME   CPU(cores)   CPU%        MEMORY(bytes)   MEMORY%     LOAD(1m)",
        "n1     500m         25%         1024Mi          25%         0.50",
        "n2     <unknown>    <unknown>   <unknown>       <unknown>   <unknown>",
    ]


def test_a_node_clock_step_between_the_readings_does_not_make_the_rate() -> None:
    """The node's clock stepped an hour forward (or back) between the two answers, which
    kukectl's monotonic clock saw about 1 s apart: the rate is over that second."""
    first = Reading(at=100.0, cpu_seconds=5.0, memory_bytes=None, pids=None)
    forward = Reading(at=3701.0, cpu_seconds=5.25, memory_bytes=None, pids=None)
    back = Reading(at=-3499.0, cpu_seconds=5.25, memory_bytes=None, pids=None)
    window = (0.95, 1.05)
    assert cpu_millicores(first, forward, window) == 250.0
    assert cpu_millicores(first, back, window) == 250.0
    # Without the window: an idle-looking cell, and no rate at all.
    assert cpu_millicores(first, forward) == 0.25 / 3601 * 1000
    assert cpu_millicores(first, back) is None


def test_the_nodes_times_stand_within_the_window() -> None:
    first = Reading(at=100.0, cpu_seconds=5.0, memory_bytes=None, pids=None)
    second = Reading(at=101.25, cpu_seconds=5.5, memory_bytes=None, pids=None)
    assert cpu_millicores(first, second, (0.9, 1.3)) == 400.0


def test_node_and_cell_rows_take_the_window() -> None:
    stepped = "2026-12-03T11:00:01.000000Z"
    [row] = cell_rows(
        [_cell("a", T0, 1.0, MiB)], [_cell("a", stepped, 1.5, MiB)], containers=False, window=(1, 1)
    )
    assert row.millicores == 500.0
    answer = {"cpus": 2, "cpuUsageSeconds": 100.0}
    later = {"cpus": 2, "cpuUsageSeconds": 100.5}
    node = node_row("n1", {**answer, "timestamp": T0}, {**later, "timestamp": stepped}, (1, 1))
    assert node.millicores == 500.0
