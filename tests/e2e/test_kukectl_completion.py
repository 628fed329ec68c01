"""Shell completion as a shell asks for it: the installed `kukectl`, run once per TAB with
`_KUKECTL_COMPLETE`, completing names from a real kukeond (bash, zsh and fish)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from tests.fixtures.kukectl import KUKECTL
from tests.fixtures.kukeond import Kukeond

pytestmark = pytest.mark.e2e


async def tab(
    line: str, *, shell: str = "bash", server: str, cache: Path
) -> tuple[list[str], float]:
    """The values `kukectl` offers for a TAB at the end of ``line``, and how long it took."""
    words = line.split()
    incomplete = "" if line.endswith(" ") else words[-1]
    env = {
        **os.environ,
        "_KUKECTL_COMPLETE": f"{shell}_complete",
        "COMP_WORDS": line,
        # fish passes the word being completed itself; bash and zsh its index.
        "COMP_CWORD": incomplete if shell == "fish" else str(len(words) - (incomplete != "")),
        "KUKEON_SERVER": server,
        "XDG_CACHE_HOME": str(cache),
    }
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        KUKECTL,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    elapsed = time.monotonic() - started
    assert process.returncode == 0, err.decode()
    assert err == b"", err.decode()  # never a traceback (or anything) into the shell
    lines = [line for line in out.decode().splitlines() if line]
    if shell == "zsh":  # type, value, help: three lines per item
        return lines[1::3], elapsed
    return [entry.partition(",")[2].partition("\t")[0] for entry in lines], elapsed


async def test_completion_against_kukeond(kukeond: Kukeond, tmp_path: Path) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(
        {
            "kind": "Cell",
            "metadata": {"name": "web"},
            "spec": {
                "realmId": k.realm,
                "spaceId": "s1",
                "stackId": "st1",
                "containers": [
                    {"id": "main", "image": k.image.name, "command": "sleep", "args": ["600"]},
                    {"id": "sidecar", "image": k.image.name, "command": "sleep", "args": ["600"]},
                ],
            },
        }
    )
    server = f"unix://{k.config.api_socket}"
    cache = tmp_path / "cache"
    scope = f"--realm {k.realm} --space s1 --stack st1"

    async def bash(line: str) -> list[str]:
        return (await tab(line, server=server, cache=cache))[0]

    # The first TAB builds the description of the commands; later ones reuse it.
    assert await bash("kukectl ") != []
    assert k.realm in await bash("kukectl get cells --realm ")
    assert await bash(f"kukectl get spaces --realm {k.realm} ") == ["s1"]
    assert await bash(f"kukectl get cells --realm {k.realm} --space ") == ["s1"]
    assert await bash(f"kukectl get cells {scope} ") == ["web"]
    assert await bash(f"kukectl get {scope} cell/") == ["cell/web"]
    assert await bash(f"kukectl describe cell {scope} w") == ["web"]
    assert await bash(f"kukectl logs {scope} web -c ") == ["main", "sidecar"]
    assert await bash(f"kukectl exec {scope} web -c s") == ["sidecar"]
    assert k.config.node_name in await bash("kukectl cordon ")

    zsh, _ = await tab(f"kukectl stop {scope} ", shell="zsh", server=server, cache=cache)
    assert zsh == ["web"]
    fish, elapsed = await tab(
        f"kukectl attach {scope} web -c m", shell="fish", server=server, cache=cache
    )
    assert fish == ["main"]
    # The whole process, warm: well under a second even on a busy shared test host (the
    # goal, 0.3 s, is measured on a quiet one: docs/benchmarks.md).
    assert elapsed < 1.5, elapsed

    # An unreachable server: nothing, quickly, and silently.
    nothing, elapsed = await tab(
        "kukectl get cells ", server=f"unix://{tmp_path / 'gone.sock'}", cache=cache
    )
    assert nothing == []
    assert elapsed < 1.5, elapsed
