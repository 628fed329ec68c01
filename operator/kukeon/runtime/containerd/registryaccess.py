"""Which registries kukeond may pull from, and over which scheme.

An image reference is written by whoever may write a cell or run ``kukectl image pull`` in a
realm, its editors included. Spoken to blindly, ``127.0.0.1:PORT/x:y`` made kukeond send
GETs under ``/v2/`` to any service listening on the node's loopback (a blind SSRF against
the node), and a link-local host reached the cloud's metadata service. So, as Docker's
``insecure-registries`` but stricter (Docker speaks plain HTTP to localhost unasked):

- a registry is spoken to over HTTPS unless kukeond's configuration lists it
  (``insecureRegistries``, ``--insecure-registry``): then over plain HTTP;
- a registry on the node itself (a loopback, link-local or unspecified address, one of the
  node's own addresses, ``localhost``) is pulled from only when listed;
- so is one at a cell's address: a pull runs in the host's network namespace, where no
  realm's isolation applies, so a realm's editor pulling from another realm's cell
  (connection refused, TLS failure, an answer) scanned its ports. The cells' networks are
  those of this host's kukeon bridges (``runtime.network.bridge``: every space's subnet,
  every control plane's on the host), read with the node's addresses at a pull's start.

Every request a pull makes is checked, not only the reference's registry: the token
service a registry names, each redirect, and every address a name resolves to (a name of
the editor's that resolves to 127.0.0.1 is the same SSRF). A refusal is a
``RegistryRefusedError`` saying what to list.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from kukeon.api.imageref import (
    REGISTRY_LISTING,
    IPAddress,
    IPNetwork,
    is_listed_registry,
    local_address_kind,
    registry_refusal,
)
from kukeon.runtime.containerd.registryerrors import RegistryError
from kukeon.runtime.network.bridge import is_bridge_name
from kukeon.runtime.network.netlink import IPRoute

__all__ = [
    "NodeAddresses",
    "RegistryAccess",
    "RegistryRefusedError",
    "read_node_addresses",
    "session_options",
]

log = logging.getLogger(__name__)


class RegistryRefusedError(RegistryError):
    """A pull would speak plain HTTP to, or reach a host on this node for, a registry
    kukeond's configuration does not list."""


@dataclass(frozen=True)
class NodeAddresses:
    own: frozenset[IPAddress] = frozenset()
    """The addresses of the host's interfaces."""
    cells: frozenset[IPNetwork] = frozenset()
    """The networks on the host's kukeon bridges: where its cells' addresses are."""


def read_node_addresses() -> NodeAddresses:
    """The addresses of this network namespace's interfaces, both families, and the
    networks of its kukeon bridges (blocking: netlink). Empty when netlink cannot be
    read: loopback and link-local still count."""
    try:
        with IPRoute() as ipr:
            names = {int(link["index"]): link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
            found = [*ipr.get_addr(family=socket.AF_INET), *ipr.get_addr(family=socket.AF_INET6)]
    except OSError as error:
        log.warning(
            "cannot read this node's addresses (%s): only loopback and link-local "
            "registries count as the node's own, and no cell's address is known",
            error,
        )
        return NodeAddresses()
    addresses: set[IPAddress] = set()
    cells: set[IPNetwork] = set()
    for entry in found:
        local = entry.get_attr("IFA_LOCAL") or entry.get_attr("IFA_ADDRESS")
        if not local:
            continue
        address = str(local).partition("%")[0]
        addresses.add(ipaddress.ip_address(address))
        if is_bridge_name(str(names.get(int(entry["index"])) or "")):
            cells.add(ipaddress.ip_network(f"{address}/{entry['prefixlen']}", strict=False))
    return NodeAddresses(frozenset(addresses), frozenset(cells))


def _host_port(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}" if port is not None else shown


class RegistryAccess:
    """The rule for one pull: the listed registries, the node's own addresses and its
    cells' networks."""

    def __init__(
        self,
        listed: Collection[str],
        own_addresses: Iterable[IPAddress] = (),
        cell_networks: Iterable[IPNetwork] = (),
    ) -> None:
        self.listed = tuple(listed)
        self.own = frozenset(own_addresses)
        self.cells = frozenset(cell_networks)

    def refusal(self, scheme: str, host: str, port: int | None) -> str | None:
        """Why a request to ``scheme://host:port`` is refused (None: it is not)."""
        if scheme not in ("http", "https"):  # a redirect's: aiohttp would refuse it too
            return f"a {scheme}: URL is no registry's: kukeond speaks HTTPS (or HTTP) only"
        where = _host_port(host, port)
        if is_listed_registry(where, self.listed):
            return None
        if scheme != "https":
            return f"plain {scheme.upper()} to {where} is refused: only when {REGISTRY_LISTING}"
        return registry_refusal(where, self.listed, self.own, self.cells)

    def check(self, url: URL) -> None:
        """Raise ``RegistryRefusedError`` for a request to ``url`` this rule refuses."""
        host = url.raw_host or ""
        why = self.refusal(url.scheme, host, url.explicit_port)
        if why is not None:
            raise RegistryRefusedError(
                registry=_host_port(host, url.explicit_port),
                reference=str(url.with_query(None)),
                message=why,
            )

    def trace_config(self) -> aiohttp.TraceConfig:
        """Checks every request a session sends, and every redirect before it is followed."""
        config: aiohttp.TraceConfig = aiohttp.TraceConfig()

        async def on_start(
            _session: aiohttp.ClientSession,
            _context: SimpleNamespace,
            params: aiohttp.TraceRequestStartParams,
        ) -> None:
            self.check(params.url)

        async def on_redirect(
            _session: aiohttp.ClientSession,
            _context: SimpleNamespace,
            params: aiohttp.TraceRequestRedirectParams,
        ) -> None:
            location = params.response.headers.get("Location")
            if location:
                self.check(params.url.join(URL(location)))

        config.on_request_start.append(on_start)
        config.on_request_redirect.append(on_redirect)
        return config


class _GuardedResolver(AbstractResolver):
    def __init__(self, access: RegistryAccess) -> None:
        # Imported at a pull's first session: kukeond does not load aiohttp's client part
        # until it talks to a registry (tests/unit/daemon/test_imports.py).
        from aiohttp.resolver import DefaultResolver

        self._access = access
        self._inner: AbstractResolver = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        if is_listed_registry(_host_port(host, port), self._access.listed):
            return found
        for entry in found:
            address = ipaddress.ip_address(entry["host"])
            kind = local_address_kind(address, self._access.own, self._access.cells)
            if kind is not None:
                why = (
                    f"{host} resolves to {entry['host']}, {kind}: kukeond pulls from a host "
                    f"on the node only when {REGISTRY_LISTING}"
                )
                raise RegistryRefusedError(
                    registry=_host_port(host, port), reference=host, message=why
                )
        return found

    async def close(self) -> None:
        await self._inner.close()


def session_options(access: RegistryAccess) -> dict[str, Any]:
    """What a registry session is made with so that ``access`` judges every request."""
    return {
        "connector": aiohttp.TCPConnector(resolver=_GuardedResolver(access)),
        "trace_configs": [access.trace_config()],
    }
