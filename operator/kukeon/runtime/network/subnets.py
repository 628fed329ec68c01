"""Per-space subnets carved from one pool, remembered so a restart keeps every space's range.

The allocator is a pure function (first free block of the wanted size that overlaps nothing
taken); persistence sits behind the :class:`SubnetStore` protocol so the controller can back
it by etcd later. :class:`JsonFileSubnetStore` is the host-local implementation: one small
JSON file under the state directory, changed under an exclusive ``flock`` and replaced
atomically, so two processes (or two tasks) never hand out the same subnet.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, Protocol

from kukeon.runtime.hostfiles import PRIVATE_FILE_MODE, make_dirs
from kukeon.runtime.hostthreads import run_on_host_thread
from kukeon.runtime.network._files import read_text_or_none, write_atomically
from kukeon.runtime.network.errors import (
    BridgeNameTakenError,
    NetworkError,
    SubnetPoolExhaustedError,
)
from kukeon.runtime.network.netlink import IPRoute

log = logging.getLogger(__name__)

DEFAULT_POOL = IPv4Network("10.88.0.0/16")
DEFAULT_PREFIX = 24
MAX_PREFIX = 30
"""A /30 is the smallest block with a gateway and one address for a cell."""

_STORE_VERSION = 1


def allocate_subnet(pool: IPv4Network, prefix: int, taken: Iterable[IPv4Network]) -> IPv4Network:
    """The lowest ``/prefix`` block of ``pool`` overlapping none of ``taken``.

    ``taken`` may hold blocks of any size, inside or outside the pool.
    """
    if not pool.prefixlen <= prefix <= MAX_PREFIX:
        raise ValueError(
            f"subnet prefix /{prefix} must be between the pool's /{pool.prefixlen} "
            f"and /{MAX_PREFIX}"
        )
    relevant = sorted((net for net in taken if net.overlaps(pool)), key=lambda n: n.network_address)
    for candidate in pool.subnets(new_prefix=prefix):
        if not any(candidate.overlaps(net) for net in relevant):
            return candidate
    raise SubnetPoolExhaustedError(pool=str(pool), prefix=prefix)


def space_key(realm: str, space: str) -> str:
    """The store key of a space; realm and space names cannot contain ``/``."""
    return f"{realm}/{space}"


def bridge_holder(
    held: Mapping[str, IPv4Network], key: str, bridge_of: Callable[[str], str]
) -> str | None:
    """Another space of ``held`` (the keys holding a subnet here) whose bridge name is the
    one ``key``'s would be (``bridge``: 40 bits of a hash, which a tenant can collide)."""
    bridge = bridge_of(key)
    return next(
        (other for other in sorted(held) if other != key and bridge_of(other) == bridge), None
    )


class SubnetStore(Protocol):
    """Where space subnets are remembered. ``assign`` must be atomic across all callers."""

    async def assign(self, key: str, *, pool: IPv4Network, prefix: int) -> IPv4Network:
        """Return the subnet already held by ``key``, or allocate and record a new one."""
        ...

    async def lookup(self, key: str) -> IPv4Network | None: ...

    async def release(self, key: str) -> bool:
        """Forget ``key``'s subnet; return whether it held one."""
        ...

    async def assignments(self) -> Mapping[str, IPv4Network]: ...


class SubnetStoreCorruptError(NetworkError):
    """The subnet file exists but is not what this module writes."""


def host_networks(*, except_link: str | None = None) -> list[IPv4Network]:
    """The IPv4 networks this host already uses: its routes (all tables) and the networks of
    its interfaces' addresses. A new space's subnet must overlap none of them, or its cells
    would shadow (or be shadowed by) a LAN, a VPN, another container runtime's bridge or
    another kukeon's spaces. Routes broader than a /8 (the default route, a catch-all VPN)
    say where traffic goes, not which addresses are taken, and are left out, and so is what
    is on ``except_link`` (the space's own bridge, which nodes sharing one host share).
    """
    found: set[IPv4Network] = set()
    with IPRoute() as ipr:
        skipped = set(ipr.link_lookup(ifname=except_link)) if except_link else set()
        for route in ipr.get_routes(family=socket.AF_INET):
            destination = route.get_attr("RTA_DST")
            length = int(route["dst_len"])
            if route.get_attr("RTA_OIF") in skipped:
                continue
            if destination and length >= _HOST_ROUTE_MIN_PREFIX:
                found.add(IPv4Network(f"{destination}/{length}", strict=False))
        for address in ipr.get_addr(family=socket.AF_INET):
            local = address.get_attr("IFA_ADDRESS")
            if address["index"] in skipped:
                continue
            if local and not local.startswith("127."):
                found.add(IPv4Network(f"{local}/{address['prefixlen']}", strict=False))
    return sorted(found, key=lambda net: (net.network_address, net.prefixlen))


_HOST_ROUTE_MIN_PREFIX = 8


class JsonFileSubnetStore:
    """A :class:`SubnetStore` kept in one JSON file (``{"version": 1, "subnets": {...}}``).

    A new subnet also avoids what the host already routes or has addresses in
    (``in_use(key)``, by default :func:`host_networks`). Given ``bridge_of`` (a key's
    bridge name), a new key whose bridge name another key's is gets no subnet:
    `BridgeNameTakenError` (the first space to hold a bridge keeps it).
    """

    def __init__(
        self,
        *,
        path: Path,
        in_use: Callable[[str], Iterable[IPv4Network]] | None = lambda _key: host_networks(),
        bridge_of: Callable[[str], str] | None = None,
    ) -> None:
        self.path = path
        self.in_use = in_use
        self.bridge_of = bridge_of
        self._lock_path = path.with_name(path.name + ".lock")

    async def assign(self, key: str, *, pool: IPv4Network, prefix: int) -> IPv4Network:
        return await run_on_host_thread(self._assign, key, pool, prefix)

    async def lookup(self, key: str) -> IPv4Network | None:
        return (await self.assignments()).get(key)

    async def release(self, key: str) -> bool:
        return await run_on_host_thread(self._release, key)

    async def assignments(self) -> Mapping[str, IPv4Network]:
        return await run_on_host_thread(self._read_locked)

    def _assign(self, key: str, pool: IPv4Network, prefix: int) -> IPv4Network:
        with self._locked():
            current = self._read()
            existing = current.get(key)
            if existing is not None:
                # A pool change in the configuration never moves an existing space.
                return existing
            if self.bridge_of and (holder := bridge_holder(current, key, self.bridge_of)):
                bridge = self.bridge_of(key)
                log.warning("space %s is refused bridge %s: space %s has it", key, bridge, holder)
                raise BridgeNameTakenError(bridge=bridge, holder=holder)
            taken = [*current.values(), *(self.in_use(key) if self.in_use is not None else ())]
            subnet = allocate_subnet(pool, prefix, taken)
            current[key] = subnet
            self._write(current)
            return subnet

    def _release(self, key: str) -> bool:
        with self._locked():
            current = self._read()
            if current.pop(key, None) is None:
                return False
            self._write(current)
            return True

    def _read_locked(self) -> dict[str, IPv4Network]:
        with self._locked():
            return self._read()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # flock is per open file description, so threads of one process exclude each
        # other as well as other processes.
        make_dirs(self._lock_path.parent)
        lock = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_FILE_MODE)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        finally:
            os.close(lock)

    def _read(self) -> dict[str, IPv4Network]:
        text = read_text_or_none(self.path)
        if text is None:
            return {}
        try:
            document: Any = json.loads(text)
            subnets = document["subnets"]
            return {str(k): IPv4Network(v) for k, v in subnets.items()}
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise SubnetStoreCorruptError(
                f"subnet store {self.path} is unreadable: {error}"
            ) from error

    def _write(self, subnets: Mapping[str, IPv4Network]) -> None:
        document = {
            "version": _STORE_VERSION,
            "subnets": {key: str(net) for key, net in sorted(subnets.items())},
        }
        write_atomically(self.path, json.dumps(document, indent=2) + "\n", mode=0o600)
