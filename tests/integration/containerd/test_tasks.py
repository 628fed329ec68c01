"""Task details: TTY over FIFOs, deletes that are idempotent, kukeon-labelled leftovers."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from kukeon.runtime.containerd import (
    AlreadyExistsError,
    ContainerNotFoundError,
    FifoIO,
    TaskNotFoundError,
    TaskStatus,
    kukeon_labels,
    list_kukeon_objects,
)
from tests.integration.containerd.helpers import Runner

pytestmark = pytest.mark.integration


async def _read_until(fd: int, needle: bytes, *, within: float) -> bytes:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    seen = b""
    while needle not in seen:
        if loop.time() > deadline:
            raise AssertionError(f"{needle!r} not read within {within}s; got {seen!r}")
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            chunk = b""
        if chunk:
            seen += chunk
        else:
            await asyncio.sleep(0.05)
    return seen


async def test_attachable_container_talks_through_a_tty(runner: Runner) -> None:
    client, namespace = runner.client, runner.namespace
    container_id = "tty-shell"
    spec = await runner.spec({"command": "sh"}, container_id=container_id, terminal=True)
    await client.containers(namespace).create(container_id, image=runner.image, spec=spec)
    fifos = FifoIO(runner.log_dir / "fifos" / container_id, terminal=True)
    try:
        io = await fifos.open()
        assert io.terminal
        assert io.stderr == ""
        tasks = client.tasks(namespace)
        await tasks.create(container_id, io=io)
        waiting = asyncio.ensure_future(tasks.wait(container_id))
        await tasks.start(container_id)
        assert fifos.stdin_fd is not None
        assert fifos.stdout_fd is not None
        os.write(fifos.stdin_fd, b"tty -s && echo on-a-tty; exit 7\n")
        output = await _read_until(fifos.stdout_fd, b"on-a-tty\r\n", within=20)
        assert b"on-a-tty" in output
        status = await asyncio.wait_for(waiting, 20)
        assert status.code == 7
        await tasks.delete(container_id)
    finally:
        fifos.close()


async def test_deletes_are_idempotent_and_duplicates_are_refused(runner: Runner) -> None:
    client, namespace = runner.client, runner.namespace
    container_id, _log = await runner.create({"command": "sleep", "args": ["300"]}, name="dup")
    spec = (await client.containers(namespace).get(container_id)).spec
    with pytest.raises(AlreadyExistsError) as raised:
        await client.containers(namespace).create(container_id, image=runner.image, spec=spec)
    assert container_id in str(raised.value)

    tasks = client.tasks(namespace)
    assert (await tasks.get(container_id)).status is TaskStatus.CREATED
    await tasks.kill(container_id, signal.SIGKILL)
    assert await tasks.delete(container_id) is not None
    assert await tasks.delete(container_id) is None
    with pytest.raises(TaskNotFoundError):
        await tasks.get(container_id)

    containers = client.containers(namespace)
    assert await containers.delete(container_id) is True
    assert await containers.delete(container_id) is False
    with pytest.raises(ContainerNotFoundError):
        await containers.get(container_id)
    assert not await client.snapshots(namespace).exists(container_id)


async def test_kukeon_labelled_objects_are_listed_for_garbage_collection(runner: Runner) -> None:
    client, namespace = runner.client, runner.namespace
    ours, _log = await runner.create({"command": "sleep", "args": ["300"]}, name="ours")
    foreign = "not-kukeon"
    spec = await runner.spec({"command": "true"}, container_id=foreign)
    await client.containers(namespace).create(foreign, image=runner.image, spec=spec)

    found = await list_kukeon_objects(client, namespace=namespace)
    assert [c.id for c in found.containers] == [ours]
    assert [t.container_id for t in found.tasks] == [ours]
    assert [s.name for s in found.snapshots] == [ours]
    assert found.containers[0].labels == kukeon_labels(
        realm="test", space="space", stack="stack", cell="cell", container="ours"
    )
    by_cell = await client.containers(namespace).list(labels={"kukeon.io/cell": "cell"})
    assert [c.id for c in by_cell] == [ours]


async def test_stopping_a_task_that_already_exited_returns_its_status(runner: Runner) -> None:
    container_id, _log = await runner.create(
        {"command": "sh", "args": ["-c", "exit 5"]}, name="gone"
    )
    tasks = runner.client.tasks(runner.namespace)
    waiting = asyncio.ensure_future(tasks.wait(container_id))
    await tasks.start(container_id)
    assert (await asyncio.wait_for(waiting, 30)).code == 5
    status = await asyncio.wait_for(tasks.stop(container_id, grace_period=5.0), 10)
    assert status.code == 5
    assert (await tasks.get(container_id)).status is TaskStatus.STOPPED


async def test_fifo_stdio_without_a_tty_keeps_the_streams_apart(runner: Runner) -> None:
    client, namespace = runner.client, runner.namespace
    container_id = "fifo-plain"
    spec = await runner.spec(
        {"command": "sh", "args": ["-c", "echo to-out; echo to-err >&2"]},
        container_id=container_id,
    )
    await client.containers(namespace).create(container_id, image=runner.image, spec=spec)
    fifos = FifoIO(runner.log_dir / "fifos" / container_id, terminal=False, stdin=False)
    try:
        io = await fifos.open()
        assert io.stdin == ""
        tasks = client.tasks(namespace)
        await tasks.create(container_id, io=io)
        waiting = asyncio.ensure_future(tasks.wait(container_id))
        await tasks.start(container_id)
        assert fifos.stdout_fd is not None
        assert fifos.stderr_fd is not None
        assert b"to-out" in await _read_until(fifos.stdout_fd, b"to-out\n", within=20)
        assert b"to-err" in await _read_until(fifos.stderr_fd, b"to-err\n", within=20)
        assert (await asyncio.wait_for(waiting, 20)).code == 0
        await tasks.delete(container_id)
    finally:
        fifos.close()
