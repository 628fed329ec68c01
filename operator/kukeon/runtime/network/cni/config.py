"""The space's CNI network configuration: rendered from a few facts, read back from disk.

A space is one ``bridge`` network (the host is the gateway and masquerades, addresses come
from ``host-local`` IPAM in a data directory kukeon owns), followed by ``portmap`` for
published ports and ``firewall`` so cells still work on hosts whose FORWARD policy is DROP.
The loopback interface is configured by a separate single-plugin network, as CNI runtimes
do, because it is not part of the space's network.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from kukeon.runtime.hostfiles import SHARED_CONFIG_DIR_MODE
from kukeon.runtime.network._files import read_text_or_none, write_atomically
from kukeon.runtime.network.errors import CniConfigError

CNI_VERSION = "1.0.0"
LOOPBACK_NETWORK = "kukeon-loopback"
_NETWORK_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.\-]*\Z")


@dataclass(frozen=True)
class NetworkConfigList:
    """A parsed conflist: the network name, its version and each plugin's own object."""

    name: str
    cni_version: str
    plugins: tuple[Mapping[str, Any], ...]

    def to_json(self) -> str:
        document = {
            "cniVersion": self.cni_version,
            "name": self.name,
            "plugins": [dict(plugin) for plugin in self.plugins],
        }
        return json.dumps(document, indent=2, sort_keys=False) + "\n"


def gateway_of(subnet: IPv4Network) -> IPv4Address:
    """The space's gateway: the first host address of its subnet (``.1`` of a /24)."""
    return subnet.network_address + 1


def render_space_conflist(
    *,
    network_name: str,
    bridge: str,
    subnet: IPv4Network,
    ipam_data_dir: Path,
    include_portmap: bool = True,
    include_firewall: bool = True,
    mtu: int | None = None,
) -> NetworkConfigList:
    """The conflist of one space (pure)."""
    if not _NETWORK_NAME.match(network_name):
        raise CniConfigError(f"CNI network name {network_name!r} is not valid")
    bridge_plugin: dict[str, Any] = {
        "type": "bridge",
        "bridge": bridge,
        "isGateway": True,
        "ipMasq": True,
        "hairpinMode": True,
        "ipam": {
            "type": "host-local",
            "dataDir": str(ipam_data_dir),
            "ranges": [[{"subnet": str(subnet), "gateway": str(gateway_of(subnet))}]],
            "routes": [{"dst": "0.0.0.0/0"}],
        },
    }
    if mtu is not None:
        bridge_plugin["mtu"] = mtu
    plugins: list[Mapping[str, Any]] = [bridge_plugin]
    if include_portmap:
        plugins.append({"type": "portmap", "capabilities": {"portMappings": True}, "snat": True})
    if include_firewall:
        plugins.append({"type": "firewall", "backend": "iptables"})
    return NetworkConfigList(name=network_name, cni_version=CNI_VERSION, plugins=tuple(plugins))


def render_loopback_config() -> NetworkConfigList:
    """The network that brings ``lo`` up inside a cell's namespace."""
    return NetworkConfigList(
        name=LOOPBACK_NETWORK, cni_version=CNI_VERSION, plugins=({"type": "loopback"},)
    )


def parse_conflist(text: str, *, source: str) -> NetworkConfigList:
    """A conflist document (or a single-plugin ``.conf``) as a :class:`NetworkConfigList`."""
    try:
        document = json.loads(text)
    except ValueError as error:
        raise CniConfigError(f"{source}: not JSON: {error}") from error
    if not isinstance(document, dict):
        raise CniConfigError(f"{source}: a network configuration must be a JSON object")
    name = document.get("name")
    if not isinstance(name, str) or not _NETWORK_NAME.match(name):
        raise CniConfigError(f"{source}: `name` is missing or not a valid network name")
    version = document.get("cniVersion")
    if not isinstance(version, str) or not version:
        raise CniConfigError(f"{source}: `cniVersion` is missing")
    plugins: Sequence[Any]
    if "plugins" in document:
        plugins = document["plugins"]
        if not isinstance(plugins, list) or not plugins:
            raise CniConfigError(f"{source}: `plugins` must be a non-empty list")
    else:
        plugins = [{k: v for k, v in document.items() if k not in {"name", "cniVersion"}}]
    for index, plugin in enumerate(plugins):
        if not isinstance(plugin, dict) or not isinstance(plugin.get("type"), str):
            raise CniConfigError(f"{source}: plugins[{index}] has no `type`")
    return NetworkConfigList(name=name, cni_version=version, plugins=tuple(plugins))


async def write_conflist(path: Path, conflist: NetworkConfigList) -> bool:
    """Write ``conflist`` atomically unless ``path`` already holds it; return whether written."""
    text = conflist.to_json()

    def write() -> bool:
        if read_text_or_none(path) == text:
            return False
        # Host configuration other CNI users read too, with nothing secret in it.
        write_atomically(path, text, directory_mode=SHARED_CONFIG_DIR_MODE)
        return True

    return await asyncio.to_thread(write)


MAX_CONFLIST_BYTES = 1 << 20
"""A conflist is a few hundred bytes; a file of more is not one (a log, an image)."""


async def load_conflist(path: Path) -> NetworkConfigList:
    """The conflist at ``path``; CniConfigError when there is none or it is not one."""
    text = await asyncio.to_thread(_read_conflist, path)
    if text is None:
        raise CniConfigError(f"CNI network configuration {path} does not exist")
    return parse_conflist(text, source=str(path))


def _read_conflist(path: Path) -> str | None:
    """The text of the regular file at ``path`` (None: nothing there). A cell's
    ``cniConfigPath`` is a client's path: a directory, a device (``/dev/zero``, read for
    ever), a FIFO (a read waiting on a writer for ever), a file of more than
    MAX_CONFLIST_BYTES or not UTF-8 is a CniConfigError, none of them read."""
    what = f"CNI network configuration {path}"
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):  # a device is not even opened
            raise CniConfigError(f"{what} is not a regular file")
        # O_NONBLOCK: a FIFO put there since opens without waiting, and is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as error:
        raise CniConfigError(f"{what} cannot be read: {error.strerror or error}") from None
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CniConfigError(f"{what} is not a regular file")
        data = file.read(MAX_CONFLIST_BYTES + 1)
    if len(data) > MAX_CONFLIST_BYTES:
        raise CniConfigError(f"{what} is over {MAX_CONFLIST_BYTES} bytes: no conflist")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise CniConfigError(f"{what} is not UTF-8 text: no conflist") from None


def joined_conflist(conflist: NetworkConfigList) -> NetworkConfigList:
    """A space's conflist as a further interface of a cell on another space uses it (pure).

    The cell's default route stays on its first interface (its own space's network, whose
    egress policy governs what leaves through it): the bridge plugin is no default gateway
    here and the IPAM's default routes are dropped, so only the joined space's subnet is
    reached through this interface, under that space's egress policy.
    """
    plugins: list[Mapping[str, Any]] = []
    for plugin in conflist.plugins:
        if plugin.get("type") != "bridge":
            plugins.append(plugin)
            continue
        changed = dict(plugin)
        changed["isDefaultGateway"] = False
        ipam = changed.get("ipam")
        if isinstance(ipam, Mapping) and isinstance(ipam.get("routes"), list):
            routes = [
                route
                for route in ipam["routes"]
                if not (isinstance(route, Mapping) and route.get("dst") in _DEFAULT_ROUTES)
            ]
            changed["ipam"] = {**ipam, "routes": routes}
        plugins.append(changed)
    return NetworkConfigList(
        name=conflist.name, cni_version=conflist.cni_version, plugins=tuple(plugins)
    )


_DEFAULT_ROUTES = frozenset({"0.0.0.0/0", "::/0"})
