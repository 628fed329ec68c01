"""The ``/metrics`` listener's address held by a local user: kukeond starts all the same.

kukeond serves ``/metrics`` on a fixed unprivileged port (``127.0.0.1:9464`` by default),
which any local account may bind before kukeond does: at boot, or in the seconds systemd
waits before it starts kukeond again. An address in use is a ``StartupError`` (one line,
exit 1: a second kukeond, another service given the same port), so a user without any
right on kukeon who kept the port stopped the node's control plane for as long as they
liked: no API (its unix socket included), no convergence, while the cells ran on unmanaged.

So the holder is looked up first: ``/proc/net/tcp`` and ``tcp6`` give the owner's uid of
every listening socket. A listener of root's (another service of the host, which is the
operator's to sort out) is the ``StartupError`` as before. Listeners of other accounts only
are a local user's: kukeond logs an error naming them, starts without ``/metrics`` on that
address, and a supervised task listens there as soon as the address is free. Meanwhile the
API server's ``/metrics`` route (for token holders and the local admin) serves the same
series; a scraper of the address reaches the user's listener, not kukeond, as it would
with kukeond stopped.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import pwd
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry

from kukeon.metrics.endpoint import MetricsServer, parse_address, serve_metrics

log = logging.getLogger(__name__)

RETRY_SECONDS = 2.0
"""How often the address is tried again while another account's listener holds it."""
_LISTEN = "0A"
"""``st`` of a listening socket in ``/proc/net/tcp``."""
_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))


def listener_uids(port: int, tables: tuple[Path, ...] = _TABLES) -> set[int]:
    """The owners' uids of the TCP sockets listening on ``port`` (any address) in this
    process's network namespace. Blocking: a few small reads of ``/proc``."""
    uids: set[int] = set()
    for table in tables:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 8 or fields[3] != _LISTEN:
                continue
            local_port = fields[1].rpartition(":")[2]
            if int(local_port, 16) == port:
                uids.add(int(fields[7]))
    return uids


def squatters(address: str, error: OSError) -> list[int]:
    """The uids of the other accounts whose listeners alone hold ``address``, when
    ``error`` is its bind's "address in use"; [] for any other failure, for a listener of
    root's among them (a service of the host's), or when none is found. Blocking."""
    if error.errno != errno.EADDRINUSE:
        return []
    _, port = parse_address(address)
    uids = listener_uids(port)
    if not uids or 0 in uids:
        return []
    return sorted(uids)


def account(uid: int) -> str:
    """``uid 65534 (nobody)``, or ``uid N`` for an id no account has."""
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


async def listen_when_free(
    address: str,
    registry: CollectorRegistry,
    *,
    listening: Callable[[MetricsServer], None],
    retry_seconds: float = RETRY_SECONDS,
) -> None:
    """Listen on ``address`` once it is free, then serve until cancelled (a supervised
    task's loop: a bind that fails otherwise than "in use" raises, and is tried again)."""
    while True:
        await asyncio.sleep(retry_seconds)
        try:
            server = await serve_metrics(address, registry=registry)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                continue
            raise
        break
    log.warning("listening for /metrics on %s now: the address is free again", address)
    listening(server)
    try:
        await asyncio.Event().wait()  # until kukeond stops: cancelled
    finally:
        await server.stop()
