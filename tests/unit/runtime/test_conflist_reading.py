"""A cell's ``cniConfigPath`` names any path of the node: what is no conflist file is a
CniConfigError (the cell's NetworkFailed, retried), never an exception the controller does
not expect, a read without end or a read waiting on a writer."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from kukeon.runtime.network.cni.config import MAX_CONFLIST_BYTES, load_conflist
from kukeon.runtime.network.errors import CniConfigError

CONFLIST = {"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "bridge"}]}


async def refusal(path: Path) -> str:
    with pytest.raises(CniConfigError) as refused:
        async with asyncio.timeout(5):
            await load_conflist(path)
    return str(refused.value)


async def test_a_conflist_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "n.conflist"
    path.write_text(json.dumps(CONFLIST))
    assert (await load_conflist(path)).name == "n"


async def test_nothing_there_does_not_exist(tmp_path: Path) -> None:
    assert "does not exist" in await refusal(tmp_path / "none.conflist")


async def test_a_directory_is_no_conflist(tmp_path: Path) -> None:
    assert "is not a regular file" in await refusal(tmp_path)
    assert "is not a regular file" in await refusal(Path("/"))


async def test_a_device_is_not_read() -> None:
    assert "is not a regular file" in await refusal(Path("/dev/zero"))


async def test_a_fifo_is_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert "is not a regular file" in await refusal(fifo)


async def test_a_large_file_is_read_no_further_than_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "big"
    path.write_bytes(b" " * (MAX_CONFLIST_BYTES + 1))
    assert f"over {MAX_CONFLIST_BYTES} bytes" in await refusal(path)


async def test_a_binary_file_is_no_conflist(tmp_path: Path) -> None:
    path = tmp_path / "binary"
    path.write_bytes(b"\x7fELF\xff\xfe\x00")
    assert "not UTF-8" in await refusal(path)


async def test_a_path_through_a_file_cannot_be_read(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("{}")
    assert "cannot be read" in await refusal(tmp_path / "file" / "below")
