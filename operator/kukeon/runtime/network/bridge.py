"""One Linux bridge per space: its name, and looking it up or deleting it on the host.

Interface names are limited to 15 bytes (``IFNAMSIZ`` - 1), far less than a realm and a
space name together, so the name is derived by a pure function that every node computes the
same way without coordination:

* ``kk-<realm>-<space>`` when that fits, both parts use only ``[a-z0-9-]`` and the realm
  has no ``-`` (so the split between realm and space cannot be ambiguous);
* otherwise ``k-<prefix>-<hash>``: a 4-character readable prefix (2 from the realm,
  then the space) and 8 base32 characters (40 bits) of a SHA-256 of the pair.

A second control plane on the same host (another state directory) always gets hashed names
whose hash covers its instance tag, so its spaces never share a bridge with the first's.

Readable names start with ``kk-`` and hashed ones with ``k-`` followed by a letter or
digit, so the two forms never collide; two hashed names collide only if 40 bits of SHA-256
do. The CNI bridge plugin creates the bridge on the first ADD; the space's teardown
removes it, because CNI DEL never does.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from kukeon.runtime.hostthreads import run_on_host_thread
from kukeon.runtime.network.netlink import IPRoute

IFNAMSIZ_MAX = 15
_READABLE_PART = re.compile(r"[a-z0-9][a-z0-9-]*\Z")
_READABLE_REALM = re.compile(r"[a-z0-9]+\Z")
_NOT_ALNUM = re.compile(r"[^a-z0-9]")
_HASH_CHARS = 8
_PREFIX_CHARS = 4
_HASHED_NAME = re.compile(r"k-[a-z0-9]{1,4}-[a-z2-7]{8}\Z")


def bridge_name(realm: str, space: str, instance: str = "") -> str:
    """The bridge interface name of ``space`` in ``realm`` (pure, stable, ≤ 15 bytes).

    ``instance`` tells control planes sharing one host apart (see :func:`instance_tag`):
    the default one keeps the names above, any other always gets a hashed name whose hash
    covers the instance too.
    """
    readable = f"kk-{realm}-{space}"
    if (
        not instance
        and len(readable) <= IFNAMSIZ_MAX
        and _READABLE_REALM.match(realm)
        and _READABLE_PART.match(space)
    ):
        return readable
    return f"k-{_short_prefix(realm, space)}-{_pair_hash(realm, space, instance)}"


DEFAULT_STATE_DIR = Path("/var/lib/kukeon")


def instance_tag(*, state_dir: Path, registry: str) -> str:
    """What sets this control plane's host objects apart from another's on the same host.

    Bridges, CNI network ids (network namespaces, IPAM leases, NAT chains), conflist files
    and containerd namespaces live in host-wide namespaces, so a second kukeon installed
    beside the first (its own state directory, etcd, cgroup root and nft table) would
    otherwise name its realm ``default``'s objects exactly as the first does. The default
    installation (state directory ``/var/lib/kukeon``) has the empty tag: its names do not
    change. Any other gets 6 hex characters of a SHA-256 of ``registry``, which names the
    etcd data it serves (the embedded etcd's directory, or the endpoints and key prefix),
    so kukeonds of one fleet sharing a host (a test fleet) still agree on names.
    """
    if Path(os.path.abspath(state_dir)) == DEFAULT_STATE_DIR:
        return ""
    return hashlib.sha256(registry.encode()).hexdigest()[:6]


def network_id_prefix(instance: str = "") -> str:
    """How this control plane's cell network ids (netns names, CNI container ids) begin."""
    return f"kukeon-{instance}_" if instance else "kukeon_"


def cell_network_id(key: Sequence[str], instance: str = "") -> str:
    """The cell's netns name and CNI container id (`_` cannot occur in resource names)."""
    return network_id_prefix(instance) + "_".join(key)


def is_valid_ifname(name: str) -> bool:
    """The kernel's rule (``dev_valid_name``): 1-15 bytes, no ``/``, ``:`` or whitespace."""
    encoded = name.encode("utf-8", errors="surrogatepass")
    if not 0 < len(encoded) <= IFNAMSIZ_MAX or name in {".", ".."}:
        return False
    return not any(char in "/:" or char.isspace() for char in name)


def _short_prefix(realm: str, space: str) -> str:
    realm_part = _NOT_ALNUM.sub("", realm.lower())[:2]
    space_part = _NOT_ALNUM.sub("", space.lower())
    prefix = (realm_part + space_part)[:_PREFIX_CHARS]
    return prefix or "x"


def _pair_hash(realm: str, space: str, instance: str = "") -> str:
    # Length-prefixing the realm keeps ("a", "bc") and ("ab", "c") apart.
    encoded_realm = realm.encode("utf-8", errors="surrogatepass")
    encoded_space = space.encode("utf-8", errors="surrogatepass")
    # A space's own instance only extends the input, so default names keep their hash.
    suffix = b"@" + instance.encode() if instance else b""
    digest = hashlib.sha256(
        str(len(encoded_realm)).encode() + b":" + encoded_realm + encoded_space + suffix
    ).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:_HASH_CHARS]


async def link_exists(name: str) -> bool:
    """Whether an interface called ``name`` exists in the host network namespace."""
    return await asyncio.to_thread(_link_index, name) is not None


async def delete_link(name: str) -> bool:
    """Delete interface ``name`` if present; return whether it was there."""
    return await run_on_host_thread(_delete_link, name)


async def bridge_ports(name: str) -> list[str]:
    """The interfaces enslaved to bridge ``name`` (none when it does not exist)."""
    return await asyncio.to_thread(_bridge_ports, name)


def _bridge_ports(name: str) -> list[str]:
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return []
        index = found[0]
        return [
            str(link.get_attr("IFLA_IFNAME"))
            for link in ipr.get_links()
            if link.get_attr("IFLA_MASTER") == index
        ]


async def bridge_port_aliases(name: str) -> dict[str, str]:
    """The ports of bridge ``name``, each with its ``ifalias`` ("" without one)."""
    return await asyncio.to_thread(_bridge_ports_with_aliases, name)


def _bridge_ports_with_aliases(name: str) -> dict[str, str]:
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return {}
        return {
            str(link.get_attr("IFLA_IFNAME")): str(link.get_attr("IFLA_IFALIAS") or "")
            for link in ipr.get_links()
            if link.get_attr("IFLA_MASTER") == found[0]
        }


async def tag_bridge(name: str, alias: str) -> bool:
    """Give bridge ``name`` the ``ifalias`` when it has none (the CNI plugin made it);
    whether the bridge exists."""
    return await run_on_host_thread(_tag_bridge, name, alias)


def _tag_bridge(name: str, alias: str) -> bool:
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return False
        links = ipr.get_links(found[0])
        if links and not links[0].get_attr("IFLA_IFALIAS"):
            ipr.link("set", index=found[0], ifalias=alias)
    return True


def is_bridge_name(name: str, instance: str = "") -> bool:
    """Whether ``name`` has the shape :func:`bridge_name` gives for ``instance`` (readable
    names are the default control plane's only)."""
    if _HASHED_NAME.match(name):
        return True
    return not instance and name.startswith("kk-") and len(name) <= IFNAMSIZ_MAX


async def idle_bridges(pool: IPv4Network) -> dict[str, str]:
    """The bridges without a port whose IPv4 address lies in ``pool``: name -> alias."""
    return await asyncio.to_thread(_idle_bridges, pool)


def _idle_bridges(pool: IPv4Network) -> dict[str, str]:
    with IPRoute() as ipr:
        links = ipr.get_links()
        bridges = {int(link["index"]): link for link in links if _kind(link) == "bridge"}
        busy = {link.get_attr("IFLA_MASTER") for link in links}
        in_pool = {
            int(a["index"])
            for a in ipr.get_addr(family=2)
            if IPv4Address(str(a.get_attr("IFA_ADDRESS"))) in pool
        }
    return {
        str(link.get_attr("IFLA_IFNAME")): str(link.get_attr("IFLA_IFALIAS") or "")
        for index, link in sorted(bridges.items())
        if index in in_pool - busy
    }


def _kind(link: Any) -> str | None:
    info = link.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    return str(kind) if kind is not None else None


def _link_index(name: str) -> int | None:
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def _delete_link(name: str) -> bool:
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return False
        try:
            ipr.link("del", index=found[0])
        except Exception as error:  # pyroute2 raises NetlinkError; ENODEV means a race we lost
            if getattr(error, "code", None) == 19:
                return False
            raise
    return True
