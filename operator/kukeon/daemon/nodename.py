"""One kukeond per node name in a fleet: a second process taking a name whose heartbeat
is alive elsewhere is refused at start.

Two kukeonds with one ``--node-name`` (a configuration copied to a new host unchanged, a
second instance with its own directories) would both converge that node's cells: two
copies of each, the one thing a fleet must never run. A heartbeat says where its process
runs (``host_identity``: the host's machine id and hostname, and the state directory); a
start that finds the name's heartbeat alive and written from somewhere else stops with a
``StartupError``. The same host and state directory is the same node coming back (a
restart, a kill -9 whose heartbeat has not expired yet): it goes on.
"""

from __future__ import annotations

import socket
from pathlib import Path

from kukeon.framework.heartbeats import heartbeat_of
from kukeon.store import EtcdClient

from .starterrors import StartupError

MACHINE_ID = Path("/etc/machine-id")


def host_identity(state_dir: Path, machine_id_file: Path = MACHINE_ID) -> str:
    """``hostname/machine-id:state-dir``: the same for every start of this installation."""
    try:
        machine = machine_id_file.read_text().strip()
    except OSError:
        machine = ""
    return f"{socket.gethostname()}/{machine or '-'}:{state_dir.resolve()}"


async def check_node_name(
    client: EtcdClient, prefix: str, *, node_name: str, host: str, ttl: int
) -> None:
    """Refuse ``node_name`` when another installation's heartbeat holds it."""
    holder = await heartbeat_of(client, prefix, node_name)
    if holder is None:
        return
    elsewhere = str(holder.get("host") or "")
    if not elsewhere or elsewhere == host:  # an older kukeond's, or this installation's
        return
    started = holder.get("startedAt") or "?"
    raise StartupError(
        f"node name {node_name!r} is in use by another kukeond ({elsewhere}, started "
        f"{started}): give this one its own --node-name, or stop the other; if that host "
        f"is gone, its heartbeat expires within {holder.get('ttl') or ttl}s"
    )
