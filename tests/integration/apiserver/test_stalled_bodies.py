"""A body its client stops sending (the connection kept open) is the client's timeout: a 408
Status once the request's deadline passes, the connection closed, nothing stored. It was a
504, a server's failure, for what the client did (helper-198's sweep)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from kukeon.store import Registry
from tests.integration.apiserver.conftest import Certs, realm_doc, running_api
from tests.integration.apiserver.test_hostile_requests import _keys

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"


async def test_a_body_that_stops_coming_is_a_408_and_nothing_is_stored(
    registry: Registry, certs: Certs, tokens_file: Path
) -> None:
    async with running_api(registry, certs, tokens_file, request_timeout=1) as api:
        before = await _keys(registry)
        body = json.dumps(realm_doc("stalled")).encode()
        reader, writer = await asyncio.open_unix_connection(str(api.socket))
        try:
            head = (
                f"POST {V}/realms HTTP/1.1\r\nHost: k\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            )
            writer.write(head.encode() + body[: len(body) // 2])
            await writer.drain()
            started = time.monotonic()
            async with asyncio.timeout(10):
                answer = await reader.read()  # to the end: the server closes the connection
        finally:
            writer.close()
        assert time.monotonic() - started < 5
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line.split()[1] == b"408", answer[:300]
        document = json.loads(rest.partition(b"\r\n\r\n")[2])
        assert document["kind"] == "Status"
        assert document["code"] == 408
        assert document["reason"] == "Timeout"
        assert "did not arrive whole" in document["message"]
        assert await _keys(registry) == before
