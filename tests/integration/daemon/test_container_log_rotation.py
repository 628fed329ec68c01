"""A container's log is rotated by its logger (containerLogMaxSize, containerLogMaxFiles),
on real containerd and runc: a container writing megabytes as fast as it can leaves at most
that many files, none over the size; `logs --follow` started before another container
writes sees every line in order across its rotations, and `tailLines` reads back across
the kept files."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from kukeon.api import Kind
from kukeon.controllers.cellfiles import CellFiles
from kukeon.runtime.containerd.crilog import rotated_logs
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import cell_doc, cell_key

pytestmark = [
    pytest.mark.integration,
    pytest.mark.kukeond_config(container_log_max_size=65536, container_log_max_files=3),
]

API = "http://kukeond/apis/kukeon.io/v1beta1"
LINES = 6000
# ~14 MB of records as fast as the logger takes them, then a last line.
FLOOD = "yes 0123456789abcdefghijklmnopqrstuvwxyz0123456789 | head -c 8000000; echo flood done"
# 100 numbered lines every 50 ms (~80 KB/s of records: the kept files hold seconds of it,
# the route reads every 0.2 s), once the follower is there.
COUNTER = (
    f"sleep 3; for b in $(seq 0 {LINES // 100 - 1}); do seq $((b*100)) $((b*100+99)); "
    "usleep 50000; done"
)


def _files(log: Path) -> list[Path]:
    """The log's files, oldest first (the current one last)."""
    return [*rotated_logs(log), log]


def _holds(log: Path, text: bytes) -> bool:
    return log.exists() and text in log.read_bytes()


async def _wait_for_line(log: Path, text: bytes, within: float = 60.0) -> None:
    for _ in range(int(within / 0.2)):
        if await asyncio.to_thread(_holds, log, text):
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{log.name} never held {text!r}")


async def test_rotated_logs_stay_bounded_and_are_followed(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    containers = [
        {"id": name, "image": k.image.name, "command": "sh", "args": ["-c", f"{s}; exec sleep 600"]}
        for name, s in (("flood", FLOOD), ("counter", COUNTER))
    ]
    await k.apply(cell_doc(k, "rot", containers))
    await k.wait_for(Kind.CELL, cell_key(k, "rot"), state="Ready")
    files = CellFiles(k.config.state_dir, (k.realm, "s1", "st1", "rot"))
    url = f"{API}/realms/{k.realm}/spaces/s1/stacks/st1/cells/rot/log"
    connector = aiohttp.UnixConnector(path=str(k.config.api_socket))
    async with aiohttp.ClientSession(connector=connector) as http:
        followed: list[str] = []
        async with http.get(url, params={"container": "counter", "follow": "true"}) as stream:
            assert stream.status == 200
            async with asyncio.timeout(90):
                while not followed or followed[-1] != str(LINES - 1):
                    line = await stream.content.readline()
                    assert line, "the stream ended"
                    followed.append(line.decode().rstrip("\n"))
        assert followed == [str(n) for n in range(LINES)]
        counter = files.log("counter")
        assert len(_files(counter)) == 3  # rotated, the oldest removed
        async with http.get(url, params={"container": "counter", "tailLines": "3000"}) as tail:
            assert (await tail.text()).split() == [str(n) for n in range(LINES - 3000, LINES)]

    flood = files.log("flood")
    await _wait_for_line(flood, b"flood done")
    kept = _files(flood)
    assert [path.name for path in kept][-1:] == ["flood.log"]
    assert len(kept) == 3
    assert all(path.stat().st_size <= 65536 for path in kept)
    numbers = [int(path.name.rsplit(".", 1)[1]) for path in kept[:-1]]
    assert min(numbers) > 100  # ~14 MB went through 64 KiB files
