"""The few rtnetlink requests a cell's attachment makes, packed by hand on a plain socket.

pyroute2 (``netlink``) builds and parses every message in Python through its own event
loop: ~0.5-1 ms of CPU a request, and one more millisecond to open each socket. A cell's
attachment made a dozen of them while its root container was created on the same two
cores, and the two steps, run side by side, each took as long as both one after the other
(issue 18, docs/benchmarks/cells.md "Stop 32"). The requests of the attachment's hot path
(link lookup by name, bridge and veth creation, link up, address and default route) are
fixed in shape, so they are packed here with ``struct`` (a few microseconds each); reads
that parse a whole dump (``veth.problems``) stay pyroute2's.

Only what the requests above need: every request asks for an ACK, and an error answer is
raised as :class:`RtnlError` carrying its errno.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

from kukeon.runtime.network.errors import NetworkError

CLONE_NEWNET = 0x40000000
NETLINK_ROUTE = 0

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWROUTE = 24
NLMSG_ERROR, NLMSG_DONE = 2, 3

NLM_F_REQUEST, NLM_F_MULTI, NLM_F_ACK = 0x1, 0x2, 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE, NLM_F_EXCL, NLM_F_CREATE = 0x100, 0x200, 0x400

IFLA_IFNAME, IFLA_MTU, IFLA_MASTER, IFLA_LINKINFO, IFLA_NET_NS_FD = 3, 4, 10, 18, 28
IFLA_INFO_KIND, IFLA_INFO_DATA = 1, 2
VETH_INFO_PEER = 1
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTA_DST, RTA_OIF, RTA_GATEWAY = 1, 4, 5
IFF_UP = 0x1
RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST = 254, 3, 0, 1

_HEADER = struct.Struct("=IHHII")  # nlmsghdr
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg
_ATTR = struct.Struct("=HH")  # rtattr
_ERROR = struct.Struct("=i")

_libc = ctypes.CDLL(None, use_errno=True)


class RtnlError(NetworkError):
    """The kernel refused a request; ``code`` is its errno."""

    def __init__(self, code: int, what: str) -> None:
        super().__init__(f"{what}: {os.strerror(code)}")
        self.code = code


def _align(length: int) -> int:
    return (length + 3) & ~3


def attr(kind: int, payload: bytes) -> bytes:
    """One rtattr, padded to four bytes."""
    length = _ATTR.size + len(payload)
    return _ATTR.pack(length, kind) + payload + b"\0" * (_align(length) - length)


def _name(name: str) -> bytes:
    return name.encode() + b"\0"


def _u32(value: int) -> bytes:
    return struct.pack("=I", value)


def attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each rtattr in ``data``."""
    offset = 0
    while offset + _ATTR.size <= len(data):
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size:
            return
        yield kind & 0x3FFF, data[offset + _ATTR.size : offset + length]
        offset += _align(length)


@dataclass(frozen=True)
class Link:
    index: int
    up: bool


class Rtnl:
    """A NETLINK_ROUTE socket of the network namespace it was opened in."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        self._socket.bind((0, 0))
        self._seq = 0

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(self, kind: int, flags: int, body: bytes, what: str) -> list[tuple[int, bytes]]:
        """Send one request; the (type, payload) of each answer before its ACK or DONE."""
        self._seq += 1
        seq = self._seq
        header = _HEADER.pack(_HEADER.size + len(body), kind, NLM_F_REQUEST | flags, seq, 0)
        self._socket.send(header + body)
        answers: list[tuple[int, bytes]] = []
        while True:
            data = self._socket.recv(65536)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, answer, answer_flags, answer_seq, _ = _HEADER.unpack_from(data, offset)
                payload = data[offset + _HEADER.size : offset + length]
                offset += _align(length)
                if answer_seq != seq:
                    continue  # a late answer to an earlier request
                if answer == NLMSG_ERROR:
                    (code,) = _ERROR.unpack_from(payload)
                    if code:
                        raise RtnlError(-code, what)
                    return answers
                if answer == NLMSG_DONE:
                    return answers
                answers.append((answer, payload))
                if not answer_flags & NLM_F_MULTI and not flags & NLM_F_ACK:
                    return answers

    def link(self, name: str) -> Link | None:
        """The link called ``name`` (one request), or None."""
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr(IFLA_IFNAME, _name(name))
        try:
            answers = self.request(RTM_GETLINK, 0, body, f"looking up {name}")
        except RtnlError as error:
            if error.code == errno.ENODEV:
                return None
            raise
        for kind, payload in answers:
            if kind == RTM_NEWLINK:
                _, _, index, link_flags, _ = _IFINFO.unpack_from(payload)
                return Link(index=index, up=bool(link_flags & IFF_UP))
        return None

    def add_bridge(self, name: str) -> None:
        linkinfo = attr(IFLA_LINKINFO, attr(IFLA_INFO_KIND, b"bridge"))
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + attr(IFLA_IFNAME, _name(name))
        self.request(
            RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body + linkinfo, f"adding {name}"
        )

    def set_up(self, index: int, *, mtu: int | None = None) -> None:
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, IFF_UP, IFF_UP)
        if mtu:
            body += attr(IFLA_MTU, _u32(mtu))
        self.request(RTM_NEWLINK, NLM_F_ACK, body, f"setting link {index} up")

    def delete(self, index: int) -> None:
        body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, 0)
        self.request(RTM_DELLINK, NLM_F_ACK, body, f"deleting link {index}")

    def add_veth(
        self, name: str, *, peer: str, peer_netns_fd: int, master: int, mtu: int | None
    ) -> None:
        """A veth pair: ``name`` here, a port of ``master`` and up; ``peer`` made directly
        in the namespace of ``peer_netns_fd``."""
        mtu_attr = attr(IFLA_MTU, _u32(mtu)) if mtu else b""
        peer_info = (
            _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
            + attr(IFLA_IFNAME, _name(peer))
            + attr(IFLA_NET_NS_FD, _u32(peer_netns_fd))
            + mtu_attr
        )
        linkinfo = attr(
            IFLA_LINKINFO,
            attr(IFLA_INFO_KIND, b"veth") + attr(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer_info)),
        )
        body = (
            _IFINFO.pack(socket.AF_UNSPEC, 0, 0, IFF_UP, IFF_UP)
            + attr(IFLA_IFNAME, _name(name))
            + attr(IFLA_MASTER, _u32(master))
            + mtu_attr
            + linkinfo
        )
        self.request(
            RTM_NEWLINK, NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL, body, f"adding veth {name}"
        )

    def addresses(self, index: int) -> list[tuple[IPv4Address, int]]:
        """(address, prefix length) of each IPv4 address of link ``index``."""
        body = _IFADDR.pack(socket.AF_INET, 0, 0, 0, index)
        found: list[tuple[IPv4Address, int]] = []
        for kind, payload in self.request(RTM_GETADDR, NLM_F_DUMP, body, "listing addresses"):
            if kind != RTM_NEWADDR:
                continue
            _, prefixlen, _, _, owner = _IFADDR.unpack_from(payload)
            if owner != index:
                continue
            values = dict(attrs(payload[_IFADDR.size :]))
            value = values.get(IFA_LOCAL) or values.get(IFA_ADDRESS)
            if value is not None and len(value) == 4:
                found.append((IPv4Address(value), prefixlen))
        return found

    def add_address(self, index: int, address: IPv4Address, prefixlen: int) -> None:
        body = (
            _IFADDR.pack(socket.AF_INET, prefixlen, 0, RT_SCOPE_UNIVERSE, index)
            + attr(IFA_LOCAL, address.packed)
            + attr(IFA_ADDRESS, address.packed)
        )
        self.request(
            RTM_NEWADDR,
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
            body,
            f"adding {address}/{prefixlen} to link {index}",
        )

    def replace_default_route(self, gateway: IPv4Address, oif: int) -> None:
        body = _RTMSG.pack(
            socket.AF_INET, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0
        ) + attr(RTA_GATEWAY, gateway.packed) + attr(RTA_OIF, _u32(oif))  # fmt: skip
        self.request(
            RTM_NEWROUTE,
            NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            body,
            f"default route through {gateway}",
        )


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"setns: {os.strerror(code)}")


@contextmanager
def inside(netns: Path) -> Iterator[Rtnl]:
    """A socket in ``netns``, opened by this thread, which is back home before it is used
    (the socket stays bound to the namespace it was made in)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        try:
            target = os.open(netns, os.O_RDONLY)
        except FileNotFoundError as error:
            raise NetworkError(f"network namespace {netns} does not exist") from error
        try:
            _setns(target)
            try:
                rtnl = Rtnl()
            finally:
                _setns(home)
        finally:
            os.close(target)
    finally:
        os.close(home)
    with rtnl:
        yield rtnl
