"""The metrics source the scrape tests run against, and the Prometheus that scrapes it.

``metrics_source`` is the seam: today it is a kukeond-shaped daemon assembled in-process
(the real ``DaemonMetrics`` informer and collector, a real framework ``Operator`` with
trivial handlers, etcd and containerd calls through the latency interceptors, the real
``serve_metrics`` listener) over documents this fixture writes to a real etcd. To run the
same tests against a real kukeond, replace this fixture with one that starts kukeond,
applies the same kind of documents, and returns a ``MetricsSource`` with its target.
Every assertion reads the expected values back from ``MetricsSource.store``; nothing is
hard-coded to this fixture's documents except what ``MetricsSource`` says.

A source must have, in ``realm``: at least one cell that is not Ready, cells with
``readyObserved`` both true and false, ``subtreeControllers`` on several layers, the usage
series (``kukeon_cell_*``) of running cells, one of them with a memory limit, and
``poke()`` must cause reconciles and etcd and containerd calls.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from kukeon.api import (
    Cell,
    CellStatus,
    Kind,
    Realm,
    RealmStatus,
    Space,
    SpaceStatus,
    Stack,
    StackStatus,
    key_of,
    parse_resource,
)
from kukeon.api.cellset import CellSetStatus
from kukeon.controllers.logcopiers import replacement_counter
from kukeon.controllers.probing import probe_counter
from kukeon.framework import Operator, OperatorRunner, Settings, TemporaryError
from kukeon.metrics import DaemonMetrics, request_latency_for, serve_metrics
from kukeon.metrics.usage import CellUsageCollector, CellUsageSample
from kukeon.runtime.containerd import ContainerdClient
from kukeon.store import Registry
from tests.fixtures.containerd import PrivateContainerd
from tests.fixtures.kukeond import Kukeond, bearer_headers
from tests.fixtures.services import require_binary
from tests.integration.metrics.prometheus import PrometheusServer

AnyResource = Any


@dataclass
class MetricsSource:
    """Something serving kukeond's /metrics over documents in ``store``."""

    target: str
    """host:port whose /metrics Prometheus scrapes."""
    store: Registry
    """Where the served documents live (expected values are read from here)."""
    realm: str
    """The realm holding the test's documents."""
    poke: Callable[[], Awaitable[None]]
    """Cause activity: reconciles, etcd requests and containerd calls."""
    credentials_file: Path | None = None
    """The bearer token file the source asks for (kukeond's); None: it asks for none."""

    @property
    def url(self) -> str:
        return f"http://{self.target}/metrics"

    @property
    def headers(self) -> dict[str, str]:
        """What a scraper sends: the token of ``credentials_file``."""
        return bearer_headers(self.credentials_file)


def _cell_document(realm: str, space: str, stack: str, name: str) -> Cell:
    parsed = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {"name": name},
            "spec": {
                "realmId": realm,
                "spaceId": space,
                "stackId": stack,
                "containers": [
                    {"id": "main", "image": "busybox:latest"},
                    {"id": "side", "image": "busybox:latest"},
                ],
            },
        }
    )
    assert isinstance(parsed, Cell)
    return parsed


def cellset_document(realm: str, space: str, stack: str, *, replicas: int) -> dict[str, Any]:
    labels = {"app": "set"}
    template = {
        "metadata": {"labels": labels},
        "spec": {"containers": [{"id": "main", "image": "busybox"}]},
    }
    spec = {"realmId": realm, "spaceId": space, "stackId": stack, "replicas": replicas}
    return {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "CellSet",
        "metadata": {"name": "set"},
        "spec": {**spec, "selector": {"matchLabels": labels}, "template": template},
    }


async def _create_with_status(store: Registry, document: AnyResource, status: Any) -> None:
    created = await store.create(document)
    await store.update_status(created.model_copy(update={"status": status}))


async def write_documents(store: Registry, realm: str, node: str) -> None:
    """A realm with two spaces, three stacks and five cells in assorted states."""
    await _create_with_status(
        store,
        Realm.model_validate({"metadata": {"name": realm}}),
        RealmStatus.model_validate(
            {"state": "Ready", "subtreeControllers": ["cpu", "memory", "pids"], "nodeName": node}
        ),
    )
    for space, space_state in (("web", "Ready"), ("batch", "Creating")):
        await _create_with_status(
            store,
            Space.model_validate({"metadata": {"name": space}, "spec": {"realmId": realm}}),
            SpaceStatus.model_validate(
                {"state": space_state, "subtreeControllers": ["cpu", "memory"], "nodeName": node}
            ),
        )
    stacks = (("web", "front", "Ready"), ("web", "back", "Ready"), ("batch", "jobs", "Pending"))
    for space, stack, stack_state in stacks:
        await _create_with_status(
            store,
            Stack.model_validate(
                {"metadata": {"name": stack}, "spec": {"realmId": realm, "spaceId": space}}
            ),
            StackStatus.model_validate(
                {"state": stack_state, "subtreeControllers": ["cpu"], "nodeName": node}
            ),
        )
    cells = [
        # space, stack, cell, state, readyObserved, restarts of main, exit code of main
        ("web", "front", "nginx-1", "Ready", True, 0, None),
        ("web", "front", "nginx-2", "Ready", True, 3, 137),
        ("web", "back", "api", "Degraded", True, 7, 1),
        ("web", "back", "migrate", "Failed", False, 5, 2),
        ("batch", "jobs", "report", "Pending", False, 0, None),
    ]
    # A CellSet (its status as the set controller would write it): kukeon_cellset_replicas.
    await _create_with_status(
        store,
        parse_resource(cellset_document(realm, "web", "front", replicas=3)),
        CellSetStatus(replicas=3, ready_replicas=2, updated_replicas=3, available_replicas=2),
    )
    for space, stack, cell, state, observed, restarts, exit_code in cells:
        main: dict[str, Any] = {"id": "main", "state": "Ready", "restartCount": restarts}
        if exit_code is not None:
            main["exitCode"] = exit_code
        await _create_with_status(
            store,
            _cell_document(realm, space, stack, cell),
            CellStatus.model_validate(
                {
                    "state": state,
                    "readyObserved": observed,
                    "subtreeControllers": ["cpu", "memory"] if observed else [],
                    "nodeName": node,
                    "containers": [main, {"id": "side", "state": "Ready"}],
                }
            ),
        )


@pytest.fixture(params=["assembled", "kukeond"])
def metrics_source(request: pytest.FixtureRequest) -> MetricsSource:
    """Every scrape test runs against both sources (see the module doc)."""
    source = request.getfixturevalue(f"{request.param}_metrics_source")
    assert isinstance(source, MetricsSource)
    return source


@pytest.fixture
async def kukeond_metrics_source(kukeond: Kukeond) -> MetricsSource:
    """A real kukeond (in-process) with real cells: Ready, exited with an error, Failed."""
    k = kukeond
    await k.hierarchy()

    def cell(name: str, containers: list[dict[str, Any]]) -> dict[str, Any]:
        spec = {"realmId": k.realm, "spaceId": "s1", "stackId": "st1", "containers": containers}
        return {"kind": "Cell", "metadata": {"name": name}, "spec": spec}

    sleeper = {"image": k.image.name, "command": "sleep", "args": ["3600"]}
    await k.apply(cell("up-1", [{"id": "main", **sleeper}, {"id": "side", **sleeper}]))
    # with a memory limit: kukeon_cell_memory_limit_bytes
    limited = {**sleeper, "resources": {"memoryLimitBytes": 64 * 1024 * 1024}}
    await k.apply(cell("up-2", [{"id": "main", **limited}]))
    await k.apply(
        cell(
            "done",
            [{"id": "main", "image": k.image.name, "command": "sh", "args": ["-c", "exit 3"]}],
        )
    )
    # A registry on a closed loopback port: the pull fails at once, the cell is Failed.
    await k.apply(cell("broken", [{"id": "main", "image": "127.0.0.1:1/nothing:v1"}]))
    # A readiness probe nobody answers (port 9): failed checks every second, never Ready.
    unready = {**sleeper, "readinessProbe": {"tcpSocket": {"port": 9}, "periodSeconds": 1}}
    await k.apply(cell("unready", [{"id": "main", **unready}]))
    for name, state in (
        ("up-1", "Ready"),
        ("up-2", "Ready"),
        ("done", "Error"),
        ("broken", "Failed"),
    ):
        await k.wait_for(Kind.CELL, (k.realm, "s1", "st1", name), state=state)
    await k.wait_for(
        Kind.CELL,
        (k.realm, "s1", "st1", "unready"),
        until=lambda c: (
            bool(c.status.containers and c.status.containers[0].probes)
            and c.status.containers[0].probes[0].result == "Failure"
        ),
    )

    # A set of no replicas: its kukeon_cellset_replicas series, no cell.
    await k.apply(cellset_document(k.realm, "s1", "st1", replicas=0))

    async def poke() -> None:
        found = await k.registry.get(Kind.CELL, (k.realm, "s1", "st1", "up-1"))
        labels = {**found.metadata.labels, "poked": secrets.token_hex(3)}
        metadata = found.metadata.model_copy(update={"labels": labels})
        await k.registry.update(found.model_copy(update={"metadata": metadata}))

    assert k.daemon.metrics_url is not None
    target = k.daemon.metrics_url.removeprefix("http://").removesuffix("/metrics")
    return MetricsSource(
        target=target,
        store=k.registry,
        realm=k.realm,
        poke=poke,
        credentials_file=k.config.metrics_token_path,
    )


@pytest.fixture
async def assembled_metrics_source(
    registry: Registry, containerd_daemon: PrivateContainerd
) -> AsyncIterator[MetricsSource]:
    """kukeond's metrics stack in-process over real etcd and containerd (see the module doc)."""
    realm = f"metrics-{secrets.token_hex(3)}"
    node = "node-a"
    await write_documents(registry, realm, node)

    collectors = CollectorRegistry()
    latency = request_latency_for(collectors)
    daemon_store = await Registry.connect(
        dataclasses.replace(registry.config, interceptors=tuple(latency.etcd_interceptors()))
    )
    containerd = ContainerdClient(
        containerd_daemon.address,
        retry_timeout=10.0,
        interceptors=latency.containerd_interceptors(),
    )
    operator = Operator(
        daemon_store,
        settings=Settings(node_name=node, resync_interval=None, backoff_initial=0.2),
        collector_registry=collectors,
        peering=False,
    )
    failed_once: set[str] = set()

    # Like the controllers: re-read the object from etcd, look at the host through containerd.
    async def observe_layer(obj: AnyResource, ctx: Any) -> None:
        await daemon_store.get(Kind(obj.kind), key_of(obj))
        await containerd.version()

    async def observe_cell(cell: Cell, ctx: Any) -> None:
        await daemon_store.get(Kind.CELL, key_of(cell))
        await containerd.version()
        if cell.status.state == "Failed" and cell.metadata.name not in failed_once:
            failed_once.add(cell.metadata.name)
            raise TemporaryError("the cell's task is not there yet", delay=0.2)

    for kind in (Kind.REALM, Kind.SPACE, Kind.STACK):
        operator.reconcile(kind)(observe_layer)
    operator.reconcile(Kind.CELL)(observe_cell)

    # Probe checks, as kukeond's ProbeManager counts them: one failing probe, checked at
    # every poke (present from the start, so its rate has a first sample).
    checks = probe_counter(collectors)
    # The log copiers' replacements, as kukeond's LogCopiers declares them (0 from the start).
    replacement_counter(collectors).labels("replaced")
    failing = checks.labels(realm, "web", "front", "nginx-1", "main", "readiness", "failure")

    async def poke() -> None:
        failing.inc()
        cell = await registry.get(Kind.CELL, (realm, "web", "front", "nginx-1"))
        labels = {**cell.metadata.labels, "poked": secrets.token_hex(3)}
        metadata = cell.metadata.model_copy(update={"labels": labels})
        await registry.update(cell.model_copy(update={"metadata": metadata}))
        await containerd.namespaces.list()

    daemon = DaemonMetrics(registry=collectors, store=daemon_store, node_name=node)
    # Nothing runs here, so the cells' usage (kukeond reads it from their cgroups) is made
    # up from the documents: CPU time that grows, the working set, a limit on one cell.
    started = time.monotonic()

    def usage() -> list[CellUsageSample]:
        cells = daemon.cache.documents(Kind.CELL)
        return [
            CellUsageSample(
                cell.spec.realm_id,
                cell.spec.space_id,
                cell.spec.stack_id,
                cell.metadata.name,
                node,
                cpu_seconds=(time.monotonic() - started) * 0.25 * (index + 1),
                memory_bytes=(index + 1) * 8 * 1024 * 1024,
                memory_limit_bytes=64 * 1024 * 1024 if index == 0 else None,
                pids=index + 1,
            )
            for index, cell in enumerate(sorted(cells, key=key_of))
        ]

    collectors.register(CellUsageCollector(usage))
    server = None
    try:
        async with daemon, OperatorRunner(operator):
            await daemon.informer.wait_synced()
            await operator.wait_idle(within=20)
            server = await serve_metrics("127.0.0.1:0", registry=collectors)
            yield MetricsSource(target=server.address, store=registry, realm=realm, poke=poke)
    finally:
        if server is not None:
            await server.stop()
        await containerd.close()
        await daemon_store.close()


@pytest.fixture
def prometheus_binary() -> str:
    return require_binary("prometheus", "prometheus")


@pytest.fixture
def promtool_binary() -> str:
    return require_binary("promtool", "prometheus")


@pytest.fixture
def prometheus(prometheus_binary: str, metrics_source: MetricsSource) -> Iterator[PrometheusServer]:
    server = PrometheusServer(
        binary=prometheus_binary,
        targets=[metrics_source.target],
        credentials_file=metrics_source.credentials_file,
    )
    try:
        server.start()
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop()
