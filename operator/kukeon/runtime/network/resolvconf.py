"""A cell's ``/etc/resolv.conf``: the host's resolvers, as a cell's network can reach them.

A cell on a bridge network has its own network namespace, where the host's loopback
resolvers (a local dnsmasq, systemd-resolved's stub at 127.0.0.53) do not answer: those
nameservers are left out, as Docker and Podman do, and when systemd-resolved's stub is all
the host names, its upstream servers (``/run/systemd/resolve/resolv.conf``) are used
instead. ``search``, ``domain`` and ``options`` lines are kept. With no nameserver left the
file has none (the resolver then tries the cell's own loopback and fails): kukeon does not
send a cell's queries to a public resolver nobody chose.

A container on the host's network shares the host's namespace and gets the host's file
itself (``HOST_RESOLV_CONF``).
"""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path
from typing import Final

HOST_RESOLV_CONF: Final = Path("/etc/resolv.conf")
RESOLVED_UPSTREAM: Final = Path("/run/systemd/resolve/resolv.conf")
"""systemd-resolved's list of the servers it forwards to (Docker and Podman read it too)."""
_MAX_BYTES: Final = 64 * 1024


def _nameserver(line: str) -> str | None:
    fields = line.split()
    return fields[1] if len(fields) >= 2 and fields[0] == "nameserver" else None


def _is_loopback(address: str) -> bool:
    try:
        return ip_address(address.partition("%")[0]).is_loopback
    except ValueError:
        return False  # not an address: the resolver skips it, so does this


def render_resolv_conf(host_text: str) -> str:
    """``host_text`` without its loopback nameservers (and without comments)."""
    kept: list[str] = []
    for raw in host_text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        server = _nameserver(line)
        if server is not None and _is_loopback(server):
            continue
        kept.append(line)
    return "".join(f"{line}\n" for line in kept)


def _read(path: Path) -> str | None:
    try:
        with path.open("rb") as file:
            return file.read(_MAX_BYTES).decode("utf-8", "replace")
    except OSError:
        return None


def host_resolv_conf(host: Path = HOST_RESOLV_CONF, upstream: Path = RESOLVED_UPSTREAM) -> str:
    """The resolv.conf a cell with its own network namespace gets (blocking: a thread's)."""
    text = _read(host) or ""
    servers = [s for s in map(_nameserver, text.splitlines()) if s is not None]
    if servers and all(_is_loopback(s) for s in servers):
        upstream_text = _read(upstream)
        if upstream_text is not None:
            text = upstream_text
    return render_resolv_conf(text)
