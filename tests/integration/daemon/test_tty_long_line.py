"""`logs` of an attachable (TTY) container shows a line longer than a whole log file whole,
on real containerd and runc (64 KiB files): its terminal logger cuts it into pieces of a
file's size, and the whole log, `tailLines` and `follow` join them again. They showed only
its last piece."""

from __future__ import annotations

import asyncio

import pytest

from kukeon.api import Kind
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import cell_doc, cell_key, container
from tests.integration.daemon.test_attach import cell_url, session

pytestmark = [
    pytest.mark.integration,
    pytest.mark.kukeond_config(container_log_max_size=65536, container_log_max_files=10),
]

LONG = 200_000  # three files and more, in one line
SCRIPT = f"echo before; head -c {LONG} /dev/zero | tr '\\0' a; echo; echo after; sleep 3600"


async def test_a_line_longer_than_a_log_file_is_shown_whole(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    followed: list[bytes] = []

    async def follow() -> None:
        async with (
            session(k) as http,
            http.get(f"{cell_url(k, 'tty')}/log", params={"follow": "true"}) as stream,
        ):
            async for line in stream.content:
                followed.append(line)
                if line.startswith(b"after"):
                    return

    await k.apply(cell_doc(k, "tty", [container(k, "t", script=SCRIPT, attachable=True)]))
    await k.wait_for(Kind.CELL, cell_key(k, "tty"), state="Ready")
    follower = asyncio.ensure_future(follow())  # from the start, across the pieces' files
    await asyncio.wait_for(follower, 60)
    async with session(k) as http:
        async with http.get(f"{cell_url(k, 'tty')}/log") as response:
            whole = await response.read()
        async with http.get(f"{cell_url(k, 'tty')}/log", params={"tailLines": "2"}) as response:
            tail = await response.read()
    long_line = b"a" * LONG + b"\r\n"
    assert whole == b"before\r\n" + long_line + b"after\r\n"
    assert tail == long_line + b"after\r\n"
    assert b"".join(followed) == whole
    await k.registry.delete(Kind.CELL, cell_key(k, "tty"))
