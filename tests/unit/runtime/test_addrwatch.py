"""The node's address notices (kukeon.runtime.network.addrwatch): only address messages count
(the socket itself: tests/integration/controllers/test_ports.py)."""

from __future__ import annotations

import asyncio
import struct

import pytest

from kukeon.runtime.network.addrwatch import (
    RTM_DELADDR,
    RTM_NEWADDR,
    AddressWatch,
    address_changes,
)

RTM_NEWLINK = 16


def _message(kind: int, body: bytes = b"\0" * 8) -> bytes:
    length = 16 + len(body)
    padded = body + b"\0" * (-length % 4)
    return struct.pack("=IHHII", length, kind, 0, 0, 0) + padded


def test_only_address_messages_count() -> None:
    data = _message(RTM_NEWADDR) + _message(RTM_NEWLINK, b"\0" * 5) + _message(RTM_DELADDR)
    assert address_changes(data) == 2
    assert address_changes(_message(RTM_NEWLINK)) == 0


def test_a_malformed_read_stops_the_walk() -> None:
    assert address_changes(b"") == 0
    assert address_changes(struct.pack("=IHHII", 4, RTM_NEWADDR, 0, 0, 0)) == 0
    assert address_changes(_message(RTM_NEWADDR) + b"\x01\x02") == 1


def test_a_closed_watch_refuses_to_wait() -> None:
    with pytest.raises(RuntimeError, match="not open"):
        asyncio.run(AddressWatch().wait())
