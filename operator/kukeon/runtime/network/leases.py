"""Address leases of a space network, kept in host-local's own on-disk format.

The in-process bridge path (``veth``, ``inprocess``) allocates a cell's address itself, and
keeps it where CNI's ``host-local`` IPAM plugin kept it until then: one file per address in
``<ipam dir>/<network name>/``, named by the address and holding ``<container id>\\r\\n<ifname>``,
a ``last_reserved_ip.0`` file saying where the next search starts, and a ``lock`` file both
take with ``flock`` around a change. Sharing the format is the migration: cells attached by
CNI before the upgrade keep their leases, new cells never take their addresses, a CNI DEL
of an old cell still releases its own lease, and a lease of either kind survives a restart
of kukeond (it is a file).

The range is host-local's default for a subnet: its first host address to the last before
the broadcast address, the gateway excluded; the search starts after the last address
reserved and wraps around, as host-local's does.

Every function here blocks (file lock, directory scan): callers run them on a host thread,
but for :func:`result_from_leases`, which CNI DEL uses when a cell's record is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from kukeon.runtime.hostfiles import make_dirs
from kukeon.runtime.network.cni.config import NetworkConfigList, gateway_of
from kukeon.runtime.network.cni.invoke import RuntimeConf
from kukeon.runtime.network.cni.result import CniResult, parse_result
from kukeon.runtime.network.errors import NetworkError

log = logging.getLogger(__name__)

LINE_BREAK = "\r\n"
LAST_RESERVED = "last_reserved_ip.0"
LOCK_FILE = "lock"
RESERVING = ".reserving-"
"""Prefix of the file a lease is written in before it is linked under its address."""


class AddressPoolExhaustedError(NetworkError):
    """Every address of the space's subnet is leased."""


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    make_dirs(directory)
    fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _owner(path: Path) -> tuple[str, str] | None:
    """(container id, ifname) of a lease file; None for the other files of the directory."""
    try:
        IPv4Address(path.name)
        lines = path.read_text(encoding="utf-8").splitlines()
    except (ValueError, OSError):
        return None
    if not lines:
        return None
    return lines[0].strip(), (lines[1].strip() if len(lines) > 1 else "")


def holders(directory: Path) -> set[tuple[str, str]]:
    """(container id, ifname) of every lease in one network's directory."""
    if not directory.is_dir():
        return set()
    return {found for path in directory.iterdir() if (found := _owner(path)) is not None}


def leased(directory: Path) -> list[IPv4Address]:
    """Every address leased in one network's directory (none when it is missing)."""
    if not directory.is_dir():
        return []
    return sorted(IPv4Address(p.name) for p in directory.iterdir() if _is_address(p.name))


def owned(directory: Path, owner: str, ifname: str) -> list[IPv4Address]:
    """The addresses leased to (``owner``, ``ifname``) in one network's directory."""
    if not directory.is_dir():
        return []
    return sorted(
        IPv4Address(path.name) for path in directory.iterdir() if _owner(path) == (owner, ifname)
    )


def lease(
    directory: Path, *, subnet: IPv4Network, gateway: IPv4Address, owner: str, ifname: str
) -> IPv4Address:
    """The address of (``owner``, ``ifname``) on the network: the one it holds already (a
    restart, a repeated attach), else the next free one, written before it is returned."""
    with _locked(directory):
        held = _held_reclaiming_unwritten(directory, (owner, ifname))
        if held:
            return held[0]
        hosts = [address for address in subnet.hosts() if address != gateway]
        if not hosts:
            raise AddressPoolExhaustedError(f"subnet {subnet} has no address for cells")
        start = _start_index(directory, hosts)
        for offset in range(len(hosts)):
            address = hosts[(start + offset) % len(hosts)]
            if _reserve(directory, address, f"{owner}{LINE_BREAK}{ifname}"):
                _write_private(directory / LAST_RESERVED, str(address))
                return address
    raise AddressPoolExhaustedError(f"every address of {subnet} is leased ({directory})")


def _reserve(directory: Path, address: IPv4Address, text: str) -> bool:
    """Make the lease file of ``address`` holding ``text``, unless it exists: written aside,
    then linked under its name, so a kill -9 never leaves an empty lease (created, not yet
    written: an address nobody owns and nothing would ever release)."""
    aside = directory / f"{RESERVING}{address}"
    _write_private(aside, text)
    try:
        os.link(aside, directory / str(address))
    except FileExistsError:
        return False
    finally:
        aside.unlink(missing_ok=True)
    return True


def _held_reclaiming_unwritten(directory: Path, holder: tuple[str, str]) -> list[IPv4Address]:
    """The addresses leased to ``holder`` (container id, ifname), in one scan that also
    removes leftovers: under the lock no lease is being written, so an empty lease file
    (its writer killed between creating and writing it, as host-local's or an earlier
    kukeond's could be) and a file written aside by a killed `_reserve` go."""
    held: list[IPv4Address] = []
    for path in directory.iterdir():
        try:
            if path.name.startswith(RESERVING):
                path.unlink()
            elif _is_address(path.name):
                if path.stat().st_size == 0:
                    log.warning("removing the empty lease %s (its writer died)", path)
                    path.unlink()
                elif _owner(path) == holder:
                    held.append(IPv4Address(path.name))
        except FileNotFoundError:
            continue
    return sorted(held)


def _is_address(name: str) -> bool:
    try:
        IPv4Address(name)
    except ValueError:
        return False
    return True


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)


def _start_index(directory: Path, hosts: list[IPv4Address]) -> int:
    try:
        last = IPv4Address((directory / LAST_RESERVED).read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return 0
    for index, address in enumerate(hosts):
        if address > last:
            return index
    return 0


def release(directory: Path, owner: str, ifname: str) -> list[IPv4Address]:
    """Remove the leases of (``owner``, ``ifname``) on one network; the addresses freed."""
    if not directory.is_dir():
        return []
    with _locked(directory):
        freed = owned(directory, owner, ifname)
        for address in freed:
            with contextlib.suppress(FileNotFoundError):
                (directory / str(address)).unlink()
    return freed


def release_everywhere(ipam_dir: Path, owner: str) -> list[tuple[str, str, IPv4Address]]:
    """Every lease of ``owner`` in every network under ``ipam_dir``, removed: what a crash
    between a lease and its record left. (network, ifname, address) of each."""
    if not ipam_dir.is_dir():
        return []
    freed: list[tuple[str, str, IPv4Address]] = []
    for directory in sorted(p for p in ipam_dir.iterdir() if p.is_dir()):
        ifnames = {
            found[1]
            for path in directory.iterdir()
            if (found := _owner(path)) is not None and found[0] == owner
        }
        for ifname in sorted(ifnames):
            freed += [(directory.name, ifname, a) for a in release(directory, owner, ifname)]
    return freed


async def result_from_leases(conflist: NetworkConfigList, conf: RuntimeConf) -> CniResult | None:
    """A minimal ADD result rebuilt from host-local's lease files of the cell's interface
    (a lease written without an interface name counts too)."""
    bridge = next((p for p in conflist.plugins if p.get("type") == "bridge"), None)
    ipam = bridge.get("ipam") if bridge is not None else None
    if not isinstance(ipam, dict) or ipam.get("type") != "host-local" or "dataDir" not in ipam:
        return None
    try:
        subnets = [IPv4Network(r["subnet"]) for ranges in ipam["ranges"] for r in ranges]
    except (KeyError, TypeError, ValueError):
        return None
    directory = Path(str(ipam["dataDir"])) / conflist.name

    def addresses() -> list[IPv4Address]:
        found = owned(directory, conf.container_id, conf.ifname)
        return sorted({*found, *owned(directory, conf.container_id, "")})

    ips = []
    for address in await asyncio.to_thread(addresses):
        subnet = next((net for net in subnets if address in net), None)
        if subnet is not None:
            ips.append(
                {
                    "interface": 0,
                    "address": f"{address}/{subnet.prefixlen}",
                    "gateway": str(gateway_of(subnet)),
                }
            )
    if not ips:
        return None
    document = {
        "cniVersion": conflist.cni_version,
        "interfaces": [{"name": conf.ifname, "sandbox": str(conf.netns)}],
        "ips": ips,
    }
    return parse_result(document, plugin="host-local")
