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


async def _kukectl(k: Kukeond, *args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    env = {**os.environ, "KUKEON_SERVER": f"unix://{k.config.api_socket}"}
    scope = ["--realm", k.realm, "--space", "s1", "--stack", "st1"]
    process = await asyncio.create_subprocess_exec(
        KUKECTL,
        *args[:2],
        *scope,
        *args[2:],
        env=env,
        stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), 120)
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
    # As docker's: the container's stdout on kukectl's stdout, its stderr on kukectl's.
    assert out == "hi\n"
    assert err.splitlines()[-1:] == ["oops"], err
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
    script = "seq 1 20000; seq 1 5000 >&2"
    code, out, err = await _kukectl(
        k, "run", "counter", "--image", k.image.name, "--rm", "--", "sh", "-c", script
    )
    assert code == 0, err
    assert out.splitlines() == [str(n) for n in range(1, 20001)]
    assert err.splitlines()[-5000:] == [str(n) for n in range(1, 5001)]
    await k.wait_gone(Kind.CELL, (k.realm, "s1", "st1", "counter"), within=30)


async def test_run_i_rm_attaches_sends_stdin_and_exits_with_the_code(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    code, out, err = await _kukectl(
        k,
        "run",
        "talk",
        "--image",
        k.image.name,
        "-i",
        "--rm",
        "--",
        "sh",
        stdin=b"echo piped-$((2*3)); exit 3\n",
    )
    assert code == 3, err
    assert "piped-6" in out
    await k.wait_gone(Kind.CELL, (k.realm, "s1", "st1", "talk"), within=30)


async def test_run_it_of_a_container_that_ends_at_once_prints_its_output(
    kukeond: Kukeond,
) -> None:
    # docker's habit: --name, then the image's command; it has ended before any attach.
    k = kukeond
    await k.hierarchy()
    code, out, err = await _kukectl(
        k,
        "run",
        "-it",  # the scope goes after these two
        "--rm",
        "--name",
        "quick",
        "--image",
        k.image.name,
        "--",
        "sh",
        "-c",
        "echo done-$((40+2)); exit 6",
    )
    assert code == 6, err
    assert "done-42" in out
    await k.wait_gone(Kind.CELL, (k.realm, "s1", "st1", "quick"), within=30)


async def test_run_it_shows_what_was_printed_before_it_attached(kukeond: Kukeond) -> None:
    # The attach starts from the instance's log start (?logs=true): the first line, printed
    # before the cell was even reported Ready, is shown, then the rest, then the exit code.
    k = kukeond
    await k.hierarchy()
    code, out, err = await _kukectl(
        k,
        "run",
        "early",
        "--image",
        k.image.name,
        "-it",
        "--rm",
        "--",
        "sh",
        "-c",
        "echo early-$((1+1)); sleep 2; echo late-$((2+2)); exit 4",
    )
    assert code == 4, err
    assert "early-2" in out
    assert "late-4" in out
    assert out.index("early-2") < out.index("late-4")
    await k.wait_gone(Kind.CELL, (k.realm, "s1", "st1", "early"), within=30)


async def test_run_labels_the_cell_and_logs_and_wait_select_by_them(kukeond: Kukeond) -> None:
    """`run -l` (docker's --label, kubectl's --labels), then `wait -l` and `logs -l` find
    the cells by that label, as kubectl's do."""
    k = kukeond
    await k.hierarchy()
    for name in ("e1", "e2"):
        script = f"echo hello {name}; sleep 600"
        code, out, err = await _kukectl(
            k,
            "run",
            name,
            "--image",
            k.image.name,
            "-l",
            "app=echo,tier=t",
            "--",
            "sh",
            "-c",
            script,
        )
        assert code == 0, err
    code, out, err = await _kukectl(
        k, "wait", "cells", "-l", "app=echo", "--for=condition=Ready", "--timeout=60s"
    )
    assert code == 0, err
    assert out.splitlines() == ["cell/e1 condition met", "cell/e2 condition met"]
    code, out, err = await _kukectl(k, "logs", "--prefix", "-l", "tier=t")
    assert code == 0, err
    # kubectl's --prefix: [pod/NAME/CONTAINER]; run's container is named as its cell
    assert out.splitlines() == ["[cell/e1/e1] hello e1", "[cell/e2/e2] hello e2"]
    code, out, err = await _kukectl(k, "logs", "--prefix", "-l", "app=nope")
    assert (code, out) == (0, "")
    assert "No cells match 'app=nope'" in err
    code, out, err = await _kukectl(k, "run", "e3", "--image", k.image.name, "-l", "bad label=x")
    assert code != 0
    assert "metadata.labels['bad label']" in err
