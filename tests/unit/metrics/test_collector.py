"""The hierarchy collector: series computed from the cached documents at scrape time."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kukeon.api import CellState, Kind
from kukeon.metrics import DocumentCache, HierarchyCollector
from kukeon.store import WatchEvent
from tests.unit.metrics import documents as docs

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _scrape(registry: CollectorRegistry) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def _labels(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


def _filled_cache() -> DocumentCache:
    cache = DocumentCache()
    cache.replace(Kind.REALM, [docs.realm("r1", controllers=["cpu", "memory"])])
    cache.replace(Kind.SPACE, [docs.space("r1", "s1", state="Creating", controllers=["cpu"])])
    cache.replace(Kind.STACK, [docs.stack("r1", "s1", "k1", state="Failed")])
    cache.replace(
        Kind.CELL,
        [
            docs.cell(
                "r1",
                "s1",
                "k1",
                "web",
                controllers=["cpu", "pids"],
                containers=[{"id": "main", "restartCount": 4, "exitCode": 137}, {"id": "side"}],
                spec_node="node-b",
            ),
            docs.cell("r1", "s1", "k1", "job", state="Failed", ready_observed=False),
        ],
    )
    return cache


def _registry(cache: DocumentCache, **kwargs: str) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(HierarchyCollector(cache=cache, node_name="node-a", **kwargs))
    return registry


def test_cells_ready_observed_state_and_node() -> None:
    samples = _scrape(_registry(_filled_cache()))
    web = {"realm": "r1", "space": "s1", "stack": "k1", "cell": "web", "node": "node-b"}
    job = {**web, "cell": "job", "node": "node-a"}  # no node in the document: ours
    assert samples[("kukeon_cell_ready_observed", _labels(**web))] == 1
    assert samples[("kukeon_cell_ready_observed", _labels(**job))] == 0
    for state in CellState:
        expected_web = 1 if state is CellState.READY else 0
        expected_job = 1 if state is CellState.FAILED else 0
        assert samples[("kukeon_cell_state", _labels(**web, state=state.value))] == expected_web
        assert samples[("kukeon_cell_state", _labels(**job, state=state.value))] == expected_job


def test_status_node_is_used_when_the_spec_names_none() -> None:
    cache = DocumentCache()
    cache.replace(Kind.CELL, [docs.cell("r", "s", "k", "c", status_node="node-c")])
    samples = _scrape(_registry(cache))
    labels = _labels(realm="r", space="s", stack="k", cell="c", node="node-c")
    assert samples[("kukeon_cell_ready_observed", labels)] == 1


def test_layer_states_are_one_hot() -> None:
    samples = _scrape(_registry(_filled_cache()))
    assert samples[("kukeon_realm_state", _labels(realm="r1", state="Ready"))] == 1
    assert samples[("kukeon_realm_state", _labels(realm="r1", state="Failed"))] == 0
    assert samples[("kukeon_space_state", _labels(realm="r1", space="s1", state="Creating"))] == 1
    stack_failed = _labels(realm="r1", space="s1", stack="k1", state="Failed")
    assert samples[("kukeon_stack_state", stack_failed)] == 1
    stack_states = [k for k in samples if k[0] == "kukeon_stack_state"]
    assert len(stack_states) == 4  # Pending, Ready, Failed, Unknown


def test_delegated_controllers_per_layer_with_empty_deeper_labels() -> None:
    samples = _scrape(_registry(_filled_cache()))
    delegated: dict[str, set[tuple[str, str, str, str, str]]] = {
        dict(labels)["kind"]: set()
        for name, labels in samples
        if name == "kukeon_subtree_controller_delegated"
    }
    for name, labels in samples:
        if name == "kukeon_subtree_controller_delegated":
            as_dict = dict(labels)
            delegated[as_dict["kind"]].add(
                (
                    as_dict["realm"],
                    as_dict["space"],
                    as_dict["stack"],
                    as_dict["cell"],
                    as_dict["controller"],
                )
            )
    assert delegated == {
        "Realm": {("r1", "", "", "", "cpu"), ("r1", "", "", "", "memory")},
        "Space": {("r1", "s1", "", "", "cpu")},
        "Cell": {("r1", "s1", "k1", "web", "cpu"), ("r1", "s1", "k1", "web", "pids")},
    }


def test_container_restarts_and_last_exit_code() -> None:
    samples = _scrape(_registry(_filled_cache()))
    main = {"realm": "r1", "space": "s1", "stack": "k1", "cell": "web", "node": "node-b"}
    assert samples[("kukeon_container_restarts_total", _labels(**main, container="main"))] == 4
    assert samples[("kukeon_container_restarts_total", _labels(**main, container="side"))] == 0
    assert samples[("kukeon_container_last_exit_code", _labels(**main, container="main"))] == 137
    # A container that never exited has no exit-code series at all.
    assert ("kukeon_container_last_exit_code", _labels(**main, container="side")) not in samples


def test_a_restarted_container_s_last_exit_code_is_its_last_state() -> None:
    """A container running again has no exitCode (it has not exited); its last exit is
    its lastState's, and the series keeps it."""
    cache = DocumentCache()
    again = {"id": "app", "state": "Ready", "restartCount": 1, "lastState": {"exitCode": 3}}
    cache.replace(Kind.CELL, [docs.cell("r", "s", "k", "c", containers=[again])])
    samples = _scrape(_registry(cache))
    where = {"realm": "r", "space": "s", "stack": "k", "cell": "c", "node": "node-a"}
    assert samples[("kukeon_container_last_exit_code", _labels(**where, container="app"))] == 3


def test_a_deleted_cell_leaves_no_series() -> None:
    cache = _filled_cache()
    registry = _registry(cache)
    gone = docs.cell("r1", "s1", "k1", "web", revision=9)
    cache.apply(WatchEvent("DELETED", gone, 9))
    samples = _scrape(registry)
    assert not [labels for _, labels in samples if ("cell", "web") in labels]
    assert any(("cell", "job") in labels for _, labels in samples)


def test_only_node_keeps_other_nodes_cells_out_but_not_layers() -> None:
    samples = _scrape(_registry(_filled_cache(), only_node="node-a"))
    cells = {dict(labels)["cell"] for name, labels in samples if name == "kukeon_cell_state"}
    assert cells == {"job"}
    assert ("kukeon_realm_state", _labels(realm="r1", state="Ready")) in samples


def test_synced_flag_per_kind() -> None:
    cache = DocumentCache()
    cache.replace(Kind.REALM, [])
    samples = _scrape(_registry(cache))
    assert samples[("kukeon_metrics_cache_synced", _labels(kind="Realm"))] == 1
    assert samples[("kukeon_metrics_cache_synced", _labels(kind="Cell"))] == 0


def test_duplicates_in_status_do_not_duplicate_series() -> None:
    cache = DocumentCache()
    cache.replace(
        Kind.CELL,
        [
            docs.cell(
                "r",
                "s",
                "k",
                "c",
                controllers=["cpu", "cpu"],
                containers=[{"id": "a"}, {"id": "a"}],
            )
        ],
    )
    text = generate_latest(_registry(cache)).decode()
    assert text.count('controller="cpu"') == 1
    assert text.count("kukeon_container_restarts_total{") == 1


def test_registering_twice_is_refused() -> None:
    registry = _registry(DocumentCache())
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(HierarchyCollector(cache=DocumentCache(), node_name="x"))


def test_unchanged_documents_are_not_rebuilt_changed_ones_are() -> None:
    cache = _filled_cache()
    collector = HierarchyCollector(cache=cache, node_name="node-a")

    def ready_sample(families: list[Any], cell: str) -> Any:
        (family,) = [f for f in families if f.name == "kukeon_cell_ready_observed"]
        return next(s for s in family.samples if s.labels["cell"] == cell)

    first = list(collector.collect())
    second = list(collector.collect())
    assert ready_sample(second, "web") is ready_sample(first, "web")

    changed = docs.cell(
        "r1", "s1", "k1", "web", ready_observed=False, spec_node="node-b", revision=7
    )
    cache.apply(WatchEvent("MODIFIED", changed, 7))
    third = list(collector.collect())
    assert ready_sample(third, "web").value == 0
    assert ready_sample(third, "job") is ready_sample(first, "job")


def test_a_waiting_container_s_last_exit_code_is_its_last_state() -> None:
    """A container waiting out its restart back-off (Waiting, CrashLoopBackOff) has no
    exitCode of its own either: the series is its lastState's exit."""
    cache = DocumentCache()
    waiting = {
        "id": "app",
        "state": "Waiting",
        "reason": "CrashLoopBackOff",
        "restartCount": 2,
        "lastState": {"exitCode": 4, "reason": "Error"},
    }
    cache.replace(Kind.CELL, [docs.cell("r", "s", "k", "c", containers=[waiting])])
    samples = _scrape(_registry(cache))
    where = {"realm": "r", "space": "s", "stack": "k", "cell": "c", "node": "node-a"}
    assert samples[("kukeon_container_last_exit_code", _labels(**where, container="app"))] == 4


def test_a_waiting_container_has_a_waiting_reason_series_and_a_running_one_none() -> None:
    """As kube-state-metrics' kube_pod_container_status_waiting_reason: 1 with the reason
    while the container waits (its restart back-off), no series otherwise, so a sum by
    realm counts the containers in a back-off."""
    cache = DocumentCache()
    waiting = {
        "id": "app",
        "state": "Waiting",
        "reason": "CrashLoopBackOff",
        "restartCount": 2,
        "lastState": {"exitCode": 4, "reason": "Error"},
    }
    running = {"id": "side", "state": "Ready", "restartCount": 1, "lastState": {"exitCode": 1}}
    cache.replace(
        Kind.CELL,
        [
            docs.cell("r", "s", "k", "c", containers=[waiting, running]),
            docs.cell("r2", "s", "k", "d", containers=[{"id": "app", "state": "Ready"}]),
        ],
    )
    samples = _scrape(_registry(cache))
    name = "kukeon_container_status_waiting_reason"
    found = {labels: value for (metric, labels), value in samples.items() if metric == name}
    where = {"realm": "r", "space": "s", "stack": "k", "cell": "c", "node": "node-a"}
    assert found == {_labels(**where, container="app", reason="CrashLoopBackOff"): 1}
