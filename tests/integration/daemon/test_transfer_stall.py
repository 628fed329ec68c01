"""A cp into a container whose tar never reads its stream ends with an error at the
deadline, instead of holding the session (and the client) for ever."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tarfile
from typing import Any

import aiohttp
import pytest

from kukeon.daemon import transfer
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import exec_in
from tests.integration.daemon.test_transfer_routes import _cell, cell_url, session

pytestmark = pytest.mark.integration

NEVER_READS = (
    "rm /bin/tar && printf '#!/bin/sh\\nexec sleep 600\\n' > /bin/tar && chmod +x /bin/tar"
)


async def test_cp_into_a_tar_that_never_reads_fails_at_the_deadline(
    kukeond: Kukeond, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transfer, "STDIN_STALL_SECONDS", 1.0)
    k = kukeond
    await k.hierarchy()
    await _cell(k, "box")
    code, _ = await exec_in(k, "s1_st1_box_main", "sh", "-c", NEVER_READS)
    assert code == 0
    status: dict[str, Any] = {}
    async with (
        session(k) as http,
        http.ws_connect(
            f"{cell_url(k, 'box')}/cp", params={"path": "/tmp/x", "mode": "write"}
        ) as socket,
    ):

        async def upload() -> None:
            # A tar stream (kukeond refuses anything else before tar sees it) of one 10 MB
            # file: far more than the pipes hold.
            header = tarfile.TarInfo("x")
            header.size = 10_000_000
            with contextlib.suppress(ConnectionError):
                await socket.send_bytes(b"\x00" + header.tobuf(tarfile.GNU_FORMAT))
                for _ in range(200):
                    await socket.send_bytes(b"\x00" + b"x" * 50_000)

        sending = asyncio.ensure_future(upload())
        try:
            async with asyncio.timeout(30):
                async for message in socket:
                    if message.type != aiohttp.WSMsgType.BINARY:
                        break
                    if message.data[:1] == b"\x03":
                        status = json.loads(message.data[1:])
        finally:
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sending
    assert "did not read its input for 1s" in status["error"]
