"""tty.prompt, tty.onInit and tty.logFile of an attachable busybox container, for real.

The container runs under kukeond's /bin/sh wrapper: its prompt shows on attach, its
`runOn: start` stage runs at every start (a task restart by the restart policy, then
`kukectl restart`), its `runOn: create` stage once per container spec, and the wrapper's
log file is read inside the container with exec. An image without /bin/sh is refused with
a message naming the cell, the container and the field.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import platform
import shutil
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kukeon.api import Cell, Kind
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import cell_doc, cell_key, exec_in, get_cell, update_cell
from tests.integration.daemon.test_attach import Attached, cell_url, session

pytestmark = pytest.mark.integration

LOG_FILE = "/var/log/kukeon/wrapper.log"
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}


def tty_container(k: Kukeond, data: Path, **fields: Any) -> dict[str, Any]:
    return {
        "id": "sh",
        "image": k.image.name,
        "command": "sh",
        "attachable": True,
        "restartPolicy": "always",
        "restartBackoffSeconds": 1,
        "volumes": [{"source": str(data), "target": "/data"}],
        "tty": {
            # kukeon's upstream spelling, one quoted shell word
            "prompt": '"tty-prompt:\\\\w> "',
            "onInit": [
                {"script": "echo create >> /data/trace", "runOn": "create"},
                {"script": "echo start >> /data/trace; export FROM_INIT='set by onInit'"},
            ],
            "logFile": LOG_FILE,
            "logLevel": "debug",
        },
        **fields,
    }


def trace(data: Path) -> list[str]:
    path = data / "trace"
    return path.read_text().split() if path.exists() else []


async def wait_trace(data: Path, expected: list[str], within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while trace(data) != expected:
        assert asyncio.get_running_loop().time() < deadline, trace(data)
        await asyncio.sleep(0.2)


async def wrapper_log(k: Kukeond, cid: str) -> str:
    code, output = await exec_in(k, cid, "cat", LOG_FILE)
    assert code == 0, output
    return output


async def exit_shell_and_wait_restart(k: Kukeond, cell: str) -> None:
    """Type `exit 0` in the cell's shell; its restart policy starts it again (once)."""
    async with session(k) as http, http.ws_connect(f"{cell_url(k, cell)}/attach") as socket:
        term = Attached(socket)
        await term.send("exit 0\n")
        assert await term.wait_exit() == {"exitCode": 0}
    await k.wait_for(
        Kind.CELL,
        cell_key(k, cell),
        until=lambda c: (
            isinstance(c, Cell)
            and str(c.status.state) == "Ready"
            and c.status.containers[0].restart_count == 1
        ),
    )


async def test_prompt_on_init_stages_and_log_file(kukeond: Kukeond, tmp_path: Path) -> None:
    k = kukeond
    data = tmp_path / "data"
    data.mkdir()
    await k.hierarchy()
    key = cell_key(k, "tty")
    await k.apply(cell_doc(k, "tty", [tty_container(k, data)]))
    await k.wait_for(Kind.CELL, key, state="Ready")
    await wait_trace(data, ["create", "start"])
    cid = (await get_cell(k, key)).status.containers[0].name
    assert cid is not None

    url = cell_url(k, "tty")
    async with session(k) as http, http.ws_connect(f"{url}/attach") as socket:
        term = Attached(socket)
        await term.send("\n")
        await term.expect("tty-prompt:/> ")  # busybox sh shows PS1, \w expanded
        await term.send('cd /data; echo "$FROM_INIT-$((40+2))"\n')
        await term.expect("set by onInit-42")
        await term.expect("tty-prompt:/data> ")

    log = await wrapper_log(k, cid)
    assert "onInit[0] (runOn: create) exited 0 in " in log
    assert "onInit[1] (runOn: start) exited 0 in " in log
    assert "onInit[1] script: echo start >> /data/trace" in log  # debug level
    assert "exec: sh" in log

    # the task exits; the restart policy starts it again: start stages only
    await exit_shell_and_wait_restart(k, "tty")
    await wait_trace(data, ["create", "start", "start"])
    log = await wrapper_log(k, cid)
    assert "onInit[0] (runOn: create) skipped" in log

    # kukectl restart: a fresh container of the same spec; still no create stage
    cell = await get_cell(k, key)
    pid = cell.status.containers[0].pid
    moment = datetime.now(UTC).isoformat()
    await update_cell(
        k,
        key,
        metadata={"annotations": {**cell.metadata.annotations, "kukeon.io/restartedAt": moment}},
    )
    await k.wait_for(
        Kind.CELL,
        key,
        until=lambda c: (
            isinstance(c, Cell)
            and str(c.status.state) == "Ready"
            and c.status.containers[0].pid not in (None, pid)
        ),
    )
    await wait_trace(data, ["create", "start", "start", "start"])
    log = await wrapper_log(k, cid)  # a new root filesystem: this start's lines only
    assert "onInit[0] (runOn: create) skipped" in log
    assert "onInit[1] (runOn: start) exited 0" in log

    # a new spec re-creates the container: the create stage runs again
    cell = await get_cell(k, key)
    changed = [c.model_copy(update={"env": ["CHANGED=1"]}) for c in cell.spec.containers]
    await update_cell(k, key, spec={"containers": changed})
    await wait_trace(data, ["create", "start", "start", "start", "create", "start"])
    await k.wait_for(Kind.CELL, key, state="Ready")


async def test_a_failing_stage_fails_the_start(kukeond: Kukeond, tmp_path: Path) -> None:
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "bad-init")
    container = {
        "id": "sh",
        "image": k.image.name,
        "command": "sh",
        "attachable": True,
        "tty": {"onInit": [{"script": "echo about to fail; exit 9"}, {"script": "echo never"}]},
    }
    await k.apply(cell_doc(k, "bad-init", [container]))
    failed = await k.wait_for(
        Kind.CELL,
        key,
        until=lambda c: (
            isinstance(c, Cell)
            and bool(c.status.containers)
            and c.status.containers[0].exit_code == 9
        ),
    )
    assert isinstance(failed, Cell)
    assert str(failed.status.containers[0].state) == "Failed"
    async with session(k) as http, http.get(f"{cell_url(k, 'bad-init')}/log") as response:
        output = await response.text()
    assert "about to fail" in output
    assert "tty.onInit[0] ended the wrapper with status 9" in output
    assert "never" not in output


def _image_without_a_shell(directory: Path, name: str) -> Path:
    """An OCI archive whose only file is /app (a copy of busybox): no /bin/sh."""
    busybox = shutil.which("busybox")
    assert busybox is not None
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        tar.add(busybox, arcname="app")
    layer_tar = layer.getvalue()
    layer_gz = gzip.compress(layer_tar, mtime=0)
    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest

    config = json.dumps(
        {
            "architecture": ARCHITECTURES.get(platform.machine(), platform.machine()),
            "os": "linux",
            "config": {"Cmd": ["/app"]},
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()],
            },
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": blob(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": blob(layer_gz),
                    "size": len(layer_gz),
                }
            ],
        }
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": blob(manifest),
                    "size": len(manifest),
                    "annotations": {"io.containerd.image.name": name},
                }
            ],
        }
    ).encode()
    archive = directory / "no-shell.tar"
    with tarfile.open(archive, mode="w") as tar:

        def add(path: str, data: bytes) -> None:
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        add("index.json", index)
        for digest, data in blobs.items():
            add(f"blobs/sha256/{digest.removeprefix('sha256:')}", data)
    return archive


async def test_an_image_without_bin_sh_is_refused(kukeond: Kukeond, tmp_path: Path) -> None:
    k = kukeond
    await k.hierarchy()
    name = "kukeon.io/test/no-shell:latest"
    controllers = k.daemon.controllers
    assert controllers is not None
    await controllers.images.import_archive(
        namespace=k.namespace, path=_image_without_a_shell(tmp_path, name)
    )
    key = cell_key(k, "no-sh")
    container = {
        "id": "app",
        "image": name,
        "attachable": True,
        "tty": {"prompt": "$ ", "onInit": [{"script": "true"}]},
    }
    await k.apply(cell_doc(k, "no-sh", [container]))
    failed = await k.wait_for(Kind.CELL, key, state="Failed")
    assert isinstance(failed, Cell)
    assert failed.status.reason == "InvalidSpec"
    message = failed.status.message or ""
    assert message.startswith("cell 'no-sh' container 'app': tty.onInit: "), message
    assert "no /bin/sh" in message
    assert not [c for c in await k.containerd.containers(k.namespace).list() if "no-sh" in c.id]


async def test_read_only_root_and_another_user(kukeond: Kukeond) -> None:
    """The marker and a log under /run/kukeon/tty work for uid 1000 on a read-only root."""
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "ro")
    container = {
        "id": "sh",
        "image": k.image.name,
        "command": "sh",
        "attachable": True,
        "user": "1000:1000",
        "readOnlyRootFilesystem": True,
        "restartPolicy": "always",
        "restartBackoffSeconds": 1,
        "tty": {
            "onInit": [
                {"script": "echo created-as-$(id -u)", "runOn": "create"},
                {"script": "echo started"},
            ],
            "logFile": "/run/kukeon/tty/wrapper.log",
        },
    }
    await k.apply(cell_doc(k, "ro", [container]))
    await k.wait_for(Kind.CELL, key, state="Ready")
    state = k.config.state_dir.joinpath("cells", *key, "tty", "sh", "run")

    async def host_log() -> str:
        path = state / "wrapper.log"
        return path.read_text() if path.exists() else ""

    deadline = asyncio.get_running_loop().time() + 20
    while "exec: sh" not in await host_log():
        assert asyncio.get_running_loop().time() < deadline, await host_log()
        await asyncio.sleep(0.2)
    assert (state / "onInit-create.done").exists()
    assert state.stat().st_uid == 1000

    await exit_shell_and_wait_restart(k, "ro")
    deadline = asyncio.get_running_loop().time() + 20
    while "(runOn: create) skipped" not in await host_log():
        assert asyncio.get_running_loop().time() < deadline, await host_log()
        await asyncio.sleep(0.2)
    async with session(k) as http:
        async with http.get(f"{cell_url(k, 'ro')}/log", params={"previous": "true"}) as response:
            before = await response.text()
        # The wrapper writes "skipped" before it runs the next stage, and what the stage
        # echoes reaches the log through the terminal and its logger later still.
        deadline = asyncio.get_running_loop().time() + 20
        while True:
            async with http.get(f"{cell_url(k, 'ro')}/log") as response:
                after = await response.text()
            if "started" in after or asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.sleep(0.2)
    # The first instance ran the create stage; the restarted one skipped it.
    assert before.count("created-as-1000") == 1
    assert before.count("started") == 1
    assert after.count("created-as-1000") == 0
    assert after.count("started") == 1
