"""The hand-packed rtnetlink requests (``runtime.network.rtnl``) without a kernel: the
attribute layout, and the answers read back (ACK, error, a late answer, a dump)."""

from __future__ import annotations

import errno
import struct

import pytest

from kukeon.runtime.network import rtnl


class FakeSocket:
    """Answers each send with the datagrams queued for it."""

    def __init__(self, *answers: bytes) -> None:
        self.answers = list(answers)
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)

    def recv(self, size: int) -> bytes:
        return self.answers.pop(0)

    def close(self) -> None:
        pass


def _message(kind: int, seq: int, payload: bytes, flags: int = 0) -> bytes:
    length = 16 + len(payload)
    return struct.pack("=IHHII", length, kind, flags, seq, 0) + payload + b"\0" * (-length % 4)


def _error(seq: int, code: int) -> bytes:
    return _message(rtnl.NLMSG_ERROR, seq, struct.pack("=i", code) + b"\0" * 16)


def _with(socket: FakeSocket) -> rtnl.Rtnl:
    made = rtnl.Rtnl.__new__(rtnl.Rtnl)
    made._socket = socket  # type: ignore[assignment]
    made._seq = 0
    return made


def test_attributes_are_padded_and_read_back() -> None:
    packed = rtnl.attr(rtnl.IFLA_IFNAME, b"eth0\0") + rtnl.attr(rtnl.IFLA_MTU, b"\x78\x05\0\0")
    assert len(packed) == 12 + 8
    assert list(rtnl.attrs(packed)) == [
        (rtnl.IFLA_IFNAME, b"eth0\0"),
        (rtnl.IFLA_MTU, b"\x78\x05\0\0"),
    ]


def test_an_ack_ends_a_request_and_an_error_carries_its_errno() -> None:
    socket = FakeSocket(_error(1, 0), _error(2, -errno.EEXIST))
    link = _with(socket)
    link.set_up(7, mtu=1400)
    header = struct.unpack_from("=IHHII", socket.sent[0])
    assert header[1] == rtnl.RTM_NEWLINK
    assert header[2] & rtnl.NLM_F_ACK
    assert dict(rtnl.attrs(socket.sent[0][32:])) == {rtnl.IFLA_MTU: struct.pack("=I", 1400)}
    with pytest.raises(rtnl.RtnlError) as raised:
        link.add_bridge("br0")
    assert raised.value.code == errno.EEXIST


def test_a_lookup_reads_the_index_and_skips_a_late_answer() -> None:
    info = struct.pack("=BxHiII", 0, 1, 42, rtnl.IFF_UP, 0)
    socket = FakeSocket(_error(0, 0) + _message(rtnl.RTM_NEWLINK, 1, info))
    assert _with(socket).link("veth0") == rtnl.Link(index=42, up=True)
    gone = FakeSocket(_error(1, -errno.ENODEV))
    assert _with(gone).link("veth0") is None


def test_a_dump_of_addresses_keeps_the_links_own() -> None:
    def address(index: int, value: bytes) -> bytes:
        payload = struct.pack("=BBBBI", 2, 24, 0, 0, index) + rtnl.attr(rtnl.IFA_LOCAL, value)
        return _message(rtnl.RTM_NEWADDR, 1, payload, flags=rtnl.NLM_F_MULTI)

    socket = FakeSocket(
        address(3, bytes([10, 0, 0, 1])) + address(4, bytes([10, 0, 1, 1])),
        _message(rtnl.NLMSG_DONE, 1, b"\0\0\0\0", flags=rtnl.NLM_F_MULTI),
    )
    found = _with(socket).addresses(3)
    assert [(str(a), p) for a, p in found] == [("10.0.0.1", 24)]
