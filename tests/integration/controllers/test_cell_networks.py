"""A cell's `networks` (other spaces' networks it joins) and its root container's
`cniConfigPath` (a network of its own instead of its space's), on real containerd, CNI
plugins and nftables."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from kukeon.api import Cell, Kind, Space
from kukeon.daemon.app import Daemon
from kukeon.runtime.network import NftEgress, bridge_name, delete_link
from tests.fixtures.kukeond import Kukeond

from .conftest import speed_up
from .helpers import cell_doc, cell_key, container, exec_in, update_cell

pytestmark = pytest.mark.integration


async def _space(k: Kukeond, name: str, *, stack: str, **spec: object) -> Space:
    await k.apply(
        {"kind": "Space", "metadata": {"name": name}, "spec": {"realmId": k.realm, **spec}}
    )
    await k.apply(
        {
            "kind": "Stack",
            "metadata": {"name": stack},
            "spec": {"realmId": k.realm, "spaceId": name},
        }
    )
    await k.wait_for(Kind.STACK, (k.realm, name, stack), state="Ready")
    found = await k.registry.get(Kind.SPACE, (k.realm, name))
    assert isinstance(found, Space)
    return found


def _subnet(space: Space) -> IPv4Network:
    entry = next(iter(space.status.nodes.values()))
    assert entry.subnet is not None
    return IPv4Network(entry.subnet)


async def _ping(k: Kukeond, cid: str, address: IPv4Address | str) -> bool:
    code, _ = await exec_in(k, cid, "ping", "-c", "1", "-W", "2", str(address))
    return code == 0


async def test_a_cell_joins_another_spaces_network(kukeond: Kukeond) -> None:
    """eth0 on its own space, eth1 on the joined one (addresses from both bridges); a cell
    of the joined space is reachable; what leaves through eth1 meets the joined space's
    egress policy (deny: its gateway does not answer) while eth0 keeps its own (allow);
    the joined space deleted later: the interface goes and the cell says why."""
    k = kukeond
    await k.hierarchy()  # space s1 (egress allowed), stack st1
    deny = {"network": {"egress": {"default": "deny"}}}
    await _space(k, "s2", stack="st2", **deny)

    # The joiner first: s2 has no cell of its own on this node, the join materialises it.
    await k.apply(cell_doc(k, "joiner", [container(k, "main", networks=["s2"])]))
    ready = await k.wait_for(Kind.CELL, cell_key(k, "joiner"), state="Ready")
    assert isinstance(ready, Cell)
    s1 = await k.registry.get(Kind.SPACE, (k.realm, "s1"))
    s2 = await k.registry.get(Kind.SPACE, (k.realm, "s2"))
    assert isinstance(s1, Space)
    assert isinstance(s2, Space)
    net1, net2 = _subnet(s1), _subnet(s2)
    interfaces = {i.interface: i for i in ready.status.network.interfaces}
    assert sorted(interfaces) == ["eth0", "eth1"]
    assert interfaces["eth0"].space == "s1"
    assert interfaces["eth1"].space == "s2"
    ip0, ip1 = IPv4Address(interfaces["eth0"].ip), IPv4Address(interfaces["eth1"].ip)
    assert ip0 in net1
    assert ip1 in net2
    assert ready.status.network.ip == str(ip0)

    code, output = await exec_in(k, "s1_st1_joiner_main", "ip", "-4", "addr")
    assert code == 0, output
    assert f"inet {ip0}/" in output
    assert f"inet {ip1}/" in output
    code, routes = await exec_in(k, "s1_st1_joiner_main", "ip", "route")
    assert code == 0, routes
    assert "default via" in routes
    assert "dev eth0" in routes.split("default via")[1].split("\n")[0]

    # A cell of s2 is reached through eth1 (same bridge: always allowed).
    await k.apply(cell_doc(k, "target", [container(k, "main")], space="s2", stack="st2"))
    target = await k.wait_for(
        Kind.CELL, cell_key(k, "target", space="s2", stack="st2"), state="Ready"
    )
    assert isinstance(target, Cell)
    assert target.status.network.ip is not None
    assert IPv4Address(target.status.network.ip) in net2
    assert await _ping(k, "s1_st1_joiner_main", target.status.network.ip)

    # Egress: s2's policy (deny) governs what leaves through eth1 to its gateway (the host);
    # s1's (allow) what leaves through eth0.
    egress = NftEgress(table=k.config.nft_table)
    bridge2 = bridge_name(k.realm, "s2", k.config.instance)
    before = {c.name: c.packets for c in await egress.counters(bridge=bridge2)}
    assert await _ping(k, "s1_st1_joiner_main", net1.network_address + 1)
    assert not await _ping(k, "s1_st1_joiner_main", net2.network_address + 1)
    after = {c.name: c.packets for c in await egress.counters(bridge=bridge2)}
    assert after["default"] > before.get("default", 0)

    # kukeond restarts: each interface keeps its address (the records are CHECKed, no ADD).
    await k.daemon.stop()
    k.daemon = Daemon(k.config)
    await k.daemon.start()
    assert k.daemon.registry is not None
    k.registry = k.daemon.registry
    speed_up(k)
    await update_cell(k, cell_key(k, "joiner"), metadata={"labels": {"x": "1"}})
    await asyncio.sleep(3)  # the restarted node reconciled the cell (at start and for the label)
    restarted = await k.wait_for(Kind.CELL, cell_key(k, "joiner"), state="Ready")
    assert isinstance(restarted, Cell)
    assert [(i.interface, i.ip) for i in restarted.status.network.interfaces] == [
        ("eth0", str(ip0)),
        ("eth1", str(ip1)),
    ]
    code, output = await exec_in(k, "s1_st1_joiner_main", "ip", "-4", "addr")
    assert code == 0, output
    assert f"inet {ip0}/" in output
    assert f"inet {ip1}/" in output

    # s2 deleted later (its own cell and stack first): the joiner leaves its network and
    # says why; s2's teardown waited for it, then went.
    await k.registry.delete(Kind.CELL, cell_key(k, "target", space="s2", stack="st2"))
    await k.wait_gone(Kind.CELL, cell_key(k, "target", space="s2", stack="st2"))
    await k.registry.delete(Kind.STACK, (k.realm, "s2", "st2"))
    await k.wait_gone(Kind.STACK, (k.realm, "s2", "st2"))
    await k.registry.delete(Kind.SPACE, (k.realm, "s2"))
    failed = await k.wait_for(Kind.CELL, cell_key(k, "joiner"), state="Failed")
    assert "spec.containers[0].networks[0]" in (failed.status.message or "")
    await k.wait_gone(Kind.SPACE, (k.realm, "s2"))
    code, output = await exec_in(k, "s1_st1_joiner_main", "ip", "-4", "addr")
    assert code == 0
    assert f"inet {ip1}/" not in output
    assert f"inet {ip0}/" in output

    # The spec no longer names it: Ready again, one interface.
    joiner = await k.registry.get(Kind.CELL, cell_key(k, "joiner"))
    assert isinstance(joiner, Cell)
    unjoined = [c.model_copy(update={"networks": []}) for c in joiner.spec.containers]
    await update_cell(k, cell_key(k, "joiner"), spec={"containers": unjoined})
    again = await k.wait_for(
        Kind.CELL,
        cell_key(k, "joiner"),
        until=lambda c: (
            isinstance(c, Cell)
            and str(c.status.state) == "Ready"
            and [i.interface for i in c.status.network.interfaces] == ["eth0"]
        ),
    )
    assert isinstance(again, Cell)
    assert again.status.network.ip == str(ip0)


async def test_the_root_containers_cni_config_replaces_the_spaces(
    kukeond: Kukeond, tmp_path: Path
) -> None:
    k = kukeond
    await k.hierarchy()
    token = secrets.token_hex(3)
    bridge = f"kt{token}"
    subnet = IPv4Network(f"10.{200 + secrets.randbelow(40)}.{secrets.randbelow(250)}.0/24")
    allowed = tmp_path / "own-cni"
    allowed.mkdir()
    conflist = allowed / "own.conflist"
    conflist.write_text(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": f"own-{token}",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": bridge,
                        "isGateway": True,
                        "ipam": {
                            "type": "host-local",
                            "dataDir": str(tmp_path / "own-ipam"),
                            "ranges": [[{"subnet": str(subnet)}]],
                            "routes": [{"dst": "0.0.0.0/0"}],
                        },
                    }
                ],
            }
        )
    )
    try:
        root = container(k, "main", cniConfigPath=str(conflist))
        await k.apply(cell_doc(k, "own", [root, container(k, "side")]))
        ready = await k.wait_for(Kind.CELL, cell_key(k, "own"), state="Ready")
        assert isinstance(ready, Cell)
        [interface] = ready.status.network.interfaces
        assert (interface.interface, interface.space, interface.network) == (
            "eth0",
            None,
            f"own-{token}",
        )
        assert interface.ip is not None
        assert IPv4Address(interface.ip) in subnet
        assert ready.status.network.bridge_name == bridge
        # Both containers are on it (they share the root container's namespace).
        for cid in ("s1_st1_own_main", "s1_st1_own_side"):
            code, output = await exec_in(k, cid, "ip", "-4", "addr")
            assert code == 0, output
            assert f"inet {interface.ip}/" in output, output
        await k.registry.delete(Kind.CELL, cell_key(k, "own"))
        await k.wait_gone(Kind.CELL, cell_key(k, "own"))
        # Detached on finalize: host-local's lease of the address is released.
        leases = tmp_path / "own-ipam" / f"own-{token}"
        assert not (leases / str(interface.ip)).exists()
    finally:
        with contextlib.suppress(Exception):
            await delete_link(bridge)
