"""kukeond on full disks, for real: its state directory and containerd's root on small tmpfs
mounts of the test's own, filled to the last byte.

A full state directory (cells' files, network records, address leases, container logs,
staged image imports): a running container keeps running and is never blocked on its
output (what it writes meanwhile is dropped, then said in its log with the count); a new
cell waits, saying why; an image import is a 507 naming the file, with nothing staged
left behind; a kukeond restarted on it starts and keeps the cell's address and lease; once
room is freed, everything converges by itself. A full containerd root: an import is a 507
(before, a 422 blaming the archive), containerd's partial content is gone, and the same
import is taken once room is freed. Every mount is unmounted whatever happens.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kukeon.api import Cell, Kind
from kukeon.daemon.app import Daemon
from kukeon.store import Registry
from tests.fixtures.containerd import MAKE_TEST_IMAGE, BusyboxImage, PrivateContainerd
from tests.fixtures.etcd import EtcdServer
from tests.fixtures.fulldisk import containerd_on_tmpfs, fill, kept_full, tmpfs
from tests.fixtures.kukeond import Kukeond, started_kukeond
from tests.integration.controllers.helpers import cell_doc, cell_key, container

pytestmark = pytest.mark.integration

API = "http://kukeond/apis/kukeon.io/v1beta1"
# One numbered line of ~250 bytes every 50 ms, forever: a gap in the numbers is what was
# dropped. Long, so that the log file's last page (a write on a full tmpfs still fills it)
# holds a second of them, not the whole test's.
COUNTER = f"i=0; while :; do i=$((i+1)); echo line $i {'x' * 240}; sleep 0.05; done"
NUMBERED = re.compile(r"^line (\d+) x+$")


def session(k: Kukeond) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(k.config.api_socket)))


def numbers(log: str) -> list[int]:
    return [int(m.group(1)) for line in log.splitlines() if (m := NUMBERED.match(line))]


async def read_log(http: aiohttp.ClientSession, k: Kukeond, cell: str) -> str:
    url = f"{API}/realms/{k.realm}/spaces/s1/stacks/st1/cells/{cell}/log"
    async with http.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.text()


@pytest.fixture
async def on_full_state(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    etcd_server: EtcdServer,
    etcd_key_prefix: str,
    registry: Registry,
    containerd_daemon: PrivateContainerd,
    containerd_test_image: BusyboxImage,
) -> AsyncIterator[Kukeond]:
    """A kukeond whose state directory is a 32 MiB tmpfs (not full yet); an indirect
    parameter gives other tmpfs options (``32m,nr_inodes=N``)."""
    del registry  # set up first, torn down after the realm's deletion (as ``kukeond``'s)
    state = tmp_path / "small-state"
    with tmpfs(state, getattr(request, "param", "32m")):
        async with started_kukeond(
            tmp_path,
            etcd=etcd_server,
            prefix=etcd_key_prefix,
            containerd=containerd_daemon,
            image=containerd_test_image,
            overrides={"state_dir": state},
        ) as running:
            yield running


async def test_a_full_state_directory_refuses_writes_and_converges_once_freed(
    on_full_state: Kukeond,
) -> None:
    k = on_full_state
    state = k.config.state_dir
    await k.hierarchy()
    await k.apply(cell_doc(k, "talker", [container(k, "talker", script=COUNTER)]))
    talker = cell_key(k, "talker")
    running = await k.wait_for(Kind.CELL, talker, state="Ready")
    assert isinstance(running, Cell)
    ipam = state / "network" / "ipam"
    leases = {path: path.read_bytes() for path in ipam.rglob("*") if path.is_file()}
    assert str(running.status.network.ip) in [path.name for path in leases], leases
    async with session(k) as http:
        for _ in range(100):
            if len(numbers(await read_log(http, k, "talker"))) >= 5:
                break
            await asyncio.sleep(0.1)
        async with kept_full(state):
            await asyncio.sleep(0.5)  # the logger meets the full disk
            logged_before = max(numbers(await read_log(http, k, "talker")))

            # An import is refused for what it is, naming the file; nothing staged is left.
            archive = await asyncio.to_thread(k.image.archive.read_bytes)
            async with http.post(f"{API}/realms/{k.realm}/images", data=archive) as response:
                assert response.status == 507, await response.text()
                refused = await response.json()
            assert refused["reason"] == "HostDiskFull"
            assert "No space left on device" in refused["message"]
            assert str(state / "images" / "incoming") in refused["message"]
            assert list((state / "images" / "incoming").iterdir()) == []

            # A new cell waits, saying why (its files refused, or the node's DiskPressure
            # keeping it off this node).
            await k.apply(cell_doc(k, "late", [container(k, "late")]))
            late = await k.wait_for(
                Kind.CELL,
                cell_key(k, "late"),
                until=lambda c: c.status.reason in ("HostDiskFull", "Unschedulable"),
            )
            assert str(late.status.state) == "Pending", late.status

            # kukeond restarted on the full disk starts, and keeps the cell, its address
            # and its lease.
            await k.daemon.stop()
            k.daemon = Daemon(k.config)
            await k.daemon.start()
            assert k.daemon.registry is not None
            k.registry = k.daemon.registry
            await asyncio.sleep(2)
            again = await k.registry.get(Kind.CELL, talker)
            assert isinstance(again, Cell)
            assert str(again.status.state) == "Ready", again.status
            assert again.status.network.ip == running.status.network.ip is not None
            assert str((await k.registry.get(Kind.CELL, cell_key(k, "late"))).status.state) == (
                "Pending"
            )
            kept = {path: path.read_bytes() for path in ipam.rglob("*") if path.is_file()}
            assert kept == leases

        # Once room is freed: the waiting cell starts, the import is taken, and the log
        # says what it dropped; the numbers the container wrote went on meanwhile (a
        # container blocked on its output would have resumed where it stopped, no gap).
        await k.wait_for(Kind.CELL, cell_key(k, "late"), state="Ready", within=90)
        async with http.post(f"{API}/realms/{k.realm}/images", data=archive) as response:
            assert response.status == 201, await response.text()
        log = ""
        for _ in range(100):
            log = await read_log(http, k, "talker")
            if "were not logged: No space left on device" in log:
                break
            await asyncio.sleep(0.1)
        marker = re.search(r"\[kukeon\] (\d+) records \(\d+ bytes\) of output were not logged", log)
        assert marker is not None, log[-2000:]
        assert int(marker.group(1)) > 0
        # Lines are missing (dropped, not held back): the container never waited on its
        # output, and the numbers go on past them.
        seen = set(numbers(log))
        missing = set(range(logged_before, max(seen))) - seen
        assert len(missing) > 10, (logged_before, max(seen), len(missing))


@pytest.fixture
async def on_small_containerd(
    tmp_path: Path,
    etcd_server: EtcdServer,
    etcd_key_prefix: str,
    registry: Registry,
    containerd_test_image: BusyboxImage,
) -> AsyncIterator[tuple[Kukeond, PrivateContainerd]]:
    """A kukeond on a containerd of its own whose root is a 48 MiB tmpfs."""
    del registry  # set up first, torn down after the realm's deletion (as ``kukeond``'s)
    async with (
        containerd_on_tmpfs("48m") as small,
        started_kukeond(
            tmp_path / "k",
            etcd=etcd_server,
            prefix=etcd_key_prefix,
            containerd=small,
            image=containerd_test_image,
        ) as running,
    ):
        yield running, small


def padded_archive(directory: Path, name: str, megabytes: int) -> Path:
    """The test image with ``megabytes`` of random bytes after busybox's (a layer that
    does not compress): MAKE_TEST_IMAGE given another busybox."""
    padded = directory / "padded" / "busybox"
    padded.parent.mkdir(parents=True)
    padded.write_bytes(Path("/bin/busybox").read_bytes() + os.urandom(megabytes << 20))
    padded.chmod(0o755)
    archive = directory / "padded.tar"
    subprocess.run(
        [str(MAKE_TEST_IMAGE), str(archive), name],
        check=True,
        capture_output=True,
        env={**os.environ, "BUSYBOX": str(padded)},
    )
    return archive


async def test_an_import_into_a_full_containerd_is_a_507_and_is_taken_once_freed(
    on_small_containerd: tuple[Kukeond, PrivateContainerd], tmp_path: Path
) -> None:
    k, small = on_small_containerd
    await k.hierarchy()
    name = "kukeon.io/test/padded:1"
    archive = await asyncio.to_thread(padded_archive, tmp_path, name, 8)
    body = await asyncio.to_thread(archive.read_bytes)
    ingest = small.root / "io.containerd.content.v1.content" / "ingest"
    images_url = f"{API}/realms/{k.realm}/images"
    async with session(k) as http:
        filler = await asyncio.to_thread(fill, small.root, leave=2 << 20)
        try:
            async with http.post(images_url, data=body) as response:
                assert response.status == 507, await response.text()
                refused = await response.json()
            assert refused["reason"] == "HostDiskFull"
            assert "containerd's disk is full" in refused["message"]
            assert "no space left on device" in refused["message"]
            # containerd took back what it had written of the archive
            assert not ingest.exists() or list(ingest.iterdir()) == []
            async with http.get(images_url) as response:
                listed = [image["name"] for image in (await response.json())["items"]]
            assert name not in listed
        finally:
            filler.unlink()
        async with http.post(images_url, data=body) as response:
            assert response.status == 201, await response.text()
        async with http.get(images_url) as response:
            listed = [image["name"] for image in (await response.json())["items"]]
        assert name in listed


async def session_frames(
    http: aiohttp.ClientSession, url: str, params: list[tuple[str, str]]
) -> tuple[bytes, dict[str, Any]]:
    """An exec or cp session's stdout and its last status frame."""
    out, status = b"", {}
    async with http.ws_connect(url, params=params) as socket:
        async for message in socket:
            if message.type != aiohttp.WSMsgType.BINARY:
                break
            channel, payload = message.data[:1], message.data[1:]
            if channel == b"\x01":
                out += payload
            elif channel == b"\x03":
                status = json.loads(payload)
    return out, status


@pytest.mark.parametrize("on_full_state", ["32m,nr_inodes=1024"], indirect=True)
async def test_a_state_directory_out_of_inodes_exec_cp_and_a_restart(
    on_full_state: Kukeond,
) -> None:
    k = on_full_state
    state = k.config.state_dir
    await k.hierarchy()
    ticker = "trap 'exit 0' TERM; while :; do echo tick; sleep 0.1; done"
    await k.apply(cell_doc(k, "box", [container(k, "box", script=ticker)]))
    key = cell_key(k, "box")
    await k.wait_for(Kind.CELL, key, state="Ready")
    url = f"{API}/realms/{k.realm}/spaces/s1/stacks/st1/cells/box"
    exec_params = [("command", "echo"), ("command", "hi")]
    cp_params = [("path", "/etc/passwd"), ("mode", "read")]
    taken = state / "taken"
    await asyncio.to_thread(taken.mkdir)
    async with session(k) as http:
        try:
            count = 0
            while True:  # every inode left
                try:
                    (taken / str(count)).touch()
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
                count += 1
            # The sessions' FIFO directories cannot be made: each says why as its last
            # frame (before: exec's socket ended and kukectl, asking again why, was told
            # "exec is a WebSocket"; cp's ended without a word).
            for where, params in (("exec", exec_params), ("cp", cp_params)):
                out, status = await session_frames(http, f"{url}/{where}", params)
                assert out == b"", where
                assert "No space left on device" in status.get("error", ""), (where, status)
                assert str(state / "exec") in status["error"], status

            # A restart: the new instance's log file cannot be made, the task starts all
            # the same (before: the restart's task was never made, and the next pass took
            # the container for lost, TaskLost, not started again under restartPolicy
            # never); its log says why it has no file.
            before = await k.registry.get(Kind.CELL, key)
            assert isinstance(before, Cell)
            first = before.status.containers[0].pid
            annotations = dict(before.metadata.annotations or {})
            annotations["kukeon.io/restartedAt"] = "2026-01-01T00:00:00Z"
            before.metadata.annotations = annotations
            changed = await k.registry.update(before)

            def restarted(cell: object) -> bool:
                assert isinstance(cell, Cell)
                said = cell.status.containers
                return (
                    cell.status.observed_generation == changed.metadata.generation
                    and str(cell.status.state) == "Ready"
                    and bool(said)
                    and said[0].pid not in (None, first)
                )

            await k.wait_for(Kind.CELL, key, until=restarted, within=60)
            async with http.get(f"{url}/log") as response:
                assert response.status == 400
                assert "the node's disk has no room for it" in (await response.json())["message"]
        finally:
            await asyncio.to_thread(shutil.rmtree, taken)
        log = ""
        for _ in range(100):
            async with http.get(f"{url}/log") as response:
                log = await response.text() if response.status == 200 else ""
            if "tick" in log:
                break
            await asyncio.sleep(0.1)
        assert re.match(
            r"\[kukeon\] \d+ records \(\d+ bytes\) of output were not logged: "
            r"No space left on device\ntick\n",
            log,
        ), log[:300]
        assert str((await k.registry.get(Kind.CELL, key)).status.state) == "Ready"
        out, status = await session_frames(http, f"{url}/exec", exec_params)
        assert (out, status) == (b"hi\n", {"exitCode": 0})
        out, status = await session_frames(http, f"{url}/cp", cp_params)
        assert status == {"exitCode": 0}, status
