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
from collections.abc import Callable, Sequence

from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry

from kukeon.metrics.endpoint import MetricsServer, Network, parse_address, serve_metrics
from kukeon.processes import held_by_others

log = logging.getLogger(__name__)

RETRY_SECONDS = 2.0
"""How often the address is tried again while another account's listener holds it."""


def squatters(address: str, error: OSError) -> str | None:
    """The other accounts whose listeners alone hold ``address``, named
    (``processes.held_by_others``); None when it is not so. Blocking."""
    return held_by_others(parse_address(address)[1], error)


async def listen_when_free(
    address: str,
    registry: CollectorRegistry,
    *,
    listening: Callable[[MetricsServer], None],
    retry_seconds: float = RETRY_SECONDS,
    refused: Sequence[Network] = (),
    guard: Middleware | None = None,
) -> None:
    """Listen on ``address`` once it is free, then serve until cancelled (a supervised
    task's loop: a bind that fails otherwise than "in use" raises, and is tried again)."""
    while True:
        await asyncio.sleep(retry_seconds)
        try:
            server = await serve_metrics(address, registry=registry, refused=refused, guard=guard)
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
