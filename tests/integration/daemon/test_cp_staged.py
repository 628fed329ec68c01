"""A copy into a container is staged beside its destination and put in place only once
whole: an upload cut mid-way (the client gone after half the stream) leaves the file that
was there as it was and no staged file; a complete one replaces it (a long name, a link and
a hard link among its members, a directory merged into an existing one)."""

from __future__ import annotations

import asyncio
import io
import os
import tarfile

import pytest

from kukeon.daemon.cpstage import STAGE_MARK
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import exec_in
from tests.integration.daemon.test_transfer_routes import _cell, _cp, cell_url, session

pytestmark = pytest.mark.integration

CID = "s1_st1_box_main"
LONG = "n" * 150


def _archive(*members: tuple[str, bytes | None, str | None]) -> bytes:
    """``(name, data, link)``: a file (data), a directory (neither), a symbolic link (link)
    or, with both, a hard link (data ignored)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, data, link in members:
            info = tarfile.TarInfo(name)
            info.mode = 0o640
            if link is not None:
                info.type = tarfile.LNKTYPE if data is not None else tarfile.SYMTYPE
                info.linkname = link
                archive.addfile(info)
            elif data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


async def _shell(k: Kukeond, script: str) -> str:
    code, out = await exec_in(k, CID, "sh", "-c", script)
    assert code == 0, out
    return out


async def _no_cp_running(k: Kukeond) -> None:
    """Until kukeond has ended its cp process (and removed what it staged before that)."""
    tasks = k.containerd.tasks(k.namespace)
    async with asyncio.timeout(30):
        while any(e.startswith("cp-") for e in await tasks.exec_ids(CID)):  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def test_a_cut_upload_leaves_the_file_as_it_was(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await _cell(k, "box")
    await _shell(k, "printf old > /tmp/f && mkdir /tmp/d && printf keep > /tmp/d/keep")
    upload = _archive(("f", os.urandom(4_000_000), None))
    async with (
        session(k) as http,
        http.ws_connect(
            f"{cell_url(k, 'box')}/cp", params={"path": "/tmp/f", "mode": "write"}
        ) as socket,
    ):
        for start in range(0, len(upload) // 2, 50_000):
            await socket.send_bytes(b"\x00" + upload[start : start + 50_000])
        # Until tar has written some of it (wherever it writes it), then the client goes.
        async with asyncio.timeout(20):
            written = "cat /tmp/f /tmp/.f* 2>/dev/null | wc -c"
            while int(await _shell(k, written)) < 100_000:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
    await _no_cp_running(k)
    assert await _shell(k, "wc -c < /tmp/f; cat /tmp/f") == "3\nold"
    assert STAGE_MARK not in await _shell(k, "ls -aR /tmp")


async def test_a_whole_upload_replaces_the_file_and_merges_directories(
    kukeond: Kukeond,
) -> None:
    k = kukeond
    await k.hierarchy()
    await _cell(k, "box")
    await _shell(k, "printf old > /tmp/f && mkdir /tmp/d && printf keep > /tmp/d/keep")
    url = cell_url(k, "box")
    async with session(k) as http:
        _, err, status = await _cp(
            http, url, {"path": "/tmp/f", "mode": "write"}, _archive(("f", b"new", None))
        )
        assert status == {"exitCode": 0}, err
        members = _archive(
            ("d", None, None),
            (f"d/{LONG}", b"long", None),
            ("d/sub", None, None),
            ("d/sub/page", b"page", None),
            ("d/same", b"", f"d/{LONG}"),  # a hard link to a member of the upload
            ("d/to-page", None, "sub/page"),
        )
        _, err, status = await _cp(http, url, {"path": "/tmp/d", "mode": "write"}, members)
        assert status == {"exitCode": 0}, err
    await _no_cp_running(k)
    assert await _shell(k, "cat /tmp/f") == "new"
    assert await _shell(k, "stat -c '%a %h' /tmp/f") == "640 1\n"
    listing = await _shell(
        k, "cd /tmp/d && ls -a && cat keep to-page same && echo && stat -c %h same"
    )
    names = [".", "..", "keep", LONG, "same", "sub", "to-page"]
    assert listing.split() == [*names, "keeppagelong", "2"]
    # The directories' times are the archive's (0), set again after the renames into them.
    assert await _shell(k, "stat -c %Y /tmp/d /tmp/d/sub") == "0\n0\n"
    assert STAGE_MARK not in await _shell(k, "ls -aR /tmp")


async def test_a_refused_stream_stages_nothing(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await _cell(k, "box")
    await _shell(k, "printf old > /tmp/f")
    async with session(k) as http:
        _, _, status = await _cp(
            http,
            cell_url(k, "box"),
            {"path": "/tmp/f", "mode": "write"},
            _archive(("f", b"new", None), ("../escape", b"x", None)),
        )
    assert "climbs out of the directory" in status["error"]
    await _no_cp_running(k)
    assert await _shell(k, "cat /tmp/f") == "old"
    assert "escape" not in await _shell(k, "ls -a /")
    assert STAGE_MARK not in await _shell(k, "ls -a /tmp")


async def test_a_chain_of_long_names_is_refused_and_stages_nothing(kukeond: Kukeond) -> None:
    """kukeond's tarfile reads a long name's member by recursion: 3,000 empty long names in
    a row (1.5 MB) were a RecursionError in kukeond: the socket closed with no status."""
    k = kukeond
    await k.hierarchy()
    await _cell(k, "box")
    await _shell(k, "printf old > /tmp/f")
    header = tarfile.TarInfo("././@LongLink")
    header.type, header.size = tarfile.GNUTYPE_LONGNAME, 0
    upload = header.tobuf(tarfile.GNU_FORMAT) * 3000 + _archive(("f", b"new", None))
    async with session(k) as http:
        _, _, status = await _cp(
            http, cell_url(k, "box"), {"path": "/tmp/f", "mode": "write"}, upload
        )
    assert "more than 8 long names or pax headers in a row" in status["error"]
    await _no_cp_running(k)
    assert await _shell(k, "cat /tmp/f") == "old"
    assert STAGE_MARK not in await _shell(k, "ls -a /tmp")


async def test_a_member_named_with_a_nul_byte_is_refused(kukeond: Kukeond) -> None:
    """A pax path may hold a NUL byte: kukeond's removal of its staged name raised a
    ValueError its cp did not answer (no status, an unhandled error in its log)."""
    k = kukeond
    await k.hierarchy()
    await _cell(k, "box")
    await _shell(k, "mkdir /tmp/t")
    member = tarfile.TarInfo("x")
    member.pax_headers, member.size = {"path": "a\0b"}, 3
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        archive.addfile(member, io.BytesIO(b"new"))
    async with session(k) as http:
        _, _, status = await _cp(
            http, cell_url(k, "box"), {"path": "/tmp/t", "mode": "write"}, buffer.getvalue()
        )
    assert "has a NUL byte in its name" in status["error"]
    await _no_cp_running(k)
    assert await _shell(k, "ls -A /tmp/t") == ""
