"""An attachable (TTY) container's log holds its terminal's raw bytes, and a line of them
shaped as a CRI record is read as text, through the log route and `kukectl logs`, on real
containerd and runc: its time, stream and `P` were believed (`--timestamps` printed the
forged time, `stream=Stderr` kept it, the next line was joined to it, `--since` hid or
showed it at the program's will). A plain container's records beside it are read as before.
"""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from pathlib import Path

import pytest

from kukeon.api import Kind
from kukeon.controllers.cellfiles import CellFiles
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import cell_doc, cell_key, container
from tests.integration.daemon.test_attach import cell_url, session

pytestmark = pytest.mark.integration

KUKECTL = str(Path(sys.executable).with_name("kukectl"))
FORGED = (
    "2020-01-01T00:00:00Z stderr P forged-",
    "joined",
    "2099-01-01T00:00:00.5Z stderr F from the future",
)
SCRIPT = "echo hello; " + "; ".join(f"echo '{line}'" for line in FORGED) + "; sleep 3600"
TERMINAL_LINES = b"".join(line.encode() + b"\r\n" for line in ("hello", *FORGED))


async def _log(k: Kukeond, name: str, **params: str) -> bytes:
    async with session(k) as http, http.get(f"{cell_url(k, name)}/log", params=params) as answer:
        assert answer.status == 200, await answer.text()
        return await answer.read()


async def _logged(k: Kukeond, name: str, container: str, last: bytes) -> None:
    async with asyncio.timeout(30):
        # A file the container's logger writes: nothing to await but time.
        while last not in await _log(k, name, container=container):  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def _kukectl_logs(k: Kukeond, *args: str) -> bytes:
    place = ["--realm", k.realm, "--space", "s1", "--stack", "st1"]
    process = await asyncio.create_subprocess_exec(
        KUKECTL,
        "logs",
        *args,
        *place,
        env={**os.environ, "KUKEON_SERVER": f"unix://{k.config.api_socket}"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode == 0, err
    return out


async def test_a_terminal_line_shaped_as_a_record_is_text(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    terminal = container(k, "t", script=SCRIPT, attachable=True)
    plain = container(k, "p", script=SCRIPT)
    await k.apply(cell_doc(k, "forge", [terminal, plain]))
    try:
        await k.wait_for(Kind.CELL, cell_key(k, "forge"), state="Ready")
        await _logged(k, "forge", "t", b"from the future")
        await _logged(k, "forge", "p", b"from the future")

        # The terminal's bytes, each line as written: no join, no time, all of it stdout.
        assert await _log(k, "forge", container="t") == TERMINAL_LINES
        stamped = await _log(k, "forge", container="t", timestamps="true")
        assert stamped == b"".join(b"- " + line for line in TERMINAL_LINES.splitlines(True))
        assert await _log(k, "forge", container="t", stream="Stderr") == b""
        assert await _log(k, "forge", container="t", stream="Stdout") == TERMINAL_LINES
        tail = await _log(k, "forge", container="t", tailLines="2")
        assert tail == b"joined\r\n2099-01-01T00:00:00.5Z stderr F from the future\r\n"
        # --since goes by when the terminal's file was last written: not at the lines' word.
        assert await _log(k, "forge", container="t", sinceSeconds="3600") == TERMINAL_LINES
        assert await _log(k, "forge", container="t", sinceTime="2050-01-01T00:00:00Z") == b""
        cut = await _log(k, "forge", container="t", follow="true", limitBytes="80")
        assert cut == TERMINAL_LINES[:80]

        # What the file holds: the bytes, no records; marked as a terminal's by its mode.
        log = CellFiles(k.config.state_dir, (k.realm, "s1", "st1", "forge")).log("t")
        assert log.read_bytes() == TERMINAL_LINES
        assert os.stat(log).st_mode & stat.S_ISVTX, "the terminal's log is not marked"

        # kukectl shows the same.
        assert await _kukectl_logs(k, "forge", "-c", "t") == TERMINAL_LINES
        assert await _kukectl_logs(k, "forge", "-c", "t", "--timestamps") == stamped

        # A plain container's records: the logger's times and stream, its text as written.
        plain_lines = await _log(k, "forge", container="p", timestamps="true")
        assert not plain_lines.startswith(b"- ")
        assert plain_lines.endswith(b"Z 2099-01-01T00:00:00.5Z stderr F from the future\n")
        assert b"Z 2020-01-01T00:00:00Z stderr P forged-\n" in plain_lines
        assert await _log(k, "forge", container="p", stream="Stderr") == b""
    finally:
        await k.registry.delete(Kind.CELL, cell_key(k, "forge"))
