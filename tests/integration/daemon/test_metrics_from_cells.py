"""A realm's editor cannot read every realm's series from kukeond's ``/metrics`` listener
through a cell of theirs.

A real kukeond over TLS with ``metricsAddress`` on every address (the chart puts it on the
node's IP). The editor's cell asks its gateway, one of the node's addresses, for
``/metrics``: a 403 and no series. The host itself is still answered.

On the tree before: the cell got every series (200), the names and states of every
realm's cells, sets and images with them, which the API's ``/metrics`` route refuses an
editor; its space's egress policy, which the editor writes, did not stop it.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import aiohttp
import pytest

from kukeon.api import Kind
from tests.fixtures.kukeond import metrics_headers
from tests.fixtures.tlskukeond import TlsKukeond, tls_kukeond  # noqa: F401 - the fixture
from tests.integration.controllers.helpers import cell_doc, container

pytestmark = [pytest.mark.integration, pytest.mark.kukeond_config(metrics_address="0.0.0.0:0")]

SCRIPT = """GW=$(ip route | awk '/^default/ {{print $3}}')
wget -q -O /tmp/m "http://$GW:{port}/metrics" 2>/tmp/err
echo "exit=$?"
echo "series=$(cat /tmp/m 2>/dev/null | grep -c '^kukeon_')"
cat /tmp/err
echo done
exec sleep 1000
"""


async def _log(session: aiohttp.ClientSession, path: str, within: float = 60) -> str:
    """The container's log once its script has said ``done``."""
    async with asyncio.timeout(within):
        while True:
            async with session.get(path, params={"container": "app"}) as response:
                text = await response.text()
                if response.status == 200 and "done" in text.splitlines():
                    return text
            await asyncio.sleep(0.5)


async def test_an_editors_cell_gets_no_series_from_the_metrics_listener(
    tls_kukeond: TlsKukeond,  # noqa: F811 - the fixture imported above
) -> None:
    node = tls_kukeond
    k = node.k
    assert k.daemon.metrics_url is not None
    port = urlsplit(k.daemon.metrics_url).port
    await k.hierarchy()
    cells = f"/apis/kukeon.io/v1beta1/realms/{k.realm}/spaces/s1/stacks/st1/cells"
    box = container(k, "app", script=SCRIPT.format(port=port), restartPolicy="never")
    document = {"apiVersion": "kukeon.io/v1beta1", **cell_doc(k, "scrape", [box])}
    async with node.session("editor") as editor:
        async with editor.post(cells, json=document) as response:
            assert response.status == 201, await response.text()
        await k.wait_for(Kind.CELL, (k.realm, "s1", "st1", "scrape"), state="Ready")
        log = await _log(editor, f"{cells}/scrape/log")
    assert "exit=1" in log, log
    assert "series=0" in log, log
    assert "403 Forbidden" in log, log
    # The host (a scraper beside kukeond, with its token) is answered as before.
    async with (
        aiohttp.ClientSession(headers=metrics_headers(k.config)) as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as reply,
    ):
        assert reply.status == 200
        assert f'realm="{k.realm}"' in await reply.text()
