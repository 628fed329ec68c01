"""Cells on a kukeon space's bridge, attached by kukeond itself: no CNI plugin on the way.

A space network kukeon rendered (``cni.config.render_space_conflist``: the ``bridge``
plugin with ``host-local`` IPAM, then ``portmap`` and ``firewall``) is simple enough to be
made directly over netlink, which is what this module does for the spaces that leave
``cniConfigPath`` unset (the controllers decide; ``SpaceNetworks.attach_cell(builtin=True)``).
What each plugin did and where it went:

- ``loopback``, ``bridge``: ``veth`` (the bridge, the veth pair, the address, the routes,
  ``lo``), with the address from ``leases`` (host-local's files, so the addresses of cells
  CNI attached before the upgrade are never handed out twice);
- ``bridge``'s ``ipMasq``: one masquerade chain per space in the space's nftables table
  (``egress``), applied with the space, not per cell;
- ``portmap``: nothing to do, ports are published by ``ports``; ``firewall``: its per-cell
  FORWARD accepts in iptables become two per space (``forward``), made with the space.

The attachment is recorded (``records``, driver ``netlink``) with a result shaped as the
bridge plugin's, so everything reading records (status, joined networks, the orphan
collector) is unchanged. Order of an attachment: lease, record, then the links, so a crash
at any point leaves something the next attempt (same lease, same link names) or the
cell's detach (record, leases, link by name) finds and finishes or removes.

A recorded attachment is verified with netlink reads only (a few milliseconds) and made
again, with its address, only when something is wrong.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any, Protocol

from kukeon.runtime.hostthreads import run_on_host_thread
from kukeon.runtime.network import leases, veth
from kukeon.runtime.network.cni.config import NetworkConfigList, gateway_of
from kukeon.runtime.network.cni.invoke import RuntimeConf
from kukeon.runtime.network.cni.result import CniResult, parse_result
from kukeon.runtime.network.egress import NftEgress
from kukeon.runtime.network.errors import HostInterfaceTakenError, NetworkError
from kukeon.runtime.network.records import DRIVER_NETLINK, AttachmentRecord, AttachmentRecords
from kukeon.runtime.network.veth import BridgePort

log = logging.getLogger(__name__)

_PLUGINS_DONE_HERE = frozenset({"bridge", "portmap", "firewall"})
_DEFAULT_ROUTES = frozenset({"0.0.0.0/0"})


@dataclass(frozen=True)
class BridgeNetwork:
    """What a kukeon-rendered conflist says of its network, for the in-process path."""

    name: str
    bridge: str
    subnet: IPv4Network
    gateway: IPv4Address
    ipam_dir: Path
    default_route: bool
    hairpin: bool
    mtu: int | None

    @classmethod
    def of(cls, conflist: NetworkConfigList) -> BridgeNetwork | None:
        """The network, or None when the conflist is not of the shape kukeon renders (it
        then stays CNI's)."""
        plugins = conflist.plugins
        if not plugins or plugins[0].get("type") != "bridge":
            return None
        if any(p.get("type") not in _PLUGINS_DONE_HERE for p in plugins):
            return None
        bridge = plugins[0]
        ipam = bridge.get("ipam")
        if not isinstance(ipam, Mapping) or ipam.get("type") != "host-local":
            return None
        try:
            (only_range,) = ipam["ranges"]
            (only,) = only_range
            subnet = IPv4Network(str(only["subnet"]))
            gateway = IPv4Address(str(only.get("gateway") or gateway_of(subnet)))
            routes = [str(route["dst"]) for route in ipam.get("routes", ())]
            data_dir = Path(str(ipam["dataDir"]))
        except (KeyError, TypeError, ValueError):
            return None
        if not bridge.get("isGateway") or not isinstance(bridge.get("bridge"), str):
            return None
        mtu = bridge.get("mtu")
        return cls(
            name=conflist.name,
            bridge=str(bridge["bridge"]),
            subnet=subnet,
            gateway=gateway,
            ipam_dir=data_dir / conflist.name,
            default_route=bridge.get("isDefaultGateway", True) is not False
            and bool(_DEFAULT_ROUTES & set(routes)),
            hairpin=bool(bridge.get("hairpinMode")),
            mtu=int(mtu) if isinstance(mtu, int) else None,
        )

    def port(
        self, netns: Path, cell_id: str, ifname: str, address: IPv4Address, alias: str = ""
    ) -> BridgePort:
        return BridgePort(
            netns=netns,
            ifname=ifname,
            host_ifname=veth.host_ifname(cell_id, ifname),
            bridge=self.bridge,
            address=IPv4Interface(f"{address}/{self.subnet.prefixlen}"),
            gateway=self.gateway,
            default_route=self.default_route,
            hairpin=self.hairpin,
            mtu=self.mtu,
            alias=alias,
        )

    def result(self, port: BridgePort, cni_version: str) -> CniResult:
        """The record's result, shaped as the bridge plugin's answer."""
        document: dict[str, Any] = {
            "cniVersion": cni_version,
            "interfaces": [
                {"name": port.bridge},
                {"name": port.host_ifname},
                {"name": port.ifname, "sandbox": str(port.netns)},
            ],
            "ips": [{"interface": 2, "address": str(port.address), "gateway": str(port.gateway)}],
            "routes": [{"dst": "0.0.0.0/0", "gw": str(port.gateway)}] if port.default_route else [],
        }
        return parse_result(document, plugin="kukeond")


class Links(Protocol):
    """The netlink side (``veth``), replaceable in tests."""

    def make_port(self, port: BridgePort) -> None: ...
    def problems(self, port: BridgePort) -> list[str]: ...
    def remove_port(self, name: str) -> bool: ...
    def carries(self, netns: Path, ifname: str, address: IPv4Interface) -> bool: ...


class NetlinkLinks:
    def make_port(self, port: BridgePort) -> None:
        veth.make_port(port)

    def problems(self, port: BridgePort) -> list[str]:
        return veth.problems(port)

    def remove_port(self, name: str) -> bool:
        return veth.remove_port(name)

    def carries(self, netns: Path, ifname: str, address: IPv4Interface) -> bool:
        return veth.interface_has(netns, ifname, address)


def port_of(record: AttachmentRecord) -> BridgePort:
    """The port a ``netlink`` record stands for."""
    network = BridgeNetwork.of(record.conflist)
    ip = record.result.first_ipv4()
    if network is None or ip is None or not isinstance(ip.address, IPv4Interface):
        raise NetworkError(f"attachment record of {record.conf.container_id} is not kukeond's")
    conf = record.conf
    return network.port(conf.netns, conf.container_id, conf.ifname, ip.address.ip)


class InProcessAttachments:
    """Attach, verify and detach cells on kukeon's own bridge networks."""

    def __init__(
        self,
        *,
        records: AttachmentRecords,
        links: Links | None = None,
        alias: str = "",
        egress: NftEgress | None = None,
    ) -> None:
        self.records = records
        self.egress = egress
        """Told each lease taken or released (``NftEgress.follow_leases``): the space's
        bridge takes ARP and IPv4 only from its leased addresses (``neighbours``)."""
        self.links: Links = links or NetlinkLinks()
        self.alias = alias
        """Set on the host ends made here (``veth.owner_alias``)."""
        self._claiming = asyncio.Lock()
        """Held from the check of a new attachment's host end to its record."""

    async def attach(
        self,
        *,
        cell_id: str,
        netns: Path,
        ifname: str,
        conflist: NetworkConfigList,
        network: BridgeNetwork,
    ) -> AttachmentRecord:
        """The cell's interface on ``network``: the recorded one when it stands, repaired
        when it drifted, made (leased, recorded, linked) when there is none."""
        existing = await self.records.load(cell_id, ifname)
        if existing is not None and existing.driver == DRIVER_NETLINK:
            if existing.conf.netns == netns and existing.conflist.name == network.name:
                port = replace(port_of(existing), alias=self.alias)
                found = await run_on_host_thread(self.links.problems, port)
                if not found:
                    return existing
                log.info("repairing %s of %s: %s", ifname, cell_id, "; ".join(found))
                await run_on_host_thread(self.links.make_port, port)
                # Its attach may have died before following its lease (the space's next
                # apply, as at every start, writes every lease too).
                await self._follow_leases(network)
                return existing
            await self.detach(existing)
        async with self._claiming:
            await self._require_own_host_end(cell_id, ifname)
            address = await run_on_host_thread(
                leases.lease,
                network.ipam_dir,
                subnet=network.subnet,
                gateway=network.gateway,
                owner=cell_id,
                ifname=ifname,
            )
            port = network.port(netns, cell_id, ifname, address, self.alias)
            record = AttachmentRecord(
                conflist=conflist,
                conf=RuntimeConf(container_id=cell_id, netns=netns, ifname=ifname),
                result=network.result(port, conflist.cni_version),
                driver=DRIVER_NETLINK,
            )
            await self.records.save(record)
        try:
            await run_on_host_thread(self.links.make_port, port)
            await self._follow_leases(network)  # before any process of the cell runs
        except BaseException:
            await self._undo(record, port)
            raise
        return record

    async def _follow_leases(self, network: BridgeNetwork) -> None:
        if self.egress is not None:
            await self.egress.follow_leases(bridge=network.bridge, leases=network.ipam_dir)

    async def _require_own_host_end(self, cell_id: str, ifname: str) -> None:
        """No other interface recorded here has the host end this one would get: making
        the port deletes a link of that name first (a crash's leftover, when it is this
        interface's own), which would take another cell, perhaps another realm's, off its
        network. The error does not name the other cell; the log does."""
        name = veth.host_ifname(cell_id, ifname)
        for other in await self.records.attached():
            if other != (cell_id, ifname) and veth.host_ifname(*other) == name:
                log.warning(
                    "%s of %s is refused host end %s: %s of %s has it",
                    ifname,
                    cell_id,
                    name,
                    other[1],
                    other[0],
                )
                raise HostInterfaceTakenError(host_ifname=name, cell_id=cell_id, ifname=ifname)

    async def _undo(self, record: AttachmentRecord, port: BridgePort) -> None:
        """A failed attach leaves nothing; what cannot be undone now is found by name by
        the next attempt or the detach."""
        try:
            await run_on_host_thread(self.links.remove_port, port.host_ifname)
            network = BridgeNetwork.of(record.conflist)
            if network is not None:
                await run_on_host_thread(
                    leases.release, network.ipam_dir, port_id(record), port.ifname
                )
                await self._follow_leases(network)
            await self.records.drop(record.conf.container_id, record.conf.ifname)
        except Exception:
            log.warning(
                "could not undo the failed attachment of %s", port_id(record), exc_info=True
            )

    async def check(self, record: AttachmentRecord) -> list[str]:
        return await run_on_host_thread(self.links.problems, port_of(record))

    async def detach(self, record: AttachmentRecord) -> None:
        """Remove the interface's host end (its peer goes with it) and release its lease."""
        port = port_of(record)
        await run_on_host_thread(self.links.remove_port, port.host_ifname)
        network = BridgeNetwork.of(record.conflist)
        if network is not None:
            await run_on_host_thread(leases.release, network.ipam_dir, port_id(record), port.ifname)
            await self._follow_leases(network)
        await self.records.drop(record.conf.container_id, record.conf.ifname)

    async def remove_leftovers(self, cell_id: str, ipam_dir: Path) -> bool:
        """What a crash left of the cell without a record: its leases in any network and
        the host ends named after them; whether anything was found."""
        freed = await run_on_host_thread(leases.release_everywhere, ipam_dir, cell_id)
        for _, ifname, _ in freed:
            await run_on_host_thread(self.links.remove_port, veth.host_ifname(cell_id, ifname))
        return bool(freed)


def port_id(record: AttachmentRecord) -> str:
    return record.conf.container_id
