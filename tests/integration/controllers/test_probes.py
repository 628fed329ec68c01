"""Health probes on a real containerd: readiness gates Ready without restarts, liveness
restarts (or fails) a container, a startup probe protects a slow starter, tcpSocket works
on the bridge and on the host's network, and a deleted cell's probes stop."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from kukeon.api import Cell, CellState, ContainerState, Kind
from kukeon.api.probes import ProbeKind, ProbeResult
from kukeon.controllers.probing import ProbeManager
from kukeon.store import NotFound
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container, exec_in, get_cell

pytestmark = pytest.mark.integration

# busybox httpd in the foreground serving a one-file directory: GET / answers 200.
HTTPD = "mkdir -p /tmp/www && echo ok > /tmp/www/index.html && exec httpd -f -p {port} -h /tmp/www"
# `sh` as PID 1 ignores SIGTERM: a stop ends with the grace's SIGKILL.
SLEEP = "while :; do sleep 1; done"


def probes(k: Kukeond) -> ProbeManager:
    controllers = k.daemon.controllers
    assert controllers is not None
    assert controllers.cells.probes is not None
    return controllers.cells.probes


def first(cell: Any) -> Any:
    assert cell.status.containers
    return cell.status.containers[0]


def four(key: tuple[str, ...]) -> tuple[str, str, str, str]:
    realm, space, stack, name = key
    return realm, space, stack, name


def free_host_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


async def stays(k: Kukeond, key: tuple[str, ...], check: Any, seconds: float) -> None:
    """``check(cell)`` holds on every read for ``seconds``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while loop.time() < end:
        cell = await get_cell(k, key)
        assert check(cell), cell.status.model_dump(mode="json", exclude_none=True)
        await asyncio.sleep(0.25)


async def test_exec_readiness_gates_ready_without_restarts(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    ready_file = {
        "exec": {"command": ["test", "-f", "/tmp/ready"]},
        "periodSeconds": 1,
        "failureThreshold": 1,
    }
    await k.apply(cell_doc(k, "gated", [container(k, "a", readinessProbe=ready_file)]))
    key = cell_key(k, "gated")
    pending = await k.wait_for(
        Kind.CELL, key, until=lambda c: bool(c.status.containers) and first(c).pid is not None
    )
    assert isinstance(pending, Cell)
    await stays(k, key, lambda c: c.status.state != CellState.READY, 3.0)
    cell = await get_cell(k, key)
    assert cell.status.state == CellState.PENDING
    assert cell.status.reason == "ContainersNotReady"
    assert "container a" in (cell.status.message or "")
    assert first(cell).state == ContainerState.RUNNING  # it runs
    assert first(cell).ready is False
    name = first(cell).name
    assert (await exec_in(k, name, "touch", "/tmp/ready"))[0] == 0
    ready = await k.wait_for(Kind.CELL, key, state="Ready", within=10)
    assert isinstance(ready, Cell)
    assert first(ready).ready
    assert first(ready).probes[0].result == ProbeResult.SUCCESS
    assert ready.status.ready_observed
    assert ready.status.reason is None

    assert (await exec_in(k, name, "rm", "/tmp/ready"))[0] == 0
    loop = asyncio.get_running_loop()
    removed = loop.time()
    out = await k.wait_for(Kind.CELL, key, state="Degraded", within=10)
    # periodSeconds x failureThreshold + 1 s, and a little for the status write
    assert loop.time() - removed <= 1 * 1 + 1 + 1.5
    assert isinstance(out, Cell)
    assert first(out).restart_count == 0
    assert first(out).probes[0].result == ProbeResult.FAILURE
    assert "readiness probe failed" in (out.status.message or "")


async def test_http_liveness_restarts_the_container_and_fails_it_under_never(
    kukeond: Kukeond,
) -> None:
    k = kukeond
    await k.hierarchy()
    liveness = {
        "httpGet": {"port": 8081, "path": "/healthz"},  # nobody serves it
        "periodSeconds": 1,
        "failureThreshold": 2,
        "terminationGracePeriodSeconds": 1,
    }
    always = container(
        k, "a", script=SLEEP, livenessProbe=liveness, restartPolicy="always",
        restartBackoffSeconds=1,
    )  # fmt: skip
    await k.apply(cell_doc(k, "live", [always]))
    restarted = await k.wait_for(
        Kind.CELL,
        cell_key(k, "live"),
        until=lambda c: bool(c.status.containers) and first(c).restart_count >= 1,
        within=30,
    )
    assert isinstance(restarted, Cell)
    last = first(restarted).last_state
    assert last is not None
    assert last.reason == "LivenessProbeFailed"

    never = container(k, "a", script=SLEEP, livenessProbe=liveness)
    await k.apply(cell_doc(k, "dead", [never]))
    failed = await k.wait_for(
        Kind.CELL,
        cell_key(k, "dead"),
        until=lambda c: bool(c.status.containers) and first(c).state == ContainerState.FAILED,
        within=30,
    )
    assert isinstance(failed, Cell)
    assert first(failed).reason == "LivenessProbeFailed"
    assert "liveness probe failed" in (first(failed).message or "")
    assert failed.status.state == CellState.ERROR
    assert k.daemon.events is not None
    store = k.daemon.events

    async def reasons() -> set[str]:
        listed = (await store.list(k.realm)).items
        return {str(e.reason) for e in listed if e.involved_object.name == "dead"}

    for _ in range(50):  # the recorder writes beside the handlers
        if {"Unhealthy", "Killing"} <= await reasons():
            break
        await asyncio.sleep(0.2)
    assert {"Unhealthy", "Killing"} <= await reasons()


async def test_a_startup_probe_keeps_liveness_from_killing_a_slow_starter(
    kukeond: Kukeond,
) -> None:
    k = kukeond
    await k.hierarchy()
    check = {"httpGet": {"port": 8080}, "periodSeconds": 1}
    slow = container(
        k,
        "a",
        script="sleep 5; " + HTTPD.format(port=8080),
        startupProbe={**check, "failureThreshold": 20},
        livenessProbe={**check, "failureThreshold": 1},
        restartPolicy="always",
        restartBackoffSeconds=1,
    )
    await k.apply(cell_doc(k, "slow", [slow]))
    key = cell_key(k, "slow")
    ready = await k.wait_for(Kind.CELL, key, state="Ready", within=30)
    assert isinstance(ready, Cell)
    assert first(ready).started
    assert first(ready).restart_count == 0
    await stays(k, key, lambda c: first(c).restart_count == 0 and c.status.state == "Ready", 3.0)
    results = {p.probe: p.result for p in first(await get_cell(k, key)).probes}
    assert results == {
        ProbeKind.STARTUP: ProbeResult.SUCCESS,
        ProbeKind.LIVENESS: ProbeResult.SUCCESS,
    }


async def test_tcp_socket_probes_on_the_bridge_and_on_the_host_network(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    bridged = container(
        k, "a", script=HTTPD.format(port=8080),
        readinessProbe={"tcpSocket": {"port": 8080}, "periodSeconds": 1},
    )  # fmt: skip
    port = free_host_port()
    hosted = container(
        k, "a", script=HTTPD.format(port=port), hostNetwork=True,
        readinessProbe={"tcpSocket": {"port": port}, "periodSeconds": 1},
    )  # fmt: skip
    await k.apply(cell_doc(k, "bridged", [bridged]))
    await k.apply(cell_doc(k, "hosted", [hosted]))
    for name in ("bridged", "hosted"):
        ready = await k.wait_for(Kind.CELL, cell_key(k, name), state="Ready", within=30)
        assert isinstance(ready, Cell)
        assert first(ready).probes[0].result == ProbeResult.SUCCESS


# httpd with a CGI at /cgi-bin/r answering 302 to /next.html on the same host (no file yet).
REDIRECTING = (
    "mkdir -p /tmp/www/cgi-bin && "
    "printf '#!/bin/sh\\nprintf \"HTTP/1.1 302 Found\\\\r\\\\nLocation: /next.html"
    "\\\\r\\\\n\\\\r\\\\n\"\\n' > /tmp/www/cgi-bin/r && chmod +x /tmp/www/cgi-bin/r && "
    "exec httpd -f -p 8080 -h /tmp/www"
)


async def test_an_http_probe_follows_a_redirect_to_the_cell_itself(kukeond: Kukeond) -> None:
    """As kubelet, a redirect to the cell's own address is followed and the reply at its
    end decides: a 302 to a page that is missing (404) keeps the cell out of Ready (the
    302 alone made it Ready), the page's creation makes it Ready."""
    k = kukeond
    await k.hierarchy()
    probe = {"httpGet": {"port": 8080, "path": "/cgi-bin/r"}, "periodSeconds": 1}
    await k.apply(
        cell_doc(k, "moved", [container(k, "a", script=REDIRECTING, readinessProbe=probe)])
    )
    key = cell_key(k, "moved")
    failing = await k.wait_for(
        Kind.CELL,
        key,
        until=lambda c: (
            bool(c.status.containers)
            and bool(first(c).probes)
            and first(c).probes[0].result == ProbeResult.FAILURE
        ),
        within=30,
    )
    assert isinstance(failing, Cell)
    assert failing.status.state == CellState.PENDING
    message = first(failing).probes[0].message or ""
    assert message.startswith("GET http://"), message
    assert "/next.html: HTTP 404" in message, message
    await exec_in(k, first(failing).name, "sh", "-c", "echo ok > /tmp/www/next.html")
    ready = await k.wait_for(Kind.CELL, key, state="Ready", within=15)
    assert isinstance(ready, Cell)


# httpd with a CGI at /cgi-bin/r answering 302 to another host (TEST-NET-1: never asked).
REDIRECTING_AWAY = REDIRECTING.replace("Location: /next.html", "Location: http://192.0.2.1/x")


async def test_a_redirect_to_another_host_is_one_probe_warning_event(kukeond: Kukeond) -> None:
    """As kubelet, a check answered by a redirect to another host passes with a Warning
    Event `ProbeWarning`; kukeond writes it once while the redirect stays the same (kubelet
    writes it at every period: x1197 over 24m)."""
    k = kukeond
    await k.hierarchy()
    probe = {"httpGet": {"port": 8080, "path": "/cgi-bin/r"}, "periodSeconds": 1}
    script = REDIRECTING_AWAY
    await k.apply(cell_doc(k, "away", [container(k, "a", script=script, readinessProbe=probe)]))
    await k.wait_for(Kind.CELL, cell_key(k, "away"), state="Ready", within=30)
    assert k.daemon.events is not None
    store = k.daemon.events

    async def warnings() -> list[Any]:
        listed = (await store.list(k.realm)).items
        return [
            e for e in listed if e.involved_object.name == "away" and e.reason == "ProbeWarning"
        ]

    for _ in range(50):  # the recorder writes beside the handlers
        if await warnings():
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(3)  # three more periods, each redirected the same way
    [warning] = await warnings()
    assert (warning.type, warning.count) == ("Warning", 1)
    assert warning.message.startswith("Readiness probe of container a: probe terminated redirects")
    assert "HTTP 302 to http://192.0.2.1/x, not followed" in warning.message


async def test_deleting_a_cell_stops_its_probes(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    failing = {"tcpSocket": {"port": 9}, "periodSeconds": 1}
    await k.apply(cell_doc(k, "gone", [container(k, "a", readinessProbe=failing)]))
    key = cell_key(k, "gone")

    def checks() -> float | None:
        labels = dict(zip(("realm", "space", "stack", "cell"), key, strict=True))
        return k.daemon.metrics_registry.get_sample_value(
            "kukeon_probe_total",
            {**labels, "container": "a", "probe": "readiness", "result": "failure"},
        )

    await k.wait_for(Kind.CELL, key, until=lambda c: (checks() or 0) >= 1, within=30)
    assert probes(k).view(four(key), "a") is not None
    await k.registry.delete(Kind.CELL, key)
    for _ in range(100):
        try:
            await k.registry.get(Kind.CELL, key)
        except NotFound:
            break
        await asyncio.sleep(0.2)
    assert probes(k).view(four(key), "a") is None
    assert checks() is None
    await asyncio.sleep(2)
    assert checks() is None  # no check ran after the deletion


async def test_a_flooding_or_missing_exec_command_fails_capped_and_leaves_no_process(
    kukeond: Kukeond,
) -> None:
    k = kukeond
    await k.hierarchy()
    # Checked every 4 s after the last check ended: between two, no probe process is due.
    flood = {
        "exec": {"command": ["yes"]},
        "timeoutSeconds": 1,
        "periodSeconds": 4,
        "failureThreshold": 1,
    }
    missing = {"exec": {"command": ["/no/such/probe"]}, "periodSeconds": 1, "failureThreshold": 1}
    await k.apply(cell_doc(k, "flood", [container(k, "a", readinessProbe=flood)]))
    await k.apply(cell_doc(k, "missing", [container(k, "a", readinessProbe=missing)]))

    def failed(c: Any) -> bool:
        return bool(
            c.status.containers
            and first(c).probes
            and first(c).probes[0].result == ProbeResult.FAILURE
        )

    flooded = await k.wait_for(Kind.CELL, cell_key(k, "flood"), until=failed, within=30)
    message = first(flooded).probes[0].message or ""
    assert message.startswith("command timed out after 1s: y")
    assert len(message) <= 1024
    lost = await k.wait_for(Kind.CELL, cell_key(k, "missing"), until=failed, within=30)
    assert "/no/such/probe" in (first(lost).probes[0].message or "")
    assert lost.status.state == CellState.PENDING
    # Every exec a probe started was killed and deleted: no `yes` left in the container.
    await asyncio.sleep(1.0)
    code, listing = await exec_in(k, first(flooded).name, "ps", "-o", "pid,args")
    assert code == 0
    assert " yes" not in listing, listing


async def test_a_timed_out_exec_probe_leaves_none_of_what_it_started(kukeond: Kukeond) -> None:
    """The probe's shell is killed at its timeout with its `sleep`: before, containerd's
    Kill reached the shell alone, and each period left one `sleep` more in the container."""
    k = kukeond
    await k.hierarchy()
    hangs = {
        "exec": {"command": ["sh", "-c", "sleep 600; true"]},
        "timeoutSeconds": 1,
        "periodSeconds": 1,
        "failureThreshold": 1,
    }
    await k.apply(cell_doc(k, "hangs", [container(k, "a", readinessProbe=hangs)]))

    def timed_out(c: Any) -> bool:
        return bool(
            c.status.containers
            and first(c).probes
            and (first(c).probes[0].message or "").startswith("command timed out after 1s")
        )

    cell = await k.wait_for(Kind.CELL, cell_key(k, "hangs"), until=timed_out, within=30)
    await asyncio.sleep(8)  # about four more checks (1 s each, 1 s apart), each timing out
    code, listing = await exec_in(k, first(cell).name, "ps", "-o", "pid,args")
    assert code == 0
    # The check under way, if one is: its sleep; none of the earlier ones' (before: 4-5).
    sleeps = [line for line in listing.splitlines() if line.split()[1:] == ["sleep", "600"]]
    assert len(sleeps) <= 1, listing
