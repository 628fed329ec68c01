"""A cell's interface on its space's bridge, made over netlink in this process: the requests
that make it packed by ``rtnl``, the checks of a standing one read with pyroute2.

What the CNI ``loopback`` and ``bridge`` plugins did for a kukeon space, without running
them: the bridge (created when missing, the gateway address on it, IPv4 forwarding on), a
veth pair whose host end is a port of the bridge (hairpin mode on, as ``hairpinMode``) and
whose other end is the cell's interface in its network namespace, with the cell's address,
up, and the default route through the gateway (none on a joined network); ``lo`` up.

The host end's name is derived from the cell's network id and interface
(:func:`host_ifname`), not random as the bridge plugin's: a crash half-way through an
attachment leaves a link the next attempt finds by name and deletes before making it again.

The namespace side is reached without forking: a host thread enters the namespace
(``setns``), opens a netlink socket there (the socket stays bound to the namespace it was
made in) and returns to the host's namespace at once, before anything else runs on it.

Every function blocks on netlink: callers run them on a host thread
(``runtime.hostthreads``).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any

from kukeon.runtime.network.errors import NetworkError
from kukeon.runtime.network.netlink import IPRoute
from kukeon.runtime.network.rtnl import Rtnl, RtnlError
from kukeon.runtime.network.rtnl import inside as rtnl_inside

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
_IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
_HAIRPIN = 1
_SYS_NET = Path("/sys/class/net")
_LOOPBACK_INDEX = 1  # the loopback device's index in every network namespace
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class BridgePort:
    """One interface of a cell on a space's bridge, as it must be."""

    netns: Path
    ifname: str
    host_ifname: str
    bridge: str
    address: IPv4Interface
    gateway: IPv4Address
    default_route: bool = True
    hairpin: bool = True
    mtu: int | None = None


def host_ifname(cell_id: str, ifname: str) -> str:
    """The host end of the cell's ``ifname``: ``veth`` and 11 hex characters (15 bytes)."""
    digest = hashlib.sha256(f"{cell_id}/{ifname}".encode()).hexdigest()
    return "veth" + digest[:11]


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns: {os.strerror(code)}")


def _open_in(netns: Path) -> IPRoute:
    """A netlink socket in ``netns``, opened by this thread, which is back home after."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        try:
            target = os.open(netns, os.O_RDONLY)
        except FileNotFoundError as error:
            raise NetworkError(f"network namespace {netns} does not exist") from error
        try:
            _setns(target)
            try:
                return IPRoute()
            finally:
                _setns(home)
        finally:
            os.close(target)
    finally:
        os.close(home)


@contextlib.contextmanager
def inside(netns: Path) -> Iterator[IPRoute]:
    ipr = _open_in(netns)
    try:
        yield ipr
    finally:
        ipr.close()


def _code(error: BaseException) -> int | None:
    code = getattr(error, "code", None)
    return code if isinstance(code, int) else None


def _index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def ensure_bridge(rtnl: Rtnl, name: str, gateway: IPv4Interface) -> int:
    """The bridge's index: created when missing, up, with the gateway's address."""
    link = rtnl.link(name)
    if link is None:
        try:
            rtnl.add_bridge(name)
        except RtnlError as error:  # a cell of the same space made it first
            if error.code != errno.EEXIST:
                raise
        link = rtnl.link(name)
        if link is None:
            raise NetworkError(f"bridge {name} vanished while it was being made")
    if not link.up:
        rtnl.set_up(link.index)
    if (gateway.ip, gateway.network.prefixlen) not in rtnl.addresses(link.index):
        try:
            rtnl.add_address(link.index, gateway.ip, gateway.network.prefixlen)
        except RtnlError as error:
            if error.code != errno.EEXIST:
                raise
    _enable_forwarding()
    return link.index


def _enable_forwarding() -> None:
    try:
        if _IP_FORWARD.read_text(encoding="ascii").strip() != "1":
            _IP_FORWARD.write_text("1", encoding="ascii")
    except OSError as error:
        raise NetworkError(f"cannot enable IPv4 forwarding: {error}") from error


def _is_up(link: Any) -> bool:
    return bool(int(link["flags"]) & 1)  # IFF_UP


def _has_address(ipr: IPRoute, index: int, address: IPv4Interface) -> bool:
    return any(
        a.get_attr("IFA_ADDRESS") == str(address.ip) and a["prefixlen"] == address.network.prefixlen
        for a in ipr.get_addr(index=index, family=2)
    )


def remove_port(name: str) -> bool:
    """Delete the host end ``name`` (its peer in the namespace goes with it); whether it
    was there."""
    with IPRoute() as ipr:
        index = _index(ipr, name)
        if index is None:
            return False
        try:
            ipr.link("del", index=index)
        except Exception as error:
            if _code(error) == errno.ENODEV:
                return False
            raise
    return True


def make_port(port: BridgePort) -> None:
    """Make the port from nothing: a leftover of the same name is deleted first."""
    with Rtnl() as rtnl:
        bridge = ensure_bridge(
            rtnl, port.bridge, IPv4Interface(f"{port.gateway}/{port.address.network.prefixlen}")
        )
        try:
            create_pair(rtnl, port, bridge)
        except RtnlError as error:
            if error.code != errno.EEXIST:
                raise
            if not _delete_named(rtnl, port.host_ifname):
                raise  # the peer's name is taken in the namespace, not the host end's
            create_pair(rtnl, port, bridge)
        if port.hairpin:
            _set_hairpin(port.host_ifname)
    configure_inside(port)


def _delete_named(rtnl: Rtnl, name: str) -> bool:
    """Delete a leftover host end of an attachment that did not finish; whether it was there."""
    link = rtnl.link(name)
    if link is None:
        return False
    log.info("deleting %s, left by an attachment that did not finish", name)
    rtnl.delete(link.index)
    return True


def create_pair(rtnl: Rtnl, port: BridgePort, bridge: int) -> None:
    """The veth pair in one request: the host end a port of ``bridge`` and up, its peer
    made directly in the cell's namespace (brought up there by ``configure_inside``)."""
    fd = os.open(port.netns, os.O_RDONLY)
    try:
        rtnl.add_veth(
            port.host_ifname, peer=port.ifname, peer_netns_fd=fd, master=bridge, mtu=port.mtu
        )
    finally:
        os.close(fd)


def _set_hairpin(name: str) -> None:
    """Hairpin mode on the bridge port: one sysfs write (pyroute2's request where this
    process's /sys is not of the host's network namespace)."""
    try:
        (_SYS_NET / name / "brport" / "hairpin_mode").write_text("1", encoding="ascii")
    except OSError:
        with IPRoute() as ipr:
            index = _index(ipr, name)
            if index is None:
                raise NetworkError(f"veth {name} vanished once made") from None
            ipr.brport("set", index=index, mode=_HAIRPIN)


def configure_inside(port: BridgePort) -> None:
    """``lo`` up; the cell's interface addressed, up, and routed through the gateway.

    The interface was just made (``create_pair``): no address of its own to look for.
    """
    with rtnl_inside(port.netns) as rtnl:
        rtnl.set_up(_LOOPBACK_INDEX)
        link = rtnl.link(port.ifname)
        if link is None:
            raise NetworkError(f"{port.ifname} is missing in {port.netns} once made")
        try:
            rtnl.add_address(link.index, port.address.ip, port.address.network.prefixlen)
        except RtnlError as error:  # a repair of an interface that kept its address
            if error.code != errno.EEXIST:
                raise
        rtnl.set_up(link.index)
        if port.default_route:
            rtnl.replace_default_route(port.gateway, link.index)


def _link(ipr: IPRoute, name: str) -> Any | None:
    """The link called ``name`` (one request), or None."""
    try:
        found = ipr.link("get", ifname=name)
    except Exception as error:
        if _code(error) == errno.ENODEV:
            return None
        raise
    return found[0] if found else None


def problems(port: BridgePort) -> list[str]:
    """What differs from ``port`` on the host (netlink reads only, a handful of requests);
    empty when it stands."""
    with IPRoute() as ipr:
        bridge = _link(ipr, port.bridge)
        link = _link(ipr, port.host_ifname)
    if bridge is None:
        return [f"bridge {port.bridge} is missing"]
    if link is None:
        return [f"host end {port.host_ifname} is missing"]
    found: list[str] = []
    if link.get_attr("IFLA_MASTER") != bridge["index"]:
        found.append(f"{port.host_ifname} is not a port of {port.bridge}")
    if not _is_up(link):
        found.append(f"{port.host_ifname} is down")
    if found:
        return found
    try:
        with inside(port.netns) as ipr:
            return _problems_inside(ipr, port)
    except NetworkError as error:
        return [str(error)]


def _problems_inside(ipr: IPRoute, port: BridgePort) -> list[str]:
    links = {str(link.get_attr("IFLA_IFNAME")): link for link in ipr.get_links()}
    found = ["lo is down"] if "lo" in links and not _is_up(links["lo"]) else []
    link = links.get(port.ifname)
    if link is None:
        return [*found, f"{port.ifname} is missing in {port.netns}"]
    if not _is_up(link):
        found.append(f"{port.ifname} is down")
    if not _has_address(ipr, int(link["index"]), port.address):
        found.append(f"{port.ifname} lacks {port.address}")
    if port.default_route:
        routes = ipr.get_default_routes(family=2)
        if not any(r.get_attr("RTA_GATEWAY") == str(port.gateway) for r in routes):
            found.append(f"no default route through {port.gateway}")
    return found


def interface_has(netns: Path, ifname: str, address: IPv4Interface) -> bool:
    """Whether ``ifname`` in ``netns`` carries ``address`` (a cheap drift test for an
    attachment made by CNI)."""
    try:
        with inside(netns) as ipr:
            index = _index(ipr, ifname)
            return index is not None and _has_address(ipr, index, address)
    except (NetworkError, OSError):
        return False
