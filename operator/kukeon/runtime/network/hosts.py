"""A cell's ``/etc/hosts``, ``/etc/hostname`` and ``/etc/resolv.conf``, kept on disk.

Every container of a cell shares one network namespace, so they share one hosts file, one
host name and one resolver list, rendered from the cell's name, its address and its network
aliases (and the host's resolvers, ``resolvconf``) and bind-mounted into each container
from the state directory. A container on the host's network (``hostNetwork``) gets the
node's instead, as docker's ``--network host`` and kubelet's hostNetwork pods do: a copy of
the node's ``/etc/hosts`` and its host name (:func:`write_node_files`). Rewrites keep the
file's inode so containers that are already running see the change.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from kukeon.runtime.hostfiles import CONTAINER_READABLE_FILE_MODE, make_dirs
from kukeon.runtime.network._files import write_keeping_inode
from kukeon.runtime.network.resolvconf import host_resolv_conf

HOSTNAME_MAX = 64
"""The kernel's limit for a UTS host name (``HOST_NAME_MAX``)."""
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")
IPAddress = IPv4Address | IPv6Address

LOCALHOST_LINES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("127.0.0.1", ("localhost",)),
    ("::1", ("localhost", "ip6-localhost", "ip6-loopback")),
    ("fe00::0", ("ip6-localnet",)),
    ("ff00::0", ("ip6-mcastprefix",)),
    ("ff02::1", ("ip6-allnodes",)),
    ("ff02::2", ("ip6-allrouters",)),
)
NO_ADDRESS_IP = "127.0.1.1"
"""Where the cell's own names point when it has no network address (Debian's convention)."""
NODE_HOSTS = Path("/etc/hosts")
NODE_HOSTS_HEADER = "# kukeon-managed hosts file (host network): a copy of the node's /etc/hosts.\n"


def validate_hostname(name: str, *, field: str = "hostname") -> str:
    """``name`` if it is a valid RFC 1123 host name the kernel accepts, else ``ValueError``."""
    if not name or len(name.encode()) > HOSTNAME_MAX:
        raise ValueError(f"{field} {name!r} must be 1-{HOSTNAME_MAX} characters long")
    for label in name.split("."):
        if not _LABEL.match(label):
            raise ValueError(
                f"{field} {name!r} is not a valid host name: each dot-separated label must be "
                "1-63 letters, digits or '-', not starting or ending with '-'"
            )
    return name


def render_hostname(hostname: str) -> str:
    return validate_hostname(hostname) + "\n"


def render_hosts(
    *,
    cell_name: str,
    hostname: str | None = None,
    ip: IPAddress | None = None,
    aliases: Sequence[str] = (),
    extra_hosts: Sequence[tuple[str, IPAddress]] = (),
) -> str:
    """The cell's hosts file: localhost entries, the cell's names on its IP, extra hosts.

    ``hostname`` defaults to the cell name; names are listed once, in the order given.
    """
    own_names: list[str] = []
    for index, name in enumerate([hostname or cell_name, cell_name, *aliases]):
        field = "hostname" if index == 0 else ("cell name" if index == 1 else "network alias")
        validate_hostname(name, field=field)
        if name not in own_names:
            own_names.append(name)
    lines = [f"{address}\t{' '.join(names)}" for address, names in LOCALHOST_LINES]
    lines.append(f"{ip if ip is not None else NO_ADDRESS_IP}\t{' '.join(own_names)}")
    for name, address in extra_hosts:
        validate_hostname(name, field="extra host")
        lines.append(f"{address}\t{name}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class CellHostFiles:
    hosts: Path
    hostname: Path
    resolv_conf: Path

    def paths(self) -> tuple[Path, Path, Path]:
        return self.hosts, self.hostname, self.resolv_conf


async def write_cell_host_files(
    *,
    directory: Path,
    hosts_text: str,
    hostname_text: str,
    resolv_conf: Callable[[], str] = host_resolv_conf,
    only_missing: bool = False,
) -> CellHostFiles:
    """Write ``hosts``, ``hostname`` and ``resolv.conf`` (what ``resolv_conf`` reads, in the
    thread that writes) into ``directory`` (created if needed); ``only_missing``: only
    those not there yet (a task's bind mounts need the files to exist when it is created;
    the cell's running containers keep what they read)."""
    files = CellHostFiles(
        hosts=directory / "hosts",
        hostname=directory / "hostname",
        resolv_conf=directory / "resolv.conf",
    )

    def write() -> None:
        wanted = [path for path in files.paths() if not only_missing or not path.exists()]
        if not wanted:
            return
        make_dirs(directory)
        # 0644 in a 0750 directory: the container's user (anyone) reads them through their
        # bind mounts; on the host, only root reaches them. Not flushed to disk: every pass
        # writes them again, and a power loss takes the cell's containers down with them
        # (four fsyncs per starting cell held the threads a 50-cell burst shares).
        # The host's resolvers are read again at every pass: a changed upstream reaches
        # running containers (the rewrite keeps the inode their bind mount holds).
        texts = {files.hosts: hosts_text, files.hostname: hostname_text}
        for path in wanted:
            text = texts[path] if path in texts else resolv_conf()
            write_keeping_inode(path, text, mode=CONTAINER_READABLE_FILE_MODE, durable=False)

    await asyncio.to_thread(write)
    return files


def render_node_hosts(node_hosts: str | None) -> str:
    """A host-network container's /etc/hosts: the node's, under kukeon's header (kubelet's
    for a hostNetwork pod is the node's under its own); the localhost lines when the node
    has none."""
    if node_hosts is None:
        node_hosts = "".join(f"{ip}\t{' '.join(names)}\n" for ip, names in LOCALHOST_LINES)
    return NODE_HOSTS_HEADER + node_hosts


def write_node_files(
    *, hosts: Path, hostname: Path, node_hostname: str, node_hosts: Path = NODE_HOSTS
) -> None:
    """``hosts``: a copy of the node's /etc/hosts (:func:`render_node_hosts`); ``hostname``:
    ``node_hostname``. Blocking; each written only when it differs, in place (a running
    container's bind mount sees the node's later changes at the cell's next pass). A copy,
    not the node's file: nothing done in a container reaches the node's."""
    try:
        node_text: str | None = node_hosts.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        node_text = None
    for path, text in ((hosts, render_node_hosts(node_text)), (hostname, node_hostname + "\n")):
        try:
            if path.read_text(encoding="utf-8", errors="replace") == text:
                continue
        except FileNotFoundError:
            make_dirs(path.parent)
        write_keeping_inode(path, text, mode=CONTAINER_READABLE_FILE_MODE, durable=False)
