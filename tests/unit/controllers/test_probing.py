"""The probe manager on the event loop: real TCP and HTTP checks against loopback servers,
a fake containerd for the stop a failed liveness probe makes."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from kukeon.api import Cell, ContainerSpec, Kind
from kukeon.api.probes import ProbeResult
from kukeon.controllers.probing import ProbeManager, RunningContainer
from kukeon.runtime.containerd import ContainerdClient
from kukeon.store.pki import ensure_pki

KEY = ("r", "s", "st", "c")


@dataclass
class FakeTasks:
    pid: int = 100
    stopped: list[tuple[str, float]] = field(default_factory=list)

    async def get(self, cid: str) -> Any:
        return type("Task", (), {"pid": self.pid})()

    async def stop(self, cid: str, *, grace_period: float, signal: int) -> None:
        self.stopped.append((cid, grace_period))


@dataclass
class FakeContainers:
    labels: dict[str, str] = field(default_factory=dict)

    async def get(self, cid: str) -> Any:
        return type("Container", (), {"labels": self.labels})()


@dataclass
class FakeContainerd:
    tasks_: FakeTasks = field(default_factory=FakeTasks)
    containers_: FakeContainers = field(default_factory=FakeContainers)

    def tasks(self, namespace: str) -> FakeTasks:
        return self.tasks_

    def containers(self, namespace: str) -> FakeContainers:
        return self.containers_


def the_cell() -> Cell:
    return Cell.model_validate(
        {
            "metadata": {"name": "c"},
            "spec": {
                "realmId": "r",
                "spaceId": "s",
                "stackId": "st",
                "containers": [{"id": "app", "image": "busybox"}],
            },
        }
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Harness:
    manager: ProbeManager
    containerd: FakeContainerd
    triggers: list[tuple[str, ...]]
    registry: CollectorRegistry

    def sync(self, spec: ContainerSpec, *, pid: int = 100) -> None:
        self.manager.sync(
            the_cell(),
            KEY,
            namespace="ns",
            address="127.0.0.1",
            running=[RunningContainer(spec=spec, pid=pid, containerd_id="s_st_c_app")],
        )

    async def until(self, check: Callable[[], bool], within: float = 8.0) -> None:
        async with asyncio.timeout(within):
            while True:
                if check():
                    return
                await asyncio.sleep(0.05)

    def sample(self, probe: str, result: str) -> float | None:
        return self.registry.get_sample_value(
            "kukeon_probe_total",
            {
                "realm": "r",
                "space": "s",
                "stack": "st",
                "cell": "c",
                "container": "app",
                "probe": probe,
                "result": result,
            },
        )


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    containerd = FakeContainerd()
    triggers: list[tuple[str, ...]] = []
    registry = CollectorRegistry()

    def trigger(kind: Kind, key: tuple[str, ...]) -> bool:
        triggers.append(key)
        return True

    manager = ProbeManager(
        containerd=lambda: cast(ContainerdClient, containerd),
        trigger=trigger,
        fifo_root=tmp_path,
        stop_grace_seconds=3.0,
        collector_registry=registry,
    )
    try:
        yield Harness(manager, containerd, triggers, registry)
    finally:
        await manager.close()


@contextlib.asynccontextmanager
async def http_server(statuses: list[int]) -> AsyncIterator[int]:
    """Answers each GET with the next status of ``statuses`` (the last one for ever)."""

    async def handle(request: web.Request) -> web.Response:
        status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
        return web.Response(status=status, text=f"answered {status}")

    async with serving(handle) as port:
        yield port


@contextlib.asynccontextmanager
async def serving(
    handle: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[int]:
    """A loopback HTTP server answering GET /healthz with ``handle``; its port."""
    app = web.Application()
    app.router.add_get("/healthz", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


def container(**probes: Any) -> ContainerSpec:
    return ContainerSpec.model_validate({"id": "app", "image": "busybox", **probes})


async def test_readiness_follows_the_server_and_each_change_requeues_the_cell(
    harness: Harness,
) -> None:
    async with http_server([200, 503, 503, 200]) as port:
        probe = {"httpGet": {"port": port, "path": "/healthz"}, "periodSeconds": 1}
        harness.sync(container(readinessProbe={**probe, "failureThreshold": 2}))
        view = harness.manager.view(KEY, "app")
        assert view is not None
        assert not view.ready  # not probed yet
        await harness.until(lambda: bool((v := harness.manager.view(KEY, "app")) and v.ready))
        await harness.until(lambda: not cast(Any, harness.manager.view(KEY, "app")).ready)
        failed = harness.manager.view(KEY, "app")
        assert failed is not None
        assert failed.probes[0].result == ProbeResult.FAILURE
        assert failed.probes[0].consecutive_failures == 2
        assert "HTTP 503" in (failed.probes[0].message or "")
        await harness.until(lambda: cast(Any, harness.manager.view(KEY, "app")).ready)
    assert harness.triggers
    assert all(key == KEY for key in harness.triggers)
    assert harness.sample("readiness", "success") == 2
    assert harness.sample("readiness", "failure") == 2
    assert not harness.containerd.tasks_.stopped  # readiness never stops anything


async def test_a_steady_result_requeues_nothing(harness: Harness) -> None:
    async with http_server([200]) as port:
        harness.sync(
            container(
                readinessProbe={"httpGet": {"port": port, "path": "/healthz"}, "periodSeconds": 1}
            )
        )
        await harness.until(lambda: cast(Any, harness.manager.view(KEY, "app")).ready)
        count = len(harness.triggers)
        await harness.until(lambda: (harness.sample("readiness", "success") or 0) >= 3)
        assert len(harness.triggers) == count


async def test_liveness_failing_stops_the_task_with_its_reason(harness: Harness) -> None:
    port = free_port()  # nobody listens
    harness.sync(
        container(
            livenessProbe={
                "tcpSocket": {"port": port},
                "periodSeconds": 1,
                "failureThreshold": 2,
                "terminationGracePeriodSeconds": 7,
            }
        )
    )
    await harness.until(lambda: bool(harness.containerd.tasks_.stopped))
    assert harness.containerd.tasks_.stopped == [("s_st_c_app", 7.0)]
    kill = harness.manager.kill(KEY, "app")
    assert kill is not None
    assert kill.pid == 100
    assert kill.reason == "LivenessProbeFailed"
    assert "refused" in kill.message.lower()
    # The same task is not probed any more; a new task starts over and clears the kill.
    harness.sync(
        container(livenessProbe={"tcpSocket": {"port": port}, "periodSeconds": 1}), pid=101
    )
    assert harness.manager.kill(KEY, "app") is None


async def test_liveness_waits_for_the_startup_probe(harness: Harness) -> None:
    port = free_port()
    harness.sync(
        container(
            startupProbe={"tcpSocket": {"port": port}, "periodSeconds": 1, "failureThreshold": 30},
            livenessProbe={"tcpSocket": {"port": port}, "periodSeconds": 1, "failureThreshold": 1},
        )
    )
    await harness.until(lambda: (harness.sample("startup", "failure") or 0) >= 2)
    assert harness.sample("liveness", "failure") is None  # never ran
    assert not harness.containerd.tasks_.stopped
    view = harness.manager.view(KEY, "app")
    assert view is not None
    assert not view.started
    # The slow starter comes up: started, and liveness runs (and passes).
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", port)
    try:
        await harness.until(lambda: cast(Any, harness.manager.view(KEY, "app")).started)
        await harness.until(lambda: (harness.sample("liveness", "success") or 0) >= 1)
    finally:
        server.close()
        await server.wait_closed()
    assert not harness.containerd.tasks_.stopped


async def test_forgetting_a_cell_stops_its_probes_and_drops_its_series(harness: Harness) -> None:
    port = free_port()
    harness.sync(container(readinessProbe={"tcpSocket": {"port": port}, "periodSeconds": 1}))
    await harness.until(lambda: (harness.sample("readiness", "failure") or 0) >= 1)
    harness.manager.forget(KEY)
    assert harness.manager.view(KEY, "app") is None
    assert harness.sample("readiness", "failure") is None
    await asyncio.sleep(1.5)
    assert harness.sample("readiness", "failure") is None  # no check ran after


async def test_a_container_without_probes_has_no_entry(harness: Harness) -> None:
    harness.sync(container())
    assert harness.manager.view(KEY, "app") is None
    # Probes removed from a spec that had them: the entry and its timer go.
    harness.sync(container(readinessProbe={"tcpSocket": {"port": free_port()}}))
    assert harness.manager.view(KEY, "app") is not None
    harness.sync(container())
    assert harness.manager.view(KEY, "app") is None


async def test_https_path_and_headers_are_what_the_probe_sends(
    harness: Harness, tmp_path: Path
) -> None:
    pki = ensure_pki(tmp_path / "pki")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.member_cert_file, pki.member_key_file)
    seen: list[tuple[str, str | None]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append((request.path, request.headers.get("X-Probe")))
        ok = request.path == "/deep/ready" and request.headers.get("X-Probe") == "yes"
        return web.Response(status=200 if ok else 500)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    try:
        action = {
            "port": port,
            "path": "deep/ready",
            "scheme": "HTTPS",
            "httpHeaders": [{"name": "X-Probe", "value": "yes"}],
        }
        harness.sync(container(readinessProbe={"httpGet": action, "periodSeconds": 1}))
        await harness.until(lambda: cast(Any, harness.manager.view(KEY, "app")).ready)
    finally:
        await runner.cleanup()
    assert seen[0] == ("/deep/ready", "yes")


async def test_an_answer_slower_than_timeout_seconds_fails(harness: Harness) -> None:
    probe_failed = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        # Answers once the probe has failed (the server's cleanup waits for the answer).
        await probe_failed.wait()
        return web.Response()

    app = web.Application()
    app.router.add_get("/", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        probe = {"httpGet": {"port": port}, "timeoutSeconds": 1, "failureThreshold": 1}
        harness.sync(container(readinessProbe=probe))
        await harness.until(lambda: (harness.sample("readiness", "failure") or 0) >= 1)
    finally:
        probe_failed.set()
        await runner.cleanup()
    view = harness.manager.view(KEY, "app")
    assert view is not None
    assert "timed out after 1s" in (view.probes[0].message or "")


async def test_success_threshold_and_initial_delay(harness: Harness) -> None:
    async with http_server([200]) as port:
        probe = {
            "httpGet": {"port": port, "path": "/healthz"},
            "periodSeconds": 1,
            "successThreshold": 2,
            "initialDelaySeconds": 2,
        }
        harness.sync(container(readinessProbe=probe))
        await asyncio.sleep(1.5)
        assert harness.sample("readiness", "success") is None  # still in its initial delay
        await harness.until(lambda: (harness.sample("readiness", "success") or 0) >= 1)
        view = harness.manager.view(KEY, "app")
        assert view is not None
        assert not view.ready  # one success of the two asked for
        await harness.until(lambda: cast(Any, harness.manager.view(KEY, "app")).ready)
        assert harness.sample("readiness", "success") == 2


@dataclass
class FakeRecorder:
    events: list[tuple[str, str, str]] = field(default_factory=list)

    def event(self, obj: Any, reason: str, message: str, *, type: Any = None) -> None:
        self.events.append((str(reason), message, str(type)))


async def test_a_redirect_to_another_host_is_one_probe_warning_per_change(
    harness: Harness,
) -> None:
    """kubelet records a Warning `ProbeWarning` ("Probe terminated redirects") for a check
    that passes on a redirect it does not follow; here once per change, not every period."""
    recorder = FakeRecorder()
    harness.manager.recorder = cast(Any, recorder)
    answers = [302, 302, 302, 200, 200, 302]

    async def handle(request: web.Request) -> web.Response:
        status = answers.pop(0) if len(answers) > 1 else answers[0]
        moved = {"Location": "http://192.0.2.1/elsewhere"} if status == 302 else {}
        return web.Response(status=status, headers=moved)

    async with serving(handle) as port:
        probe = {"httpGet": {"port": port, "path": "/healthz"}, "periodSeconds": 1}
        harness.sync(container(readinessProbe=probe))
        await harness.until(lambda: (harness.sample("readiness", "success") or 0) >= 3)
        assert cast(Any, harness.manager.view(KEY, "app")).ready  # a success, as kubelet's
        warning = (
            "Readiness probe of container app: probe terminated redirects: "
            f"GET http://127.0.0.1:{port}/healthz: HTTP 302 to http://192.0.2.1/elsewhere, "
            "not followed"
        )
        assert recorder.events == [("ProbeWarning", warning, "Warning")]
        await harness.until(lambda: (harness.sample("readiness", "success") or 0) >= 6, 10)
        assert recorder.events == [("ProbeWarning", warning, "Warning")] * 2
