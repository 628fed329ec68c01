"""Typed views of what CNI plugins print: the success result and the error object.

The records are read-only views; the raw JSON a plugin printed is kept next to them because
the spec requires the *exact* previous result to be passed on as ``prevResult`` (and cached
for CHECK and DEL), and re-serialising a typed view could drop fields a later plugin needs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv6Address,
    IPv6Interface,
    ip_address,
    ip_interface,
    ip_network,
)
from ipaddress import IPv4Network as _IPv4Network
from ipaddress import IPv6Network as _IPv6Network
from typing import Any

from kukeon.runtime.network.errors import CniConfigError, CniError

IPAddress = IPv4Address | IPv6Address
IPInterface = IPv4Interface | IPv6Interface
IPNetwork = _IPv4Network | _IPv6Network


@dataclass(frozen=True)
class CniInterface:
    name: str
    mac: str | None = None
    sandbox: str | None = None
    """The netns path for interfaces inside the container; ``None`` for host-side ones."""
    mtu: int | None = None


@dataclass(frozen=True)
class CniIPConfig:
    address: IPInterface
    gateway: IPAddress | None = None
    interface: int | None = None
    """Index into :attr:`CniResult.interfaces`."""


@dataclass(frozen=True)
class CniRoute:
    dst: IPNetwork
    gw: IPAddress | None = None


@dataclass(frozen=True)
class CniDns:
    nameservers: tuple[str, ...] = ()
    domain: str | None = None
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True)
class CniResult:
    cni_version: str
    interfaces: tuple[CniInterface, ...] = ()
    ips: tuple[CniIPConfig, ...] = ()
    routes: tuple[CniRoute, ...] = ()
    dns: CniDns = field(default_factory=CniDns)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def container_ips(self, *, sandbox: str | None = None) -> tuple[CniIPConfig, ...]:
        """Addresses on interfaces inside a sandbox (or on any interface when unknown)."""
        chosen = []
        for ip in self.ips:
            if ip.interface is None or not 0 <= ip.interface < len(self.interfaces):
                chosen.append(ip)
                continue
            iface = self.interfaces[ip.interface]
            if iface.sandbox and (sandbox is None or iface.sandbox == sandbox):
                chosen.append(ip)
        return tuple(chosen)

    def first_ipv4(self) -> CniIPConfig | None:
        for ip in self.container_ips():
            if isinstance(ip.address, IPv4Interface):
                return ip
        return None


def parse_result(document: Any, *, plugin: str = "?") -> CniResult:
    """A plugin's success output as a :class:`CniResult`; malformed output is a config error."""
    if not isinstance(document, Mapping):
        raise CniConfigError(f"CNI plugin `{plugin}` printed a result that is not a JSON object")
    try:
        return CniResult(
            cni_version=str(document.get("cniVersion", "")),
            interfaces=tuple(
                CniInterface(
                    name=str(item["name"]),
                    mac=_opt_str(item.get("mac")),
                    sandbox=_opt_str(item.get("sandbox")) or None,
                    mtu=int(item["mtu"]) if item.get("mtu") is not None else None,
                )
                for item in document.get("interfaces") or ()
            ),
            ips=tuple(
                CniIPConfig(
                    address=ip_interface(item["address"]),
                    gateway=ip_address(item["gateway"]) if item.get("gateway") else None,
                    interface=int(item["interface"]) if item.get("interface") is not None else None,
                )
                for item in document.get("ips") or ()
            ),
            routes=tuple(
                CniRoute(
                    dst=ip_network(item["dst"], strict=False),
                    gw=ip_address(item["gw"]) if item.get("gw") else None,
                )
                for item in document.get("routes") or ()
            ),
            dns=_parse_dns(document["dns"] if document.get("dns") is not None else {}),
            raw=document,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CniConfigError(
            f"CNI plugin `{plugin}` printed a malformed result: {error!r}"
        ) from error


def _parse_dns(dns: Any) -> CniDns:
    if not isinstance(dns, Mapping):
        raise TypeError("dns must be an object")
    return CniDns(
        nameservers=tuple(str(x) for x in dns.get("nameservers") or ()),
        domain=_opt_str(dns.get("domain")) or None,
        search=tuple(str(x) for x in dns.get("search") or ()),
        options=tuple(str(x) for x in dns.get("options") or ()),
    )


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def parse_error(
    *, stdout: bytes, stderr: bytes, plugin: str, network: str, command: str, returncode: int
) -> CniError:
    """The spec's error object (``{code, msg, details}``) as a :class:`CniError`.

    A plugin that crashed without printing one still yields an error naming it, with its
    exit status and stderr.
    """
    stderr_text = stderr.decode("utf-8", errors="replace").strip()
    try:
        document = json.loads(stdout) if stdout.strip() else None
    except ValueError:
        document = None
    if isinstance(document, Mapping) and "msg" in document:
        code = document.get("code")
        return CniError(
            plugin=plugin,
            network=network,
            command=command,
            code=int(code) if isinstance(code, int | str) and str(code).isdigit() else None,
            msg=str(document.get("msg", "")),
            details=str(document.get("details") or ""),
            stderr=stderr_text,
        )
    stdout_text = stdout.decode("utf-8", errors="replace").strip()
    message = stderr_text or stdout_text or "no output"
    return CniError(
        plugin=plugin,
        network=network,
        command=command,
        code=None,
        msg=f"exited with status {returncode}: {message}",
        stderr=stderr_text,
    )
