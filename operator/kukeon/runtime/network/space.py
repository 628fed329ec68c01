"""The space-level facade the controllers call: one network per space, one attachment per cell.

``ensure_space_network`` turns a space into a subnet, a conflist on disk and an egress
chain; ``attach_cell`` gives a cell a named network namespace configured by the space's CNI
network (and ``lo`` by the loopback plugin). Each call is idempotent and returns what it
observed, which the controllers copy into ``status``. Removal undoes everything, including
what CNI DEL never removes (the bridge, the IPAM directory, idle firewall chains).

A cell has one interface per network: ``eth0`` on its space's network (or on the root
container's own ``cniConfigPath``), and ``eth1``, ``eth2``... on the spaces its containers'
``networks`` join (``join_network``, with ``joined_conflist``: no default route through
them, so what leaves through a joined interface is bound for that space's subnet and
crosses that space's bridge, where its egress chain applies). Each interface's ADD result
and the exact configuration it was made with are kept as an attachment record
(``records``): CNI requires them for CHECK and DEL, and they must survive a daemon restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any, Literal

from kukeon.concurrently import all_of
from kukeon.runtime.hostfiles import make_dirs
from kukeon.runtime.hostthreads import run_on_host_thread
from kukeon.runtime.idranges import IdRange
from kukeon.runtime.network import veth
from kukeon.runtime.network._files import remove_tree_if_present, unlink_if_present
from kukeon.runtime.network.bridge import bridge_name, bridge_ports, delete_link, tag_bridge
from kukeon.runtime.network.bridgeleftovers import BridgeLeftovers
from kukeon.runtime.network.cni.config import (
    NetworkConfigList,
    gateway_of,
    joined_conflist,
    load_conflist,
    render_loopback_config,
    render_space_conflist,
    write_conflist,
)
from kukeon.runtime.network.cni.invoke import DEFAULT_PLUGIN_DIRS, CniRuntime, RuntimeConf
from kukeon.runtime.network.cni.result import CniResult
from kukeon.runtime.network.cni_leftovers import (
    remove_idle_firewall_chains,
    remove_masquerade_leftovers,
)
from kukeon.runtime.network.egress import DEFAULT_TABLE, AppliedEgress, EgressRuleset, NftEgress
from kukeon.runtime.network.errors import (
    CniConfigError,
    CniError,
    NetworkError,
)
from kukeon.runtime.network.forward import ForwardAccepts
from kukeon.runtime.network.inprocess import BridgeNetwork, InProcessAttachments, Links
from kukeon.runtime.network.leases import result_from_leases
from kukeon.runtime.network.netns import DEFAULT_NETNS_DIR, NetnsManager
from kukeon.runtime.network.records import (
    DRIVER_NETLINK,
    PRIMARY_IFNAME,
    AttachmentRecord,
    AttachmentRecords,
)
from kukeon.runtime.network.subnets import (
    DEFAULT_POOL,
    DEFAULT_PREFIX,
    JsonFileSubnetStore,
    SubnetStore,
    bridge_holder,
    host_networks,
    space_key,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NetworkSettings:
    """Host-level knobs, normally filled from kukeond's configuration."""

    state_dir: Path = Path("/var/lib/kukeon")
    cni_plugin_dirs: tuple[Path, ...] = DEFAULT_PLUGIN_DIRS
    netns_dir: Path = DEFAULT_NETNS_DIR
    nft_table: str = DEFAULT_TABLE
    subnet_pool: IPv4Network = DEFAULT_POOL
    subnet_prefix: int = DEFAULT_PREFIX
    include_portmap: bool = True
    include_firewall: bool = True
    instance: str = ""
    """This control plane's tag in host-wide names (see ``bridge.instance_tag``)."""
    cni_check_seconds: float = 300.0
    """How long a CNI-made attachment whose interface still carries its address is kept
    without a CNI CHECK (the plugins run again at most this often per interface)."""

    @property
    def network_dir(self) -> Path:
        return self.state_dir / "network"

    @property
    def owned_netns_dir(self) -> Path:
        """One empty file per network namespace this node made: what its orphan collector
        may remove in a netns directory other control planes share."""
        return self.network_dir / "netns-owned"

    @property
    def ipam_dir(self) -> Path:
        """host-local's ``dataDir``: one sub-directory of leases per network."""
        return self.network_dir / "ipam"

    @property
    def attachments_dir(self) -> Path:
        return self.network_dir / "attachments"

    @property
    def subnets_file(self) -> Path:
        return self.network_dir / "subnets.json"

    @property
    def port_alias(self) -> str:
        """The ``ifalias`` of the bridge ports this node makes (``veth.owner_alias``)."""
        return veth.owner_alias(self.state_dir)


@dataclass(frozen=True)
class PortMapping:
    """A host port published to a cell (handled by the ``portmap`` plugin)."""

    host_port: int
    container_port: int
    protocol: Literal["tcp", "udp"] = "tcp"
    host_ip: str = ""

    def to_cni(self) -> dict[str, Any]:
        mapping: dict[str, Any] = {
            "hostPort": self.host_port,
            "containerPort": self.container_port,
            "protocol": self.protocol,
        }
        if self.host_ip:
            mapping["hostIP"] = self.host_ip
        return mapping


@dataclass(frozen=True)
class SpaceNetworkStatus:
    """What :meth:`SpaceNetworks.ensure_space_network` observed after converging."""

    bridge_name: str
    network_name: str
    subnet: IPv4Network
    gateway: IPv4Address
    cni_config_path: Path
    conflist_written: bool
    """False when the file already had exactly this content."""
    bridge_present: bool
    """The bridge appears with the first cell (the CNI bridge plugin creates it)."""
    egress: AppliedEgress


@dataclass(frozen=True)
class SpaceNetworkRemoval:
    bridge_name: str
    egress_removed: bool
    conflist_removed: bool
    bridge_removed: bool
    ipam_dir_removed: bool
    firewall_chains_removed: bool
    subnet_released: bool


@dataclass(frozen=True)
class CellAttachment:
    """A cell's place on its space's network."""

    cell_id: str
    netns_path: Path
    ifname: str
    bridge_name: str
    network_name: str
    address: IPv4Interface
    gateway: IPv4Address | None
    result: CniResult = field(repr=False)

    @property
    def ip(self) -> IPv4Address:
        return self.address.ip

    @property
    def subnet(self) -> IPv4Network:
        return self.address.network


def space_conflist_path(*, conf_dir: Path, realm: str, space: str, instance: str = "") -> Path:
    """Where a space's conflist goes in a CNI configuration directory (the space's
    ``spec.cniConfigPath`` or the daemon's ``cniConfDir``)."""
    return conf_dir / f"kukeon-{bridge_name(realm, space, instance)}.conflist"


class SpaceNetworks:
    """Space networks and cell attachments on this host."""

    def __init__(
        self,
        *,
        settings: NetworkSettings,
        subnets: SubnetStore | None = None,
        cni: CniRuntime | None = None,
        netns: NetnsManager | None = None,
        egress: NftEgress | None = None,
        links: Links | None = None,
    ) -> None:
        self.settings = settings
        self.subnets: SubnetStore = subnets or JsonFileSubnetStore(
            path=settings.subnets_file, in_use=self._in_use, bridge_of=self._bridge_of_key
        )
        self.cni = cni or CniRuntime(plugin_dirs=settings.cni_plugin_dirs)
        self.netns = netns or NetnsManager(directory=settings.netns_dir)
        self.egress = egress or NftEgress(table=settings.nft_table)
        self.records = AttachmentRecords(settings.attachments_dir)
        self.inprocess = InProcessAttachments(
            records=self.records, links=links, alias=settings.port_alias, egress=self.egress
        )
        self.forward = ForwardAccepts()
        self.leftovers = BridgeLeftovers(
            settings, self.records, self.inprocess.links, self.egress, self.subnets,
            self._remove, self.forward,
        )  # fmt: skip
        self._checked: dict[tuple[str, str], float] = {}
        """When each CNI-made interface was last ADDed or CHECKed (monotonic clock)."""

    def _in_use(self, key: str) -> list[IPv4Network]:
        """What a new subnet of the space ``key`` must avoid: the host's networks, except its
        own bridge's (nodes of a test fleet share one host and so one bridge per space)."""
        realm, _, space = key.partition("/")
        return host_networks(except_link=bridge_name(realm, space, self.settings.instance))

    def bridge_of(self, realm: str, space: str) -> str:
        return bridge_name(realm, space, self.settings.instance)

    def _bridge_of_key(self, key: str) -> str:
        return self.bridge_of(*key.split("/", 1))

    def conflist_for(self, *, bridge: str, subnet: IPv4Network) -> NetworkConfigList:
        return render_space_conflist(
            network_name=bridge,
            bridge=bridge,
            subnet=subnet,
            ipam_data_dir=self.settings.ipam_dir,
            include_portmap=self.settings.include_portmap,
            include_firewall=self.settings.include_firewall,
        )

    async def ensure_space_network(
        self,
        *,
        realm: str,
        space: str,
        cni_config_path: Path,
        egress: EgressRuleset,
        builtin: bool = False,
    ) -> SpaceNetworkStatus:
        """The space's subnet, conflist and egress chain; ``builtin`` (its cells attached
        in-process) adds the masquerade the bridge plugin's ``ipMasq`` made per cell and
        the FORWARD accepts the firewall plugin made per cell (``forward``), and bounds the
        bridge by its leases, not its subnet (``neighbours``)."""
        bridge = bridge_name(realm, space, self.settings.instance)
        # Fail on a missing plugin now, with its name, rather than at the first cell.
        probe = self.conflist_for(bridge=bridge, subnet=self.settings.subnet_pool)
        self.cni.require_plugins(probe)
        self.cni.require_plugins(render_loopback_config())
        _ = self.egress.nft_binary
        subnet = await self.subnets.assign(
            space_key(realm, space),
            pool=self.settings.subnet_pool,
            prefix=self.settings.subnet_prefix,
        )
        conflist = self.conflist_for(bridge=bridge, subnet=subnet)
        written = await write_conflist(cni_config_path, conflist)
        leases = self.settings.ipam_dir / bridge if builtin else None  # else bound by subnet
        applied = await self.egress.apply(
            bridge=bridge,
            realm=realm,
            subnet=subnet,
            policy=egress,
            masquerade=builtin,
            leases=leases,
        )
        if builtin and self.settings.include_firewall:
            await self.forward.allow(bridge)
        return SpaceNetworkStatus(
            bridge_name=bridge,
            network_name=conflist.name,
            subnet=subnet,
            gateway=gateway_of(subnet),
            cni_config_path=cni_config_path,
            conflist_written=written,
            bridge_present=await tag_bridge(bridge, self.settings.port_alias),
            egress=applied,
        )

    async def remove_space_network(
        self, *, realm: str, space: str, cni_config_path: Path | None
    ) -> SpaceNetworkRemoval:
        """Tear the space's network down, this node's ports left on its bridge first (a
        port no kukeon made holds it all: ``bridgeleftovers``); the subnet record goes
        last, so a teardown cut short is found and finished by the next one; the rest, one
        independent of another, side by side (~60 ms less than in turn). ``cni_config_path``
        None leaves every conflist alone (the orphan collector passes it when the file there
        is not this host's own)."""
        bridge, key = bridge_name(realm, space, self.settings.instance), space_key(realm, space)
        held = await self.subnets.assignments()
        if key not in held and bridge_holder(held, key, self._bridge_of_key):
            # Another space's bridge (refused to this one: BridgeNameTakenError).
            return SpaceNetworkRemoval(bridge, False, False, False, False, False, False)
        await self.leftovers.clear(bridge)

        async def conflist() -> bool:
            path = cni_config_path
            return path is not None and await asyncio.to_thread(unlink_if_present, path)

        async def link() -> bool:  # ports left are other nodes' (a fleet sharing the host's)
            return not await bridge_ports(bridge) and await delete_link(bridge)

        async def firewall() -> bool:  # the space's own rules first: the CNI chains may fail
            return self.settings.include_firewall and (
                await self.forward.remove(bridge) | await remove_idle_firewall_chains()
            )

        egress, conflist_gone, bridge_gone, ipam, firewall_gone = await all_of(
            self.egress.remove(bridge=bridge), conflist(), link(),
            asyncio.to_thread(remove_tree_if_present, self.settings.ipam_dir / bridge),
            firewall(),
        )  # fmt: skip
        released = await self.subnets.release(key)
        return SpaceNetworkRemoval(
            bridge, egress, conflist_gone, bridge_gone, ipam, firewall_gone, released
        )

    async def remove_idle_bridges(
        self, live: Callable[[], Awaitable[Collection[str]]] | None = None
    ) -> list[str]:
        """Idle bridges and chains of spaces gone, removed (``BridgeLeftovers.sweep``)."""
        return await self.leftovers.sweep(live)

    def cell_netns_path(self, cell_id: str) -> Path:
        """The network namespace ``attach_cell`` gives ``cell_id`` (made or not yet)."""
        return self.netns.path(cell_id)

    async def make_cell_netns(
        self, *, cell_id: str, netns_name: str | None = None, id_range: IdRange | None = None
    ) -> Path:
        """The cell's network namespace, empty until ``attach_cell`` (which makes it too):
        a task may be created in it, not started, while the cell is attached. With
        ``id_range`` it is owned by a user namespace of its own mapping that range
        (``hostUsers: false``), made here first: ``attach_cell`` then finds it made."""
        # Marked before it exists: a crash right after creating it still leaves it ours.
        await asyncio.to_thread(self.mark_owned, netns_name or cell_id)
        if id_range is None:
            return await self.netns.create(netns_name or cell_id)
        return await self.netns.create(netns_name or cell_id, id_range=id_range)

    async def attach_cell(
        self,
        *,
        cell_id: str,
        cni_config_path: Path,
        netns_name: str | None = None,
        ifname: str = PRIMARY_IFNAME,
        port_mappings: Sequence[PortMapping] = (),
        builtin: bool = False,
    ) -> CellAttachment:
        """Give the cell its namespace and address; a second call returns the same attachment.

        A recorded attachment made from another configuration than the one now at
        ``cni_config_path`` (the root container's ``cniConfigPath`` set, changed or
        removed) is deleted and made again; a file that cannot be read keeps it.
        ``builtin``: the configuration is the space's own (kukeon rendered it), made in
        this process (``inprocess``) rather than by the CNI plugins; an attachment CNI made
        before stays CNI's while it stands.
        """
        netns_path = await self.make_cell_netns(cell_id=cell_id, netns_name=netns_name)
        wanted = await _load_conflist_or_none(cni_config_path)
        network = BridgeNetwork.of(wanted) if builtin and wanted is not None else None
        kept = await self._keep_recorded(cell_id, ifname, netns_path, wanted, network is not None)
        if kept is not None:
            return kept
        if network is not None and wanted is not None:
            record = await self.inprocess.attach(
                cell_id=cell_id, netns=netns_path, ifname=ifname, conflist=wanted, network=network
            )
            return _attachment(cell_id, record.conf, record.conflist, record.result)
        conflist = wanted if wanted is not None else await load_conflist(cni_config_path)
        capability_args = (
            {"portMappings": [m.to_cni() for m in port_mappings]} if port_mappings else {}
        )
        loopback = render_loopback_config()
        lo_conf = RuntimeConf(container_id=cell_id, netns=netns_path, ifname="lo")
        try:
            await self.cni.add(loopback, lo_conf)
            return await self._add(cell_id, netns_path, conflist, ifname, capability_args)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._delete_quietly(loopback, lo_conf, None)
            raise

    async def join_network(
        self,
        *,
        cell_id: str,
        cni_config_path: Path,
        ifname: str,
        netns_name: str | None = None,
        builtin: bool = False,
    ) -> CellAttachment:
        """One more interface of the cell, on another space's network (``joined_conflist``:
        no default route through it); a second call returns the same attachment."""
        if ifname == PRIMARY_IFNAME:
            raise NetworkError(f"{ifname} is the cell's first interface, not a joined one")
        await asyncio.to_thread(self.mark_owned, netns_name or cell_id)
        netns_path = await self.netns.create(netns_name or cell_id)
        loaded = await _load_conflist_or_none(cni_config_path)
        wanted = joined_conflist(loaded) if loaded is not None else None
        network = BridgeNetwork.of(wanted) if builtin and wanted is not None else None
        kept = await self._keep_recorded(cell_id, ifname, netns_path, wanted, network is not None)
        if kept is not None:
            return kept
        if wanted is None:
            wanted = joined_conflist(await load_conflist(cni_config_path))
        if network is not None:
            record = await self.inprocess.attach(
                cell_id=cell_id, netns=netns_path, ifname=ifname, conflist=wanted, network=network
            )
            return _attachment(cell_id, record.conf, record.conflist, record.result)
        return await self._add(cell_id, netns_path, wanted, ifname, {})

    async def leave_network(self, *, cell_id: str, ifname: str) -> bool:
        """DEL one joined interface of the cell; whether it had one."""
        if ifname == PRIMARY_IFNAME:
            raise NetworkError(f"{ifname} is the cell's first interface, not a joined one")
        record = await self.records.load(cell_id, ifname)
        if record is None:
            return False
        await self._remove(record)
        return True

    async def _remove(self, record: AttachmentRecord) -> None:
        """Undo one recorded interface, by whoever made it, and drop its record."""
        if record.driver == DRIVER_NETLINK:
            await self.inprocess.detach(record)
            return
        await self._delete(record.conflist, record.conf, record.result)
        await self.records.drop(record.conf.container_id, record.conf.ifname)
        self._checked.pop((record.conf.container_id, record.conf.ifname), None)

    async def leave_networks(self, *, cell_id: str, keep: Collection[str] = ()) -> list[str]:
        """DEL the cell's joined interfaces but ``keep``; the interfaces left."""
        left = []
        for ifname in await self.records.extra_ifnames(cell_id):
            if ifname not in keep and await self.leave_network(cell_id=cell_id, ifname=ifname):
                left.append(ifname)
        return left

    async def joined_interfaces(self, cell_id: str) -> list[CellAttachment]:
        """The cell's recorded interfaces beyond the first, by interface name."""
        found = []
        for ifname in await self.records.extra_ifnames(cell_id):
            record = await self.records.load(cell_id, ifname)
            if record is not None:
                found.append(_attachment(cell_id, record.conf, record.conflist, record.result))
        return found

    async def joined_cells(self, network: str) -> list[str]:
        """The cells of this node with a joined interface on the CNI network ``network``."""
        return sorted({cell_id for cell_id, _ in await self.records.joined(network)})

    async def _keep_recorded(
        self,
        cell_id: str,
        ifname: str,
        netns_path: Path,
        wanted: NetworkConfigList | None,
        in_process: bool,
    ) -> CellAttachment | None:
        """The recorded CNI attachment when it still stands as wanted; else it is deleted
        and None returned. An in-process one: ``_keep_made_here``.

        CHECK runs the plugins again, so it is not run on every pass: an interface that
        still carries its address (a netlink read) is kept without one until
        ``cni_check_seconds`` have passed since its ADD or last CHECK; one that lost it is
        not CHECKed but made again.
        """
        existing = await self.records.load(cell_id, ifname)
        if existing is None:
            return None
        if existing.driver == DRIVER_NETLINK:
            return await self._keep_made_here(existing, netns_path, wanted, in_process)
        conflist, conf, result = existing.conflist, existing.conf, existing.result
        if conf.netns == netns_path and (wanted is None or _same_network(conflist, wanted)):
            attachment = _attachment(cell_id, conf, conflist, result)
            links = self.inprocess.links
            if await run_on_host_thread(links.carries, netns_path, ifname, attachment.address):
                if self._check_due(cell_id, ifname):
                    try:
                        await self.cni.check(conflist, conf, result)
                    except CniError:
                        pass  # drifted (a rule, a route): rebuilt from scratch
                    else:
                        self._checked[(cell_id, ifname)] = time.monotonic()
                        return attachment
                else:
                    return attachment
        await self._delete_quietly(conflist, conf, result)
        await self.records.drop(cell_id, ifname)
        self._checked.pop((cell_id, ifname), None)
        return None

    async def _keep_made_here(
        self,
        existing: AttachmentRecord,
        netns_path: Path,
        wanted: NetworkConfigList | None,
        in_process: bool,
    ) -> CellAttachment | None:
        """An in-process attachment: kept (verified) when the configuration cannot be read
        now, left to ``inprocess`` when the caller attaches in-process too, else removed so
        the CNI plugins can make the interface (a root container's ``cniConfigPath`` set)."""
        cell_id, ifname = existing.conf.container_id, existing.conf.ifname
        network = BridgeNetwork.of(existing.conflist)
        if wanted is None and network is not None:
            record = await self.inprocess.attach(
                cell_id=cell_id,
                netns=netns_path,
                ifname=ifname,
                conflist=existing.conflist,
                network=network,
            )
            return _attachment(cell_id, record.conf, record.conflist, record.result)
        if not in_process:
            await self.inprocess.detach(existing)
        return None

    def _check_due(self, cell_id: str, ifname: str) -> bool:
        last = self._checked.get((cell_id, ifname))
        return last is None or time.monotonic() - last >= self.settings.cni_check_seconds

    async def _add(
        self,
        cell_id: str,
        netns_path: Path,
        conflist: NetworkConfigList,
        ifname: str,
        capability_args: dict[str, Any],
    ) -> CellAttachment:
        """CNI ADD of one interface, recorded; nothing left half-configured on failure."""
        conf = RuntimeConf(
            container_id=cell_id, netns=netns_path, ifname=ifname, capability_args=capability_args
        )
        # host-local would make its data directory with its own modes (0755).
        await asyncio.to_thread(make_dirs, self.settings.ipam_dir)
        try:
            result = await self.cni.add(conflist, conf)
            # No CHECK right after a successful ADD (it ran every plugin again for nothing);
            # a later attach of the same cell CHECKs and rebuilds a drifted attachment.
            await self.records.save(AttachmentRecord(conflist=conflist, conf=conf, result=result))
            self._checked[(cell_id, ifname)] = time.monotonic()
        except BaseException:
            # CNI's answer to a failed ADD is a DEL.
            with contextlib.suppress(Exception):
                partial = await result_from_leases(conflist, conf)
                await self._delete_quietly(conflist, conf, partial)
            with contextlib.suppress(Exception):
                await self.records.drop(cell_id, ifname)
            raise
        return _attachment(cell_id, conf, conflist, result)

    async def check_cell(self, *, cell_id: str) -> CellAttachment | None:
        """CHECK the cell's attachment; ``None`` when the cell has none (raises on drift)."""
        existing = await self.records.load(cell_id)
        if existing is None:
            return None
        if existing.driver == DRIVER_NETLINK:
            found = await self.inprocess.check(existing)
            if found:
                raise NetworkError(f"attachment of {cell_id} drifted: {'; '.join(found)}")
        else:
            await self.cni.check(existing.conflist, existing.conf, existing.result)
            self._checked[(cell_id, existing.conf.ifname)] = time.monotonic()
        return _attachment(cell_id, existing.conf, existing.conflist, existing.result)

    async def detach_cell(
        self,
        *,
        cell_id: str,
        cni_config_path: Path | None = None,
        netns_name: str | None = None,
        ifname: str = PRIMARY_IFNAME,
    ) -> bool:
        """DEL the cell from every network it is on and remove its namespace; whether
        anything was there."""
        netns_path = self.netns.path(netns_name or cell_id)
        stale_netns = await self.netns.drop_unbound(netns_name or cell_id)  # so DELs see none
        found = bool(await self.leave_networks(cell_id=cell_id)) or stale_netns
        existing = await self.records.load(cell_id)
        if existing is not None:
            found = True
            await self._remove(existing)
        elif cni_config_path is not None and await asyncio.to_thread(cni_config_path.exists):
            conflist = await load_conflist(cni_config_path)
            conf = RuntimeConf(container_id=cell_id, netns=netns_path, ifname=ifname)
            # Without the cached result the firewall plugin would not know which rules to
            # delete; the IPAM lease still says which address the cell had.
            await self._delete(conflist, conf, await result_from_leases(conflist, conf))
        lo_conf = RuntimeConf(container_id=cell_id, netns=netns_path, ifname="lo")
        if existing is None or existing.driver != DRIVER_NETLINK:
            await self.cni.delete(render_loopback_config(), lo_conf, None)
        await self.records.drop(cell_id)
        self._checked.pop((cell_id, ifname), None)
        # Leases (and host ends named after them) a crash left without a record.
        found = await self.inprocess.remove_leftovers(cell_id, self.settings.ipam_dir) or found
        removed_netns = await self.netns.remove(netns_name or cell_id)
        await asyncio.to_thread(
            unlink_if_present, self.settings.owned_netns_dir / (netns_name or cell_id)
        )
        return found or removed_netns

    def mark_owned(self, name: str) -> None:
        RuntimeConf(container_id=name, netns=Path("/"))  # validates the name as a file name
        make_dirs(self.settings.owned_netns_dir)
        (self.settings.owned_netns_dir / name).touch(mode=0o600, exist_ok=True)

    async def owned_netns(self) -> set[str]:
        """The network namespaces this node made and has not removed yet."""

        def names() -> set[str]:
            directory = self.settings.owned_netns_dir
            return {p.name for p in directory.iterdir()} if directory.is_dir() else set()

        return await asyncio.to_thread(names)

    async def _delete_quietly(
        self, conflist: NetworkConfigList, conf: RuntimeConf, result: CniResult | None
    ) -> None:
        with contextlib.suppress(CniError):
            await self._delete(conflist, conf, result)

    async def _delete(
        self, conflist: NetworkConfigList, conf: RuntimeConf, result: CniResult | None
    ) -> None:
        """CNI DEL, then whatever DEL is known to leave when the interface was already gone."""
        await self.cni.delete(conflist, conf, result)
        if any(p.get("type") == "bridge" and p.get("ipMasq") for p in conflist.plugins):
            await remove_masquerade_leftovers(network=conflist.name, container_id=conf.container_id)


def _same_network(recorded: NetworkConfigList, wanted: NetworkConfigList) -> bool:
    """Whether an attachment was made on the network wanted now. Its name says so: a change
    of a network's other settings reaches its cells when they are attached again (a
    recreated cell), never by taking their addresses away."""
    return recorded.name == wanted.name


async def _load_conflist_or_none(path: Path) -> NetworkConfigList | None:
    """The configuration at ``path``, or None when it cannot be read (a recorded attachment
    is then kept as it is)."""
    try:
        return await load_conflist(path)
    except (CniConfigError, OSError):
        return None


def _attachment(
    cell_id: str, conf: RuntimeConf, conflist: NetworkConfigList, result: CniResult
) -> CellAttachment:
    ip = result.first_ipv4()
    if ip is None or not isinstance(ip.address, IPv4Interface):
        raise NetworkError(f"CNI network `{conflist.name}` gave cell {cell_id} no IPv4 address")
    gateway = ip.gateway if isinstance(ip.gateway, IPv4Address) else None
    bridge = next(
        (str(p["bridge"]) for p in conflist.plugins if p.get("type") == "bridge" and "bridge" in p),
        "",
    )
    return CellAttachment(
        cell_id=cell_id,
        netns_path=conf.netns,
        ifname=conf.ifname,
        bridge_name=bridge,
        network_name=conflist.name,
        address=ip.address,
        gateway=gateway,
        result=result,
    )
