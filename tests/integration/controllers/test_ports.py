"""Published ports: `kukectl run -p` makes a busybox httpd reachable on the node, through
127.0.0.1 and the host's own address (from the host, and from a cell of another space, as
traffic from elsewhere arrives), reported in the status, refused to a second cell, and gone
with the cell."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from kukeon.api import AnyResource, Cell, Kind
from kukeon.api.container import PublishedPort
from kukeon.runtime.network.ports import parse_ports_table
from tests.fixtures.kukectl import kukectl
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container, update_cell

pytestmark = pytest.mark.integration

PAGE = "hello from a published port"
HTTPD = f"mkdir -p /www && echo '{PAGE}' > /www/index.html && exec httpd -f -p 80 -h /www"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        return int(probe.getsockname()[1])


def host_address() -> str:
    """A non-loopback IPv4 address of this host (not one of a test's bridges)."""
    shown = subprocess.run(
        ["ip", "-j", "-4", "addr", "show", "scope", "global"],
        capture_output=True,
        text=True,
        check=True,
    )
    for link in json.loads(shown.stdout):
        name = str(link.get("ifname", ""))
        if name.startswith(("kk", "cni", "veth", "docker")):
            continue
        for info in link.get("addr_info", ()):
            address = ipaddress.IPv4Address(info["local"])
            if not address.is_loopback and not address.is_link_local:
                return str(address)
    pytest.skip("the host has no global IPv4 address")


async def http_get(host: str, port: int, *, within: float = 20.0) -> str:
    """The page at http://host:port/, asked again until it answers or ``within`` passes."""
    deadline = asyncio.get_running_loop().time() + within
    last: Exception | None = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            async with asyncio.timeout(3):
                reader, writer = await asyncio.open_connection(host, port)
                writer.write(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
                await writer.drain()
                answer = (await reader.read()).decode(errors="replace")
                writer.close()
            return answer
        except (OSError, TimeoutError) as error:
            last = error
            await asyncio.sleep(0.3)
    raise AssertionError(f"http://{host}:{port}/ did not answer: {last!r}")


async def refused(host: str, port: int) -> bool:
    try:
        async with asyncio.timeout(3):
            _, writer = await asyncio.open_connection(host, port)
            writer.close()
    except (OSError, TimeoutError):
        return True
    return False


def ports_state(table: str) -> tuple[set[str], set[str]]:
    """The cell chains of kukeond's table and every host port they hold."""
    shown = subprocess.run(
        ["nft", "-j", "list", "table", "inet", table], capture_output=True, text=True, check=False
    )
    state = parse_ports_table(json.loads(shown.stdout) if shown.returncode == 0 else None)
    held = {key for keys in state.held.values() for key in keys}
    return set(state.cell_chains()), held


def drop_leftovers(table: str) -> None:
    """Whatever happened, no publication outlives a test (the table is its kukeond's own)."""
    with contextlib.suppress(Exception):
        chains, _ = ports_state(table)
        if chains:
            subprocess.run(["nft", "delete", "table", "inet", table], check=False)


def ready(obj: AnyResource) -> bool:
    return str(obj.status.state) == "Ready" and obj.status.observed_generation == (
        obj.metadata.generation
    )


async def test_published_port_reached_refused_to_others_and_released(kukeond: Kukeond) -> None:
    k = kukeond
    table = k.config.nft_table
    port = free_port()
    address = host_address()
    try:
        await k.hierarchy()
        code, _, err = await kukectl(
            k, "run", "web", "--image", k.image.name, "-p", f"{port}:80",
            "--realm", k.realm, "--space", "s1", "--stack", "st1",
            "--", "sh", "-c", HTTPD,
        )  # fmt: skip
        assert code == 0, err
        key = cell_key(k, "web")
        cell = await k.wait_for(Kind.CELL, key, until=ready)
        assert isinstance(cell, Cell)
        assert cell.status.containers[0].ports == [
            PublishedPort(host_ip="0.0.0.0", host_port=port, container_port=80, protocol="tcp")
        ]
        chains, held = ports_state(table)
        assert held == {f"tcp *:{port}"}
        assert len(chains) == 1

        # From the host: loopback (output DNAT, route_localnet, masquerade) and its address.
        assert PAGE in await http_get("127.0.0.1", port)
        assert PAGE in await http_get(address, port)

        # From another space's cell, as traffic from elsewhere: through prerouting.
        await k.apply({"kind": "Space", "metadata": {"name": "s2"}, "spec": {"realmId": k.realm}})
        await k.apply(
            {"kind": "Stack", "metadata": {"name": "st2"},
             "spec": {"realmId": k.realm, "spaceId": "s2"}}
        )  # fmt: skip
        # (nc: this busybox's wget crashes in its static resolver)
        fetch = rf"printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 5 {address} {port} | grep -q '{PAGE}'"
        await k.apply(
            cell_doc(k, "client", [container(k, "get", script=fetch)], space="s2", stack="st2")
        )
        client = await k.wait_for(
            Kind.CELL,
            cell_key(k, "client", space="s2", stack="st2"),
            until=lambda obj: (
                isinstance(obj, Cell)
                and bool(obj.status.containers)
                and obj.status.containers[0].exit_code is not None
            ),
        )
        assert isinstance(client, Cell)
        assert client.status.containers[0].exit_code == 0, client.status

        # A second cell asking for the same host port is refused, the holder named.
        code, _, err = await kukectl(
            k, "run", "other", "--image", k.image.name, "-p", f"127.0.0.1:{port}:8080",
            "--realm", k.realm, "--space", "s1", "--stack", "st1",
        )  # fmt: skip
        assert code != 0
        assert "already published by cell" in err
        assert f"{k.realm}/s1/st1/web" in err
        # ... and a container in the host's network may not publish at all.
        code, _out, err = await kukectl(
            k, "apply", "-f", "-",
            stdin=json.dumps(
                cell_doc(k, "hostnet", [container(k, "h", hostNetwork=True, ports=["9:9"])])
                | {"apiVersion": "kukeon.io/v1beta1"}
            ).encode(),
        )  # fmt: skip
        assert code != 0
        assert "spec.containers[0].ports[0]" in err
        assert "hostNetwork" in err

        # Deleting the cell releases the port: no rule, no chain, nothing answers.
        code, _, err = await kukectl(
            k, "delete", "cell", "web", "--realm", k.realm, "--space", "s1", "--stack", "st1"
        )
        assert code == 0, err
        await k.wait_gone(Kind.CELL, key)
        assert ports_state(table) == (set(), set())
        assert await refused("127.0.0.1", port)
        markers = Path(k.config.state_dir) / "network" / "published"
        assert not markers.exists() or not any(markers.iterdir())
    finally:
        await asyncio.to_thread(drop_leftovers, table)


async def test_dropping_ports_from_the_spec_releases_them(kukeond: Kukeond) -> None:
    k = kukeond
    table = k.config.nft_table
    port = free_port()
    try:
        await k.hierarchy()
        key = cell_key(k, "web")
        await k.apply(cell_doc(k, "web", [container(k, "srv", script=HTTPD, ports=[f"{port}:80"])]))
        await k.wait_for(Kind.CELL, key, until=ready)
        assert PAGE in await http_get("127.0.0.1", port)
        stored = await k.registry.get(Kind.CELL, key)
        assert isinstance(stored, Cell)
        # A status write after Ready (the published ports) must not make it a Conflict.
        unpublish = [stored.spec.containers[0].model_copy(update={"ports": []})]
        await update_cell(k, key, spec={"containers": unpublish})

        def unpublished(obj: AnyResource) -> bool:
            return isinstance(obj, Cell) and ready(obj) and not obj.status.containers[0].ports

        await k.wait_for(Kind.CELL, key, until=unpublished)
        assert ports_state(table) == (set(), set())
        assert await refused("127.0.0.1", port)
    finally:
        await asyncio.to_thread(drop_leftovers, table)


async def test_two_cells_that_raced_past_the_api_the_node_publishes_one(
    kukeond: Kukeond,
) -> None:
    """Two writes at one moment can both pass the API's check (stored here through the
    registry, as such a race leaves them): the node publishes the first, fails the second
    naming the holder, and publishes it once the holder is gone."""
    k = kukeond
    table = k.config.nft_table
    port = free_port()
    try:
        await k.hierarchy()
        first, second = cell_key(k, "first"), cell_key(k, "second")
        await k.apply(
            cell_doc(k, "first", [container(k, "srv", script=HTTPD, ports=[f"{port}:80"])])
        )
        await k.wait_for(Kind.CELL, first, until=ready)
        await k.apply(
            cell_doc(k, "second", [container(k, "srv", script=HTTPD, ports=[f"{port}:80"])])
        )

        def refused_naming_first(obj: AnyResource) -> bool:
            return str(obj.status.reason) == "NetworkFailed" and (
                f"cell {k.realm}/s1/st1/first" in str(obj.status.message)
            )

        await k.wait_for(Kind.CELL, second, until=refused_naming_first)
        assert ports_state(table)[1] == {f"tcp *:{port}"}
        await k.registry.delete(Kind.CELL, first)
        await k.wait_gone(Kind.CELL, first)

        def published(obj: AnyResource) -> bool:
            return isinstance(obj, Cell) and ready(obj) and bool(obj.status.containers[0].ports)

        await k.wait_for(Kind.CELL, second, until=published, within=90)
        assert PAGE in await http_get("127.0.0.1", port)
    finally:
        await asyncio.to_thread(drop_leftovers, table)


async def test_a_port_a_host_process_listens_on_is_not_taken_from_it(kukeond: Kukeond) -> None:
    """A DNAT would take the connections of a host service on that port (sshd, etcd on
    127.0.0.1): the node refuses it, naming the listener, until the port is free."""
    k = kukeond
    table = k.config.nft_table
    service = socket.socket()
    try:
        service.bind(("127.0.0.1", 0))
        service.listen()
        port = int(service.getsockname()[1])
        await k.hierarchy()
        key = cell_key(k, "web")
        await k.apply(cell_doc(k, "web", [container(k, "srv", script=HTTPD, ports=[f"{port}:80"])]))

        def refused_in_use(obj: AnyResource) -> bool:
            message = str(obj.status.message)
            return "in use" in message and f"127.0.0.1:{port}" in message

        await k.wait_for(Kind.CELL, key, until=refused_in_use)
        assert ports_state(table) == (set(), set())
        service.close()

        def published(obj: AnyResource) -> bool:
            return isinstance(obj, Cell) and ready(obj) and bool(obj.status.containers[0].ports)

        await k.wait_for(Kind.CELL, key, until=published, within=90)
        assert PAGE in await http_get("127.0.0.1", port)
    finally:
        service.close()
        await asyncio.to_thread(drop_leftovers, table)


def _own_test_address() -> tuple[str, str]:
    """A link name and a TEST-NET-2 address (RFC 5737), both this process's own (two test
    workers may run this at once)."""
    pid = os.getpid()
    return f"kkha{pid % 100_000}", f"198.51.100.{pid % 250 + 2}"


def _add_address(link: str, address: str) -> None:
    _drop_link(link)
    for command in (
        ["ip", "link", "add", link, "type", "bridge"],  # no dummy module here
        ["ip", "addr", "add", f"{address}/32", "dev", link],
        ["ip", "link", "set", link, "up"],
    ):
        subprocess.run(command, capture_output=True, check=True)


async def _warned(k: Kukeond, name: str, reason: str, *, within: float = 20.0) -> None:
    """Wait for a Warning Event of ``reason`` about cell ``name``."""
    assert k.daemon.events is not None
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        for event in (await k.daemon.events.list(k.realm)).items:
            if event.involved_object.name == name and event.reason == reason:
                assert str(event.type) == "Warning"
                return
        await asyncio.sleep(0.3)
    raise AssertionError(f"no {reason} Event about cell {name}")


def _drop_link(name: str) -> None:
    subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)


async def test_a_host_address_the_node_lacks_is_said_until_it_is_there(kukeond: Kukeond) -> None:
    """A port published on a hostIP the node does not have takes no connection: the cell's
    status and a Warning Event say so (the rule stays, as a floating address may come),
    and the status is cleared as soon as the address is on the node (kukeond follows the
    node's addresses: seconds, not the periodic look's 30 s), where the port answers."""
    k = kukeond
    table = k.config.nft_table
    port = free_port()
    link, address = _own_test_address()
    try:
        await k.hierarchy()
        key = cell_key(k, "web")
        await k.apply(
            cell_doc(k, "web", [container(k, "srv", script=HTTPD, ports=[f"{address}:{port}:80"])])
        )

        def said_missing(obj: AnyResource) -> bool:
            return (
                ready(obj)
                and str(obj.status.reason) == "HostAddressMissing"
                and f"{address}" in str(obj.status.message)
                and k.config.node_name in str(obj.status.message)
            )

        await k.wait_for(Kind.CELL, key, until=said_missing)
        assert ports_state(table)[1] == {f"tcp {address}:{port}"}
        await _warned(k, "web", "HostAddressMissing")
        # The passes the cell's own writes brought are over: its next look is ~30 s away.
        await asyncio.sleep(3)
        await asyncio.to_thread(_add_address, link, address)

        def cleared(obj: AnyResource) -> bool:
            return ready(obj) and obj.status.reason is None and obj.status.message is None

        await k.wait_for(Kind.CELL, key, until=cleared, within=3)  # at once, not at the look
        assert PAGE in await http_get(address, port)
    finally:
        await asyncio.to_thread(_drop_link, link)
        await asyncio.to_thread(drop_leftovers, table)
