"""A cell's interface on its space's bridge, made over netlink in this process (pyroute2).

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
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any

from kukeon.runtime.network.errors import NetworkError
from kukeon.runtime.network.netlink import IPRoute

log = logging.getLogger(__name__)

CLONE_NEWNET = 0x40000000
_IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
_SYS_NET = Path("/sys/class/net")
_HAIRPIN = 1
_BR_STATE_FORWARDING = 3
_BR_STATES = ("disabled", "listening", "learning", "forwarding", "blocking")
# Pauses between reads of a new port's state: it turns forwarding once the kernel's link
# watch has seen the peer's carrier, a few ms at rest, later under load; ~3 s in all, as
# the CNI bridge plugin's check (containernetworking/plugins#468).
_FORWARDING_PAUSES = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.8, 1.0)
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
    alias: str = ""
    """The host end's ``ifalias``: which node made it (:func:`owner_alias`)."""


PORT_ALIAS_PREFIX = "kukeon "


def owner_alias(state_dir: Path) -> str:
    """The alias of the host ends and bridges a node makes: kukeon's, and this node's (its
    state directory). A space's teardown removes the ports carrying its own; one carrying
    another node's (a test fleet sharing a host's bridges) is left to that node, and so is
    such a bridge by the sweep of idle bridges (``SpaceNetworks.remove_idle_bridges``)."""
    digest = hashlib.sha256(str(state_dir.absolute()).encode()).hexdigest()
    return PORT_ALIAS_PREFIX + digest[:12]


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


def ensure_bridge(ipr: IPRoute, name: str, gateway: IPv4Interface, alias: str = "") -> int:
    """The bridge's index: created when missing (its alias saying which node made it), up,
    with the gateway's address."""
    index = _index(ipr, name)
    if index is None:
        made = False
        try:
            ipr.link("add", ifname=name, kind="bridge")
            made = True
        except Exception as error:  # a cell of the same space made it first
            if _code(error) != errno.EEXIST:
                raise
        index = _index(ipr, name)
        if index is None:
            raise NetworkError(f"bridge {name} vanished while it was being made")
        if made and alias:
            ipr.link("set", index=index, ifalias=alias)
    _disable_ipv6(name)
    links = ipr.get_links(index)
    if not links or links[0].get_attr("IFLA_OPERSTATE") == "DOWN" or not _is_up(links[0]):
        ipr.link("set", index=index, state="up")
    if not _has_address(ipr, index, gateway):
        try:
            ipr.addr(
                "add", index=index, address=str(gateway.ip), prefixlen=gateway.network.prefixlen
            )
        except Exception as error:
            if _code(error) != errno.EEXIST:
                raise
    _enable_forwarding()
    return index


def _enable_forwarding() -> None:
    try:
        if _IP_FORWARD.read_text(encoding="ascii").strip() != "1":
            _IP_FORWARD.write_text("1", encoding="ascii")
    except OSError as error:
        raise NetworkError(f"cannot enable IPv4 forwarding: {error}") from error


def _disable_ipv6(bridge: str) -> None:
    """No IPv6 on the host's side of a bridge (before it is up, so it never has a link-local
    address): cells are IPv4 only, and the host's IPv6 neighbour table, one for the whole
    host, took an entry for every source a cell's neighbour solicitation or echo named."""
    conf = Path("/proc/sys/net/ipv6/conf", bridge, "disable_ipv6")
    try:
        if conf.read_text(encoding="ascii").strip() != "1":
            conf.write_text("1", encoding="ascii")
    except FileNotFoundError:
        return  # a kernel without IPv6
    except OSError as error:
        raise NetworkError(f"cannot turn IPv6 off on bridge {bridge}: {error}") from error


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
    with IPRoute() as ipr:
        gateway = IPv4Interface(f"{port.gateway}/{port.address.network.prefixlen}")
        bridge = ensure_bridge(ipr, port.bridge, gateway, port.alias)
        old = _index(ipr, port.host_ifname)
        if old is not None:
            log.info("deleting %s, left by an attachment that did not finish", port.host_ifname)
            ipr.link("del", index=old)
        create_pair(ipr, port)
        index = _index(ipr, port.host_ifname)
        if index is None:
            raise NetworkError(f"veth {port.host_ifname} vanished once made")
        extra: dict[str, Any] = {"mtu": port.mtu} if port.mtu else {}
        if port.alias:
            extra["ifalias"] = port.alias
        ipr.link("set", index=index, master=bridge, state="up", **extra)
        if port.hairpin:
            ipr.brport("set", index=index, mode=_HAIRPIN)
        configure_inside(port)
        await_forwarding(ipr, index, port)


def _port_state(ipr: IPRoute, index: int, name: str) -> int | None:
    """The bridge port state of link ``index`` called ``name`` (``IFLA_BRPORT_STATE``), None
    off a bridge. Read from sysfs, ~20 µs of CPU where a netlink request and its parsing
    cost ~0.4 ms, which a start pays beside containerd's calls on the same cores; by
    netlink when sysfs does not show the link (mounted for another namespace)."""
    link = _SYS_NET / name
    try:
        return int((link / "brport" / "state").read_text(encoding="ascii"))
    except FileNotFoundError:
        if link.exists():
            return None
    except ValueError:
        pass
    found = ipr.link("get", index=index)
    info = found[0].get_attr("IFLA_LINKINFO") if found else None
    data = info.get_attr("IFLA_INFO_SLAVE_DATA") if info is not None else None
    state = data.get_attr("IFLA_BRPORT_STATE") if data is not None else None
    return int(state) if state is not None else None


def await_forwarding(ipr: IPRoute, index: int, port: BridgePort) -> None:
    """Return once the host end forwards: a port joins its bridge disabled and the bridge
    drops what the cell sends until then (its first ARP, so its first connection waited a
    second's retransmit). A port that never gets there (the bridge runs STP) is an error,
    as with the bridge plugin."""
    state = _port_state(ipr, index, port.host_ifname)
    for pause in _FORWARDING_PAUSES:
        if state == _BR_STATE_FORWARDING:
            return
        time.sleep(pause)
        state = _port_state(ipr, index, port.host_ifname)
    if state == _BR_STATE_FORWARDING:
        return
    named = _BR_STATES[state] if state is not None and 0 <= state < len(_BR_STATES) else state
    raise NetworkError(
        f"port {port.host_ifname} of bridge {port.bridge} is {named}, not forwarding, "
        f"{sum(_FORWARDING_PAUSES):.1f} s after it was made (is STP on for {port.bridge}?)"
    )


def create_pair(ipr: IPRoute, port: BridgePort) -> None:
    """The veth pair, its peer made directly in the cell's namespace."""
    fd = os.open(port.netns, os.O_RDONLY)
    try:
        peer: dict[str, Any] = {"ifname": port.ifname, "net_ns_fd": fd}
        ipr.link("add", ifname=port.host_ifname, kind="veth", peer=peer)
    finally:
        os.close(fd)


def configure_inside(port: BridgePort) -> None:
    """``lo`` up; the cell's interface addressed, up, and routed through the gateway."""
    with inside(port.netns) as ipr:
        lo = _index(ipr, "lo")
        if lo is not None:
            ipr.link("set", index=lo, state="up")
        index = _index(ipr, port.ifname)
        if index is None:
            raise NetworkError(f"{port.ifname} is missing in {port.netns} once made")
        if port.mtu:
            ipr.link("set", index=index, mtu=port.mtu)
        if not _has_address(ipr, index, port.address):
            ipr.addr(
                "add",
                index=index,
                address=str(port.address.ip),
                prefixlen=port.address.network.prefixlen,
            )
        ipr.link("set", index=index, state="up")
        if port.default_route:
            ipr.route("replace", dst="0.0.0.0/0", gateway=str(port.gateway), oif=index)


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
