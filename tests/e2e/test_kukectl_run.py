"""`kukectl run --rm` as `docker run --rm`: the output, the container's exit code, no cell."""

from __future__ import annotations

import asyncio
import os

import pytest

from kukeon.api import Kind
from kukeon.store import NotFound
from tests.e2e.test_kukectl_attach import KUKECTL
from tests.fixtures.kukeond import Kukeond

pytestmark = pytest.mark.e2e


async def _kukectl(k: Kukeond, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "KUKEON_SERVER": f"unix://{k.config.api_socket}"}
    scope = ["--realm", k.realm, "--space", "s1", "--stack", "st1"]
    process = await asyncio.create_subprocess_exec(
        KUKECTL,
        *args[:2],
        *scope,
        *args[2:],
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _gone(k: Kukeond, name: str) -> bool:
    try:
        await k.registry.get(Kind.CELL, (k.realm, "s1", "st1", name))
    except NotFound:
        return True
    return False


async def test_run_rm_prints_the_output_and_exits_with_the_code(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    script = "echo hi; echo oops >&2; exit 4"
    code, out, err = await _kukectl(
        k, "run", "demo", "--image", k.image.name, "--rm", "--", "sh", "-c", script
    )
    assert code == 4, err
    assert "hi\n" in out
    assert "oops" in out  # the container's stderr is part of its log
    await k.wait_gone(Kind.CELL, (k.realm, "s1", "st1", "demo"), within=30)


async def test_run_rm_of_a_missing_command_is_127_and_leaves_nothing(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    code, _out, err = await _kukectl(
        k, "run", "nocmd", "--image", k.image.name, "--rm", "--", "/no/such/binary"
    )
    assert code == 127, err
    assert "CommandNotFound" in err
    await k.wait_gone(Kind.CELL, (k.realm, "s1", "st1", "nocmd"), within=30)
    assert await _gone(k, "nocmd")


async def test_run_rm_prints_every_line_of_a_container_that_exits_at_once(
    kukeond: Kukeond,
) -> None:
    k = kukeond
    await k.hierarchy()
    code, out, err = await _kukectl(
        k, "run", "counter", "--image", k.image.name, "--rm", "--", "seq", "1", "20000"
    )
    assert code == 0, err
    assert out.splitlines() == [str(n) for n in range(1, 20001)]
    await k.wait_gone(Kind.CELL, (k.realm, "s1", "st1", "counter"), within=30)
