"""nftwatch: the kernel's nf_tables notices, as the netlink group delivers them, parsed
into the changes of one table (who made them, what went); a real socket sees a change
made with the ``nft`` command, and tells its pid."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import struct
import subprocess

import pytest

from kukeon.runtime.network.nftwatch import (
    NFNL_SUBSYS_NFTABLES,
    NFPROTO_INET,
    NftWatch,
    Notice,
    parse_notices,
)


def _attr(kind: int, value: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def _message(kind: int, pid: int, attrs: list[bytes], *, family: int = NFPROTO_INET) -> bytes:
    body = struct.pack("=BBH", family, 0, 0) + b"".join(attrs)
    header = struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_NFTABLES << 8) | kind, 0, 0, pid)
    return header + body


def _name(text: str) -> bytes:
    return text.encode() + b"\0"


def test_changes_of_the_table_with_their_pid_and_the_process_name() -> None:
    data = b"".join(
        [
            _message(8, 41, [_attr(1, _name("kukeon")), _attr(2, _name("ports-guard"))]),
            _message(11, 41, [_attr(1, _name("kukeon")), _attr(2, _name("bridges"))]),
            _message(5, 41, [_attr(1, _name("kukeon")), _attr(3, _name("forward"))]),
            _message(2, 41, [_attr(1, _name("kukeon"))]),
            # Another table, and a table of the same name in another family: not ours.
            _message(2, 41, [_attr(1, _name("filter"))]),
            _message(2, 41, [_attr(1, _name("kukeon"))], family=2),
            _message(
                15,
                41,
                [
                    _attr(1, struct.pack("!I", 7)),
                    _attr(2, struct.pack("!I", 41)),
                    _attr(3, b"nft\0"),
                ],
                family=0,
            ),
        ]
    )
    notices, names = parse_notices(data, table="kukeon")
    assert [n.describe() for n in notices] == [
        "deleted rule in chain ports-guard",
        "deleted set bridges",
        "deleted chain forward",
        "deleted table",
    ]
    assert {n.pid for n in notices} == {41}
    assert names == {41: "nft"}


def test_a_cut_message_ends_the_parse_without_error() -> None:
    whole = _message(3, 9, [_attr(1, _name("kukeon")), _attr(3, _name("c"))])
    notices, _ = parse_notices(whole + whole[:18], table="kukeon")
    assert notices == [Notice(pid=9, action="added", what="chain", name="c")]
    # Another netfilter subsystem (conntrack's) is skipped.
    other = bytearray(whole)
    struct.pack_into("=H", other, 4, (1 << 8) | 3)
    assert parse_notices(bytes(other), table="kukeon") == ([], {})


def test_a_real_change_is_seen_with_the_pid_of_the_nft_that_made_it() -> None:
    if shutil.which("nft") is None:
        pytest.skip("needs nft")
    table = f"kkwatch{secrets.token_hex(3)}"

    async def run() -> tuple[list[Notice], int, int]:
        with NftWatch(table) as watch:
            made = await asyncio.create_subprocess_exec(
                "nft", f"add table inet {table}; add chain inet {table} c"
            )
            await made.wait()
            first = await asyncio.wait_for(watch.wait(), 5)
            gone = await asyncio.create_subprocess_exec("nft", "delete", "table", "inet", table)
            await gone.wait()
            await asyncio.sleep(0.1)
            return [*first, *watch.drain()], made.pid, gone.pid

    try:
        try:
            notices, made, gone = asyncio.run(run())
        except PermissionError:
            pytest.skip("needs CAP_NET_ADMIN")
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table], capture_output=True, check=False)
    assert [(n.pid, n.describe()) for n in notices] == [
        (made, "added table"),
        (made, "added chain c"),
        (gone, "deleted chain c"),
        (gone, "deleted table"),
    ]
