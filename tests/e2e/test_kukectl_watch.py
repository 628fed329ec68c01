"""`kukectl get -w` outlives its stream: API server restarts, and a 410 after compaction.

kukectl runs as a subprocess, as a user runs it. The API server and the registry run in
the test's event loop over an etcd of the test's own (it compacts etcd's history, which
must not disturb other tests), so the server can be stopped and started again on the same
socket while the watch runs.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kukeon.api import Kind, parse_resource
from kukeon.apiserver import ApiServerRunner, ApiSettings, serve_api
from kukeon.store import EmbeddedEtcd, Registry
from tests.fixtures.services import require_binary

pytestmark = pytest.mark.e2e

KUKECTL = str(Path(sys.executable).with_name("kukectl"))
_SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None


class RestartableApi:
    def __init__(self, registry: Registry, directory: Path) -> None:
        self.registry = registry
        self.socket = directory / "kukeond.sock"
        self.runner: ApiServerRunner | None = None

    async def start(self) -> None:
        settings = ApiSettings(socket_path=self.socket, socket_group=None, bookmark_interval=0.5)
        self.runner = await serve_api(settings, self.registry)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.stop()
            self.runner = None


@pytest.fixture
async def api() -> AsyncIterator[RestartableApi]:
    binary = require_binary("etcd", "etcd-server")
    root = Path(tempfile.mkdtemp(prefix="kukectl-watch-", dir=_SCRATCH))
    try:
        async with EmbeddedEtcd(data_dir=root / "etcd", binary=binary) as etcd:
            async with await Registry.connect(etcd.config()) as registry:
                server = RestartableApi(registry, root)
                await server.start()
                try:
                    yield server
                finally:
                    await server.stop()
            await etcd.kill()
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def create_realm(registry: Registry, name: str) -> None:
    await registry.create(
        parse_resource(
            {"apiVersion": "kukeon.io/v1beta1", "kind": "Realm", "metadata": {"name": name}}
        )
    )


async def next_line(stream: asyncio.StreamReader, within: float = 20.0) -> str:
    line = await asyncio.wait_for(stream.readline(), within)
    assert line, "kukectl's output ended"
    return line.decode().rstrip("\n")


async def test_watch_survives_server_restart_and_compaction(api: RestartableApi) -> None:
    await create_realm(api.registry, "a")
    env = {**os.environ, "KUKEON_SERVER": f"unix://{api.socket}"}
    watcher = await asyncio.create_subprocess_exec(
        KUKECTL,
        "get",
        "realms",
        "-w",
        "-o",
        "name",
        # Longer than the steps below (4.6-4.8 s at load 5.5; were they slower, the watch
        # would end first and the test fail), short as the test then waits for its end.
        "--watch-timeout",
        "12s",
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert watcher.stdout is not None
    assert watcher.stderr is not None
    try:
        assert await next_line(watcher.stdout) == "realm/a"
        await asyncio.sleep(1.0)  # a bookmark or two: the revision to resume from moves on

        # 1. the server goes away; what happens meanwhile arrives once it is back
        await api.stop()
        await create_realm(api.registry, "b")
        await asyncio.sleep(1.0)  # kukectl retries against a missing socket
        await api.start()
        assert await next_line(watcher.stdout) == "realm/b"

        # 2. etcd compacts past the revision kukectl holds: 410, relist, and go on
        await asyncio.sleep(1.0)
        await api.stop()
        await create_realm(api.registry, "c")
        await api.registry.delete(Kind.REALM, ("a",))
        revision = await api.registry.current_revision()
        await api.registry.client.compact(revision, physical=True)
        await api.start()
        seen = {await next_line(watcher.stdout), await next_line(watcher.stdout)}
        assert seen == {"realm/a", "realm/c"}  # a: its deletion, c: new

        # nothing is repeated: b was already shown
        await create_realm(api.registry, "d")
        assert await next_line(watcher.stdout) == "realm/d"

        # --watch-timeout still ends the watch, with success
        code = await asyncio.wait_for(watcher.wait(), 60)
        rest = (await watcher.stdout.read()).decode()
        errors = (await watcher.stderr.read()).decode()
        assert code == 0, errors
        assert rest == "", rest
        assert "Traceback" not in errors
    finally:
        if watcher.returncode is None:
            watcher.kill()
            await watcher.wait()
