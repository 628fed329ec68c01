"""The cp and portforward routes of a real kukeond, on busybox cells, through its unix socket:
tar streams both ways (a directory, modes kept), a path that does not exist, an image
without tar, and TCP through the cell's address (an httpd, an echo with half-close and
more data than any buffer)."""

from __future__ import annotations

import asyncio
import io
import json
import os
import tarfile
from typing import Any

import aiohttp
import pytest

from kukeon.api import Kind
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import SLEEPER, cell_doc, cell_key, exec_in

pytestmark = pytest.mark.integration

API = "http://kukeond/apis/kukeon.io/v1beta1"


def session(k: Kukeond) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(k.config.api_socket)))


def cell_url(k: Kukeond, name: str) -> str:
    return f"{API}/realms/{k.realm}/spaces/s1/stacks/st1/cells/{name}"


async def _cell(k: Kukeond, name: str, script: list[str] | None = None) -> None:
    await k.apply(
        cell_doc(
            k,
            name,
            [{"id": "main", "image": k.image.name, "command": "sh", "args": script or SLEEPER}],
        )
    )
    await k.wait_for(Kind.CELL, cell_key(k, name), state="Ready")


async def _cp(
    http: aiohttp.ClientSession, url: str, params: dict[str, str], upload: bytes | None = None
) -> tuple[bytes, bytes, dict[str, Any]]:
    out, err = bytearray(), bytearray()
    status: dict[str, Any] = {}
    async with http.ws_connect(f"{url}/cp", params=params) as socket:
        if upload is not None:
            for start in range(0, len(upload), 50_000):
                await socket.send_bytes(b"\x00" + upload[start : start + 50_000])
            await socket.send_bytes(b"\x00")
        async for message in socket:
            if message.type != aiohttp.WSMsgType.BINARY:
                break
            channel, payload = message.data[:1], message.data[1:]
            if channel == b"\x01":
                out += payload
            elif channel == b"\x02":
                err += payload
            elif channel == b"\x03":
                status = json.loads(payload)
    return bytes(out), bytes(err), status


def _directory_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, mode, data in (
            ("site", 0o750, None),
            ("site/index.html", 0o640, b"<h1>hi</h1>\n"),
            ("site/run.sh", 0o755, b"#!/bin/sh\necho run\n"),
            ("site/big", 0o600, os.urandom(300_000)),
        ):
            info = tarfile.TarInfo(name)
            info.mode = mode
            if data is None:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _contents(data: bytes) -> dict[str, tuple[int, bytes | None]]:
    """Each member's name, mode and bytes (None for a directory)."""
    found: dict[str, tuple[int, bytes | None]] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for member in archive.getmembers():
            reader = archive.extractfile(member) if member.isreg() else None
            found[member.name.rstrip("/")] = (
                member.mode & 0o7777,
                reader.read() if reader is not None else None,
            )
    return found


async def test_cp_writes_and_reads_a_directory_with_its_modes(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await _cell(k, "box")
    url = cell_url(k, "box")
    upload = _directory_tar()
    async with session(k) as http:
        _, err, status = await _cp(http, url, {"path": "/tmp/site", "mode": "write"}, upload)
        assert status == {"exitCode": 0}, err
        cid = "s1_st1_box_main"
        code, listing = await exec_in(
            k, cid, "sh", "-c", "stat -c '%a %u %n' /tmp/site /tmp/site/*"
        )
        assert code == 0, listing
        assert sorted(listing.splitlines()) == sorted(
            [
                "750 0 /tmp/site",
                "600 0 /tmp/site/big",
                "640 0 /tmp/site/index.html",
                "755 0 /tmp/site/run.sh",
            ]
        )

        out, err, status = await _cp(http, url, {"path": "/tmp/site", "mode": "read"})
        assert status == {"exitCode": 0}, err
        assert _contents(out) == _contents(upload)

        # One file, by a relative path (the container's working directory is /).
        out, _, status = await _cp(http, url, {"path": "etc/passwd", "mode": "read"})
        assert status == {"exitCode": 0}
        with tarfile.open(fileobj=io.BytesIO(out)) as archive:
            assert archive.getnames() == ["passwd"]


def _pax_file(name: str, headers: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        member = tarfile.TarInfo(name)
        member.size, member.pax_headers = 4, headers
        archive.addfile(member, io.BytesIO(b"data"))
    return buffer.getvalue()


async def test_cp_failures_are_explained(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await _cell(k, "box")
    url = cell_url(k, "box")
    async with session(k) as http:
        _, err, status = await _cp(http, url, {"path": "/nope", "mode": "read"})
        assert status["exitCode"] != 0
        assert b"nope" in err
        assert b"No such file" in err

        _, err, status = await _cp(http, url, {"path": "/nope/x", "mode": "write"}, b"\0" * 1024)
        assert status["exitCode"] != 0
        assert b"nope" in err

        # A pax header value tarfile cannot convert (its ValueError, OverflowError): said,
        # nothing staged left (the copy closed with no status and no word).
        for headers in ({"mtime": "nan"}, {"mtime": "1e400"}):
            upload = _pax_file("sent", headers)
            _, _, status = await _cp(http, url, {"path": "/tmp/in", "mode": "write"}, upload)
            assert "not a tar archive kukeond can read" in status.get("error", ""), status
        assert await exec_in(k, "s1_st1_box_main", "ls", "-A", "/tmp") == (0, "")

        for params, code, words in (
            ({"path": "/", "mode": "read"}, 400, "names no file"),
            ({"path": "/etc", "mode": "copy"}, 400, "not read or write"),
            ({"path": "/etc", "mode": "read", "container": "x"}, 404, "no container 'x'"),
            ({"path": "/etc", "mode": "read"}, 400, "is a WebSocket"),  # no upgrade asked
        ):
            async with http.get(f"{url}/cp", params=params) as response:
                assert response.status == code
                assert words in (await response.json())["message"]

        # An image without tar (the busybox applet removed): said, exit code 127.
        code, _ = await exec_in(k, "s1_st1_box_main", "rm", "/bin/tar")
        assert code == 0
        _, _, status = await _cp(http, url, {"path": "/etc/passwd", "mode": "read"})
        assert status["exitCode"] == 127
        assert "has no tar" in status["error"]


HTTPD = [
    "-c",
    "mkdir -p /www && echo hello-from-cell > /www/index.html && exec httpd -f -p 8080 -h /www",
]
ECHO = ["-c", "exec nc -ll -p 9000 -e cat"]


async def _forward(
    http: aiohttp.ClientSession, url: str, port: int, data: bytes, *, eof: bool = True
) -> tuple[bytes, bool, dict[str, Any]]:
    """Send ``data`` (then EOF) to the cell's port; what came back, whether the other side
    ended (an empty channel 1) and the error status if any."""
    received = bytearray()
    ended = False
    status: dict[str, Any] = {}
    async with http.ws_connect(f"{url}/portforward", params={"port": str(port)}) as socket:

        async def send() -> None:
            for start in range(0, len(data), 32_768):
                await socket.send_bytes(b"\x00" + data[start : start + 32_768])
            if eof:
                await socket.send_bytes(b"\x00")

        sending = asyncio.ensure_future(send())
        async for message in socket:
            if message.type != aiohttp.WSMsgType.BINARY:
                break
            channel, payload = message.data[:1], message.data[1:]
            if channel == b"\x01":
                if not payload:
                    ended = True
                    break
                received += payload
            elif channel == b"\x03":
                status = json.loads(payload)
        await sending
    return bytes(received), ended, status


async def test_portforward_reaches_the_cells_ports_and_nothing_else(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await _cell(k, "web", HTTPD)
    await _cell(k, "echo", ECHO)
    await asyncio.sleep(0.5)  # the servers listen
    async with session(k) as http:
        answer, ended, _ = await _forward(
            http, cell_url(k, "web"), 8080, b"GET /index.html HTTP/1.0\r\n\r\n"
        )
        assert ended
        assert answer.startswith(b"HTTP/1.")
        assert answer.endswith(b"hello-from-cell\n")

        # Half-close: the echo answers everything sent before the client's end, then ends.
        payload = os.urandom(3 * 1024 * 1024)
        echoed, ended, _ = await asyncio.wait_for(
            _forward(http, cell_url(k, "echo"), 9000, payload), 60
        )
        assert ended
        assert echoed == payload

        _, _, status = await _forward(http, cell_url(k, "web"), 8081, b"")
        assert "cannot connect to port 8081 of cell web" in status["error"]
        assert "refused" in status["error"].lower()

        for params, code in (({"port": "0"}, 400), ({"port": "70000"}, 400), ({}, 400)):
            async with http.get(f"{cell_url(k, 'web')}/portforward", params=params) as response:
                assert response.status == code
