"""`.../cells/{cell}/log` over kukeond's socket: both streams line by line with their time,
`timestamps`, `sinceTime`/`sinceSeconds`, `previous` after a restart, refused parameters."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from kukeon.api import Cell, Kind
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import cell_doc, cell_key, container

pytestmark = pytest.mark.integration

API = "http://kukeond/apis/kukeon.io/v1beta1"
# Each instance says which one it is on both streams, then exits: restarted after 1 s.
SCRIPT = 'n=$(date +%s%N); echo "out $n"; echo "err $n" >&2; sleep 2; exit 1'
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z ")


async def _text(http: aiohttp.ClientSession, url: str, **params: str) -> tuple[int, str]:
    async with http.get(url, params=params) as response:
        return response.status, await response.text()


async def test_streams_times_since_and_previous(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    key = (k.realm, "s1", "st1", "talker")
    await k.apply(
        {
            "kind": "Cell",
            "metadata": {"name": "talker"},
            "spec": {
                "realmId": k.realm,
                "spaceId": "s1",
                "stackId": "st1",
                "containers": [
                    {
                        "id": "t",
                        "image": k.image.name,
                        "command": "sh",
                        "args": ["-c", SCRIPT],
                        "restartPolicy": "always",
                        "restartBackoffSeconds": 1,
                    }
                ],
            },
        }
    )

    def restarted(cell: object) -> bool:
        assert isinstance(cell, Cell)
        return bool(cell.status.containers) and cell.status.containers[0].restart_count >= 1

    await k.wait_for(Kind.CELL, key, until=restarted, within=60)
    url = f"{API}/realms/{k.realm}/spaces/s1/stacks/st1/cells/talker/log"
    connector = aiohttp.UnixConnector(path=str(k.config.api_socket))
    async with aiohttp.ClientSession(connector=connector) as http:
        current = ""
        for _ in range(50):  # the new instance's first lines
            code, current = await _text(http, url)
            assert code == 200
            if current.count("\n") >= 2:
                break
            await asyncio.sleep(0.1)
        lines = current.splitlines()
        assert sorted(line.split()[0] for line in lines) == ["err", "out"]
        assert len({line.split()[1] for line in lines}) == 1  # one instance only

        code, previous = await _text(http, url, previous="true")
        assert code == 200
        before = previous.splitlines()
        assert sorted(line.split()[0] for line in before) == ["err", "out"]
        assert before[0].split()[1] != lines[0].split()[1]

        code, stamped = await _text(http, url, timestamps="true")
        assert code == 200
        assert all(STAMP.match(line) for line in stamped.splitlines()), stamped

        future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        assert await _text(http, url, sinceTime=future) == (200, "")
        code, recent = await _text(http, url, sinceSeconds="3600")
        assert (code, recent) == (200, current)

        for bad in ({"tailLines": "-1"}, {"timestamps": "maybe"}, {"sinceSeconds": "0"}):
            async with http.get(url, params=bad) as response:
                assert response.status == 400, bad
                assert next(iter(bad)) in (await response.json())["message"]


async def test_a_terminals_line_shaped_as_a_record_is_its_text_for_every_read(
    kukeond: Kukeond,
) -> None:
    """A TTY's log is the container's raw output: a line of it that looks like a record
    with an impossible time was parsed as one, and every read with ``sinceSeconds`` or
    ``sinceTime`` (followed or not) was a 500 with a traceback. It is a raw line: shown as
    written, kept by ``since`` as every raw line is."""
    k = kukeond
    await k.hierarchy()
    forged = "2026-99-99T99:99:99Z stderr F forged"
    script = f"echo '{forged}'; echo after; exec sleep 3600"
    await k.apply(cell_doc(k, "tty", [container(k, "t", script=script, attachable=True)]))
    await k.wait_for(Kind.CELL, cell_key(k, "tty"), state="Ready")
    url = f"{API}/realms/{k.realm}/spaces/s1/stacks/st1/cells/tty/log"
    connector = aiohttp.UnixConnector(path=str(k.config.api_socket))
    async with aiohttp.ClientSession(connector=connector) as http:
        text = ""
        for _ in range(100):
            code, text = await _text(http, url)
            assert code == 200
            if "after" in text:
                break
            await asyncio.sleep(0.1)
        assert text == f"{forged}\r\nafter\r\n"
        past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        assert await _text(http, url, sinceSeconds="3600") == (200, text)
        assert await _text(http, url, sinceTime=past) == (200, text)
        assert await _text(http, url, stream="Stderr") == (200, "")
        async with http.get(
            url, params={"follow": "true", "sinceSeconds": "3600", "limitBytes": str(len(text))}
        ) as response:
            assert (response.status, await response.text()) == (200, text)
