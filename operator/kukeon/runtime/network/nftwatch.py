"""The kernel's notifications of changes to one nft table: who changed it, and what.

nf_tables tells every socket of the netlink group ``NFNLGRP_NFTABLES`` about each change
committed to any table of the host (``nft monitor`` reads the same): a message per table,
chain, rule, set or set element added or deleted, then one ``NEWGEN`` per transaction. Each
message carries the netlink port id of the socket that asked for the change, which for the
``nft`` command is its pid. So kukeond learns that its table went (an operator's ``nft flush
ruleset``, ``nftables.service`` reloading, firewalld) the moment it goes, costing nothing
while nothing changes: the socket is read by the event loop only when the kernel writes to
it, and a message about another table is dropped after reading its first attribute.

Only the parsing is pure (:func:`parse_notices`); :class:`NftWatch` owns the socket. A
receive buffer that overflowed (``ENOBUFS``: the host changed its tables faster than the
loop read them) loses notices: it is reported as a :class:`Notice` with ``lost`` set, so
the caller looks at the table itself.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import struct
from dataclasses import dataclass
from typing import Final

log = logging.getLogger(__name__)

NETLINK_NETFILTER: Final = 12
NFNLGRP_NFTABLES: Final = 7
NFNL_SUBSYS_NFTABLES: Final = 10
NFPROTO_INET: Final = 1
_SO_RCVBUFFORCE: Final = 33  # Linux's; Python's socket module does not name it
_RCVBUF: Final = 4 * 1024 * 1024
"""Room for a burst of other tables' changes (a test run's, a firewall reload) between two
reads of the loop."""
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid (port id)
_NFGENMSG = struct.Struct("=BBH")  # family, version, resource id
_ATTR = struct.Struct("=HH")  # nla_len, nla_type
_NLA_TYPE_MASK: Final = 0x3FFF

# NFT_MSG_NEW* of each kind of object (its GET is one more, its DEL two more), what the
# notice calls it, and the attribute naming it (the table is attribute 1 of each of them).
_OBJECTS: Final[dict[int, tuple[str, int | None]]] = {
    0: ("table", None),
    3: ("chain", 3),
    6: ("rule in chain", 2),
    9: ("set", 2),
    12: ("element of set", 2),
    18: ("object", 2),
    22: ("flowtable", 2),
}
_CHANGES: Final[dict[int, tuple[str, str, int | None]]] = {
    new + offset: (action, what, name)
    for new, (what, name) in _OBJECTS.items()
    for offset, action in ((0, "added"), (2, "deleted"))
}
_NEWGEN: Final = 15
_GEN_PROC_PID: Final = 2
_GEN_PROC_NAME: Final = 3


@dataclass(frozen=True)
class Notice:
    """One change of the watched table (or notices lost: ``lost``)."""

    pid: int = 0
    """The port id of the changing socket: the ``nft`` command's pid (0: the kernel's own)."""
    action: str = ""
    """``added`` or ``deleted``."""
    what: str = ""
    """``table``, ``chain``, ``rule in chain``, ``set``, ``element of set``..."""
    name: str = ""
    """The chain's or set's name (empty for the table)."""
    lost: bool = False

    def describe(self) -> str:
        if self.lost:
            return "notices lost"
        return f"{self.action} {self.what}{f' {self.name}' if self.name else ''}"


def _attributes(data: bytes, start: int, end: int) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    offset = start
    while offset + _ATTR.size <= end:
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size or offset + length > end:
            break
        found.setdefault(kind & _NLA_TYPE_MASK, data[offset + _ATTR.size : offset + length])
        offset += (length + 3) & ~3
    return found


def _text(raw: bytes | None) -> str:
    return (raw or b"").split(b"\0", 1)[0].decode("utf-8", errors="replace")


def parse_notices(
    data: bytes, *, table: str, family: int = NFPROTO_INET
) -> tuple[list[Notice], dict[int, str]]:
    """The changes of ``family`` table ``table`` in one read of the socket, and the process
    names the transactions' ``NEWGEN`` messages gave for their pids (pure)."""
    notices: list[Notice] = []
    names: dict[int, str] = {}
    offset = 0
    while offset + _HEADER.size + _NFGENMSG.size <= len(data):
        length, kind, _flags, _seq, pid = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size or offset + length > len(data):
            break
        end = offset + length
        body = offset + _HEADER.size
        subsystem, message = kind >> 8, kind & 0xFF
        offset += (length + 3) & ~3
        if subsystem != NFNL_SUBSYS_NFTABLES:
            continue
        msg_family = _NFGENMSG.unpack_from(data, body)[0]
        attrs = _attributes(data, body + _NFGENMSG.size, end)
        if message == _NEWGEN:
            proc_pid = attrs.get(_GEN_PROC_PID)
            if proc_pid is not None and len(proc_pid) == 4:
                names[struct.unpack("!I", proc_pid)[0]] = _text(attrs.get(_GEN_PROC_NAME))
            continue
        change = _CHANGES.get(message)
        if change is None or msg_family != family or _text(attrs.get(1)) != table:
            continue
        action, what, name_attr = change
        name = _text(attrs.get(name_attr)) if name_attr is not None else ""
        notices.append(Notice(pid=pid, action=action, what=what, name=name))
    return notices, names


def group_socket(protocol: int, groups: int, rcvbuf: int) -> socket.socket:
    """A non-blocking netlink socket of ``protocol`` in the multicast ``groups`` (a bit
    mask), its receive buffer ``rcvbuf`` (OSError when the kernel refuses the group)."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, protocol)
    try:
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, rcvbuf)
        except OSError:  # no CAP_NET_ADMIN: as large as rmem_max allows
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((0, groups))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class NftWatch:
    """A netlink socket in ``NFNLGRP_NFTABLES``, reporting the changes of one table."""

    def __init__(self, table: str, *, family: int = NFPROTO_INET) -> None:
        self.table = table
        self.family = family
        self.process_names: dict[int, str] = {}
        """pid -> process name, from the transactions seen (kept for the last few)."""
        self._socket: socket.socket | None = None

    def open(self) -> None:
        """Join the group (OSError when the kernel refuses it: no nf_tables, no privilege)."""
        self._socket = group_socket(NETLINK_NETFILTER, 1 << (NFNLGRP_NFTABLES - 1), _RCVBUF)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def wait(self) -> list[Notice]:
        """The changes of the table read until at least one came (or notices were lost)."""
        while True:
            found = await self._receive()
            if found:
                return found

    def drain(self) -> list[Notice]:
        """The changes the socket holds now, without waiting."""
        found: list[Notice] = []
        while True:
            try:
                data = self._require().recv(65536)
            except BlockingIOError:
                return found
            except OSError as error:
                if error.errno != errno.ENOBUFS:
                    raise
                found.append(Notice(lost=True))
                continue
            found += self._parse(data)

    async def _receive(self) -> list[Notice]:
        loop = asyncio.get_running_loop()
        try:
            data = await loop.sock_recv(self._require(), 65536)
        except OSError as error:
            if error.errno != errno.ENOBUFS:
                raise
            return [Notice(lost=True)]
        return self._parse(data)

    def _parse(self, data: bytes) -> list[Notice]:
        notices, names = parse_notices(data, table=self.table, family=self.family)
        self.process_names.update(names)
        while len(self.process_names) > 256:
            del self.process_names[next(iter(self.process_names))]
        return notices

    def _require(self) -> socket.socket:
        if self._socket is None:
            raise RuntimeError("NftWatch is not open")
        return self._socket

    def __enter__(self) -> NftWatch:
        self.open()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
