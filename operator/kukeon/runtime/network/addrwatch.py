"""The kernel's notices that an IPv4 address came to or left an interface of this namespace.

rtnetlink tells every socket of the group ``RTMGRP_IPV4_IFADDR`` about each address added
(``RTM_NEWADDR``) or removed (``RTM_DELADDR``) on any interface of the network namespace
(``ip monitor address`` reads the same). The socket is read by the event loop only when the
kernel writes to it, so following the addresses costs nothing while none changes. A receive
buffer that overflowed (``ENOBUFS``) lost notices: it counts as a change, the caller looks at
the addresses itself. Only the parsing is pure (:func:`address_changes`).
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
from typing import Final

from .nftwatch import group_socket

RTMGRP_IPV4_IFADDR: Final = 0x10
RTM_NEWADDR: Final = 20
RTM_DELADDR: Final = 21
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_RCVBUF: Final = 256 * 1024


def address_changes(data: bytes) -> int:
    """How many ``RTM_NEWADDR``/``RTM_DELADDR`` messages ``data`` (one read) holds (pure)."""
    found, offset = 0, 0
    while offset + _HEADER.size <= len(data):
        length, kind, _, _, _ = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            break  # malformed: the rest cannot be walked
        found += kind in (RTM_NEWADDR, RTM_DELADDR)
        offset += (length + 3) & ~3
    return found


class AddressWatch:
    """A netlink socket in ``RTMGRP_IPV4_IFADDR``: :meth:`wait` returns once an address
    changed."""

    def __init__(self) -> None:
        self._socket: socket.socket | None = None

    def open(self) -> None:
        """Join the group (OSError when the kernel refuses it)."""
        self._socket = group_socket(socket.NETLINK_ROUTE, RTMGRP_IPV4_IFADDR, _RCVBUF)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def wait(self) -> None:
        """Until an address was added or removed (or notices were lost)."""
        if self._socket is None:
            raise RuntimeError("AddressWatch is not open")
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await loop.sock_recv(self._socket, 65536)
            except OSError as error:
                if error.errno != errno.ENOBUFS:
                    raise
                return  # notices lost: as good as a change
            if address_changes(data):
                return

    def __enter__(self) -> AddressWatch:
        self.open()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
