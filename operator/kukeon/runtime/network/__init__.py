"""Networking of spaces and cells: bridge names, subnets, CNI, netns, nftables egress, hosts files.

A space is one CNI ``bridge`` network with its own subnet and one egress chain; a cell is
a named network namespace attached to its space's network. The package talks to the host
only (CNI plugin binaries, netlink through pyroute2, ``nft``, ``iptables`` for the firewall
plugin's leftovers) and never imports ``kukeon.store`` or ``kukeon.controllers``; the
controllers map API objects onto the small records defined here.

Modules, one concern each: ``bridge`` (names, link lookup/removal), ``subnets`` (allocator
and its store), ``cni`` (conflist rendering, plugin execution, results), ``netns``,
``egress`` (nftables), ``masquerade`` (a space's masquerade in the same table), ``hosts``
(``/etc/hosts``, ``/etc/hostname``), ``cni_leftovers`` (firewall plugin leftovers),
``inprocess`` (cells on kukeon's own bridge networks without CNI), ``veth`` (its netlink
side), ``leases`` (its addresses, in host-local's files), ``netlink`` (pyroute2's IPRoute
and netns, without the rest of pyroute2), ``records``, ``space`` (the facade the
controllers call), ``errors``.
"""

from kukeon.runtime.network.bridge import (
    bridge_name,
    cell_network_id,
    delete_link,
    instance_tag,
    is_valid_ifname,
    link_exists,
    network_id_prefix,
)
from kukeon.runtime.network.cni import (
    CniDns,
    CniInterface,
    CniIPConfig,
    CniResult,
    CniRoute,
    CniRuntime,
    NetworkConfigList,
    RuntimeConf,
    render_loopback_config,
    render_space_conflist,
)
from kukeon.runtime.network.egress import (
    AppliedEgress,
    EgressRule,
    EgressRuleset,
    NftEgress,
    RuleCounter,
)
from kukeon.runtime.network.errors import (
    BridgeInUseError,
    BridgeNameTakenError,
    CniConfigError,
    CniError,
    CniPluginNotFoundError,
    EgressResolutionError,
    HostPrerequisiteError,
    NetnsError,
    NetworkError,
    NftError,
    SubnetPoolExhaustedError,
)
from kukeon.runtime.network.hosts import (
    CellHostFiles,
    render_hostname,
    render_hosts,
    write_cell_host_files,
)
from kukeon.runtime.network.netns import NetnsManager
from kukeon.runtime.network.space import (
    CellAttachment,
    NetworkSettings,
    PortMapping,
    SpaceNetworkRemoval,
    SpaceNetworks,
    SpaceNetworkStatus,
    space_conflist_path,
)
from kukeon.runtime.network.subnets import JsonFileSubnetStore, SubnetStore, allocate_subnet

__all__ = [
    "AppliedEgress",
    "BridgeInUseError",
    "BridgeNameTakenError",
    "CellAttachment",
    "CellHostFiles",
    "CniConfigError",
    "CniDns",
    "CniError",
    "CniIPConfig",
    "CniInterface",
    "CniPluginNotFoundError",
    "CniResult",
    "CniRoute",
    "CniRuntime",
    "EgressResolutionError",
    "EgressRule",
    "EgressRuleset",
    "HostPrerequisiteError",
    "JsonFileSubnetStore",
    "NetnsError",
    "NetnsManager",
    "NetworkConfigList",
    "NetworkError",
    "NetworkSettings",
    "NftEgress",
    "NftError",
    "PortMapping",
    "RuleCounter",
    "RuntimeConf",
    "SpaceNetworkRemoval",
    "SpaceNetworkStatus",
    "SpaceNetworks",
    "SubnetPoolExhaustedError",
    "SubnetStore",
    "allocate_subnet",
    "bridge_name",
    "cell_network_id",
    "delete_link",
    "instance_tag",
    "is_valid_ifname",
    "link_exists",
    "network_id_prefix",
    "render_hostname",
    "render_hosts",
    "render_loopback_config",
    "render_space_conflist",
    "space_conflist_path",
    "write_cell_host_files",
]
