"""An httpGet probe redirected by the cell to the node's own services or a metadata address:
kukeond, which probes from the host's network, connects to none of them.

A realm's editor writes the probe and the server answering it. kubelet follows a redirect
to the probed host only; kukeond likewise, and always connects to the cell's address
whatever the Location says (`httpcheck`): a 302 to http://127.0.0.1:<port> (where the
node's etcd, kukeond's metrics or any local service listens), to a metadata address or
to a unix socket is the check's answer, a success with a ProbeWarning, never a request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from kukeon.api import Kind
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container
from .test_probes import REDIRECTING

pytestmark = pytest.mark.integration

PERIODS = 3


@pytest.fixture
async def host_listener() -> AsyncIterator[tuple[int, list[bytes]]]:
    """A service on the host's loopback: its port, and the first bytes of each request."""
    asked: list[bytes] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        asked.append(await reader.read(200))
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], asked
    finally:
        server.close()
        await server.wait_closed()


async def test_a_redirect_to_the_nodes_services_is_never_followed(
    kukeond: Kukeond, host_listener: tuple[int, list[bytes]]
) -> None:
    k = kukeond
    port, asked = host_listener
    await k.hierarchy()
    targets = {
        "loop": f"http://127.0.0.1:{port}/v3/kv/range",
        "local": f"http://localhost:{port}/",
        "meta": "http://169.254.169.254/latest/meta-data/",
        "sock": "unix:///run/kukeon/kukeond.sock",
    }
    probe = {"httpGet": {"port": 8080, "path": "/cgi-bin/r"}, "periodSeconds": 1}
    for name, location in targets.items():
        script = REDIRECTING.replace("Location: /next.html", f"Location: {location}")
        app = container(k, "a", script=script, readinessProbe=probe)
        await k.apply(cell_doc(k, name, [app]))
    for name in targets:
        await k.wait_for(Kind.CELL, cell_key(k, name), state="Ready", within=30)
    await asyncio.sleep(PERIODS)  # each probed again, redirected the same way
    assert asked == []
    assert k.daemon.events is not None
    listed = (await k.daemon.events.list(k.realm)).items
    warned = {e.involved_object.name: e.message for e in listed if e.reason == "ProbeWarning"}
    for name, location in targets.items():
        assert f"HTTP 302 to {location}, not followed" in warned.get(name, ""), warned
