"""kukectl by a token holder at its long-running bound (``apiMaxLongRunningPerUser``):
``exec``, ``logs -f`` and ``get -w`` wait for a place, as kubectl does on a 429, and
start once one frees; when none frees they fail after the client's retries with a line
naming the 429 and the server's reason, exit code 1.

A real kukeond (private containerd, etcd, host resources) with a TLS listener and an
editor token, its bound set to one long-running request per token holder; the test holds
that one place with a watch of its own and lets it go while kukectl waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from kukeon.api import Kind
from tests.fixtures.containerd import SLEEPER_SCRIPT
from tests.fixtures.kukectl import KUKECTL
from tests.fixtures.kukeond import Kukeond
from tests.fixtures.tlskukeond import TlsKukeond, tls_kukeond  # noqa: F401 - the fixture
from tests.integration.controllers.helpers import cell_doc, cell_key

pytestmark = [pytest.mark.e2e, pytest.mark.kukeond_config(api_max_long_running_per_user=1)]

TALKER = ["-c", f"echo started; {SLEEPER_SCRIPT}"]


@dataclass
class BusyKukeond:
    node: TlsKukeond

    @property
    def k(self) -> Kukeond:
        return self.node.k

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUKEON_SERVER": self.node.url,
            "KUKEON_TOKEN": self.node.tokens["editor"],
            "KUKEON_CA": str(self.node.ca),
        }

    @contextlib.asynccontextmanager
    async def place_taken(self) -> AsyncIterator[None]:
        """The token holder's one long-running place, held by a watch until the block ends."""
        async with self.node.session("editor") as session:
            path = f"/apis/kukeon.io/v1beta1/realms/{self.k.realm}/spaces"
            # A session, watch or followed log that just ended is let go of by the server
            # within a second (a `logs -f` of a container that writes nothing included).
            async with asyncio.timeout(10):
                while (watch := await session.get(path, params={"watch": "true"})).status == 429:
                    watch.close()
                    await asyncio.sleep(0.1)
            assert watch.status == 200, await watch.text()
            try:
                yield
            finally:
                watch.close()


@pytest.fixture
def busy(tls_kukeond: TlsKukeond) -> BusyKukeond:  # noqa: F811 - the fixture imported above
    """A real kukeond (``tls_kukeond``) whose editor has one long-running place."""
    return BusyKukeond(tls_kukeond)


async def _talker(k: Kukeond) -> list[str]:
    """A running cell whose container said ``started``; kukectl's arguments naming it."""
    await k.hierarchy()
    container = {"id": "c", "image": k.image.name, "command": "sh", "args": TALKER}
    await k.apply(cell_doc(k, "box", [container]))
    await k.wait_for(Kind.CELL, cell_key(k, "box"), state="Ready")
    return ["box", "--realm", k.realm, "--space", "s1", "--stack", "st1"]


async def _kukectl(b: BusyKukeond, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        KUKECTL,
        *args,
        env=b.env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _line(process: asyncio.subprocess.Process, within: float = 20.0) -> str:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), within)
    assert line, "kukectl's output ended"
    return line.decode().rstrip("\n")


async def _stopped(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.terminate()
        await process.wait()


async def test_kukectl_waits_for_a_long_running_place(busy: BusyKukeond) -> None:
    cell = await _talker(busy.k)
    # Each command in turn: the next one's place_taken needs the last one's place freed.
    for argv, expected in (
        (["exec", *cell, "--", "echo", "hi"], "hi"),
        (["logs", "-f", *cell], "started"),
        (["get", "spaces", "-w", "--realm", busy.k.realm, "--no-headers"], "s1"),
    ):
        async with busy.place_taken():
            started = time.monotonic()
            process = await _kukectl(busy, *argv)
            await asyncio.sleep(2.5)  # refused with 429, waiting a second, asking again
            assert process.returncode is None, argv
        try:
            line = await _line(process)
            if argv[0] == "get":  # the list comes first (a short request); then the watch
                space = {"name": "s2"}
                await busy.k.apply(
                    {"kind": "Space", "metadata": space, "spec": {"realmId": busy.k.realm}}
                )
                while not line.startswith("s2"):
                    line = await _line(process)
                expected = "s2"
            assert line.startswith(expected), (argv, line)
            assert time.monotonic() - started > 2.0
            if argv[0] == "exec":
                assert await asyncio.wait_for(process.wait(), 10) == 0
        finally:
            await _stopped(process)


async def test_kukectl_fails_clearly_when_no_place_frees(busy: BusyKukeond) -> None:
    cell = await _talker(busy.k)

    async def refused(argv: list[str]) -> None:
        started = time.monotonic()
        process = await _kukectl(busy, *argv)
        try:
            _, err = await asyncio.wait_for(process.communicate(), 30)
        finally:
            await _stopped(process)
        waited = time.monotonic() - started
        assert process.returncode == 1, (argv, err)
        text = err.decode()
        assert "error: the server answered 429 TooManyRequests to 6 tries in 5s" in text, text
        reason = "the most this server allows a user" if argv[0] != "exec" else "close some"
        assert reason in text, text
        assert 5.0 <= waited < 20.0, (argv, waited)

    # The three at once: each is refused (none of them gets a place), so each spends its
    # 5 s of retries beside the others rather than after them. A task group: one failing
    # cancels the others, whose kukectl is then stopped.
    async with busy.place_taken(), asyncio.TaskGroup() as group:
        group.create_task(refused(["exec", *cell, "--", "echo", "hi"]))
        group.create_task(refused(["logs", "-f", *cell]))
        group.create_task(refused(["get", "spaces", "-w", "--realm", busy.k.realm]))
