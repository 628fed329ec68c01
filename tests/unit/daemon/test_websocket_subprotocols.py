"""A WebSocket client offering subprotocols kukeond does not speak is answered with none
(RFC 6455) and is no WARNING in kukeond's log: aiohttp logs one per such handshake, which
any client could repeat to fill the log (helper-182)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from kukeon.daemon.logs import configure_logging

HANDSHAKE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Protocol": "v4.channel.k8s.io, evil",
}


@pytest.fixture
def daemon_logging() -> Iterator[None]:
    """kukeond's logging set up, and the process's put back after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    websocket = logging.getLogger("aiohttp.websocket")
    filters = websocket.filters[:]
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        websocket.filters[:] = filters


@pytest.mark.usefixtures("daemon_logging")
@pytest.mark.parametrize("level", ["info", "debug"])
def test_unknown_client_subprotocols_are_no_warning(
    level: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(level)
    request = make_mocked_request("GET", "/ws", headers=HANDSHAKE)
    ready = web.WebSocketResponse().can_prepare(request)
    assert ready.ok
    assert ready.protocol is None
    logged = capsys.readouterr().err
    assert '"level": "warning"' not in logged
    assert ("overlap" in logged) == (level == "debug")


@pytest.mark.usefixtures("daemon_logging")
def test_other_websocket_warnings_stay_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info")
    logging.getLogger("aiohttp.websocket").warning("something else")
    assert '"level": "warning"' in capsys.readouterr().err
