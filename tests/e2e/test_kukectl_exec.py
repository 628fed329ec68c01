"""`kukectl exec` in a terminal (a pseudo-terminal) and piped, as docker and kubectl users
run it: it returns as soon as the process exits, with its code, and the process starts with
the terminal's size."""

from __future__ import annotations

import asyncio
import os
import pty
import time

import pytest

from kukeon.api import Kind
from tests.e2e.test_kukectl_attach import KUKECTL, Terminal, set_window
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import SLEEPER, cell_doc, cell_key

pytestmark = pytest.mark.e2e


async def _running_cell(k: Kukeond) -> list[str]:
    await k.hierarchy()
    await k.apply(
        cell_doc(k, "box", [{"id": "c", "image": k.image.name, "command": "sh", "args": SLEEPER}])
    )
    await k.wait_for(Kind.CELL, cell_key(k, "box"), state="Ready")
    return ["exec", "box", "--realm", k.realm, "--space", "s1", "--stack", "st1"]


async def _in_a_terminal(
    k: Kukeond, argv: list[str], typed: bytes = b""
) -> tuple[asyncio.subprocess.Process, Terminal]:
    """kukectl ``argv`` on a 33 x 101 pseudo-terminal, ``typed`` already in its input (a
    line the user typed ahead, before kukectl even started)."""
    env = {**os.environ, "KUKEON_SERVER": f"unix://{k.config.api_socket}"}
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    set_window(slave, 33, 101)
    if typed:
        os.write(master, typed)
    process = await asyncio.create_subprocess_exec(
        "setsid", "--ctty", KUKECTL, *argv, stdin=slave, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    return process, Terminal(master)


async def test_exec_it_returns_the_shells_exit_code_at_once(kukeond: Kukeond) -> None:
    k = kukeond
    process, terminal = await _in_a_terminal(k, [*await _running_cell(k), "-it", "--", "sh"])
    master = terminal.master
    try:
        await terminal.expect("# ")  # the shell is up (and reads the terminal)
        if b"\x1b[6n" in terminal.seen:  # busybox asks where the cursor is: answer it
            terminal.type(b"\x1b[1;1R")
        terminal.type(b"stty size\n")
        await terminal.expect("33 101")
        terminal.type(b"exit 3\n")
        started = time.monotonic()
        code = await asyncio.wait_for(process.wait(), 10)
        assert code == 3
        assert time.monotonic() - started < 2.0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        os.close(master)


async def test_exec_it_sends_what_was_typed_before_it_started(kukeond: Kukeond) -> None:
    """A line typed before the session was open is the process's input, as under docker:
    the terminal's switch to raw mode (tty.setraw's TCSAFLUSH) discarded it, and the
    process waited for a line that never came."""
    k = kukeond
    script = 'read line; echo "got $line"; exit 4'
    argv = [*await _running_cell(k), "-it", "--", "sh", "-c", script]
    process, terminal = await _in_a_terminal(k, argv, typed=b"typed-ahead\n")
    try:
        assert await asyncio.wait_for(process.wait(), 30) == 4
        await terminal.expect("got typed-ahead")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        os.close(terminal.master)


async def test_exec_i_returns_when_the_process_exits_not_when_stdin_closes(
    kukeond: Kukeond,
) -> None:
    k = kukeond
    argv = [KUKECTL, *await _running_cell(k), "-i", "--", "sh"]
    env = {**os.environ, "KUKEON_SERVER": f"unix://{k.config.api_socket}"}
    reader, writer = os.pipe()
    process = await asyncio.create_subprocess_exec(
        *argv, stdin=reader, stdout=asyncio.subprocess.PIPE, env=env
    )
    os.close(reader)
    try:
        os.write(writer, b"echo bye; exit 6\n")  # and stdin stays open
        started = time.monotonic()
        out, _ = await asyncio.wait_for(process.communicate(), 15)
        assert process.returncode == 6
        assert out == b"bye\n"
        assert time.monotonic() - started < 5.0
    finally:
        os.close(writer)
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_exec_it_with_piped_input_runs_without_a_terminal(kukeond: Kukeond) -> None:
    """kubectl's: `-it` with stdin not a terminal warns and runs without one, so piped
    input reaches the process as it is. It was echoed through a terminal whose end hung
    the process up: nothing printed, exit 129."""
    k = kukeond
    script = "cat; [ -t 0 ] || echo no-terminal"
    argv = [KUKECTL, *await _running_cell(k), "-it", "--", "sh", "-c", script]
    env = {**os.environ, "KUKEON_SERVER": f"unix://{k.config.api_socket}"}
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(b"hi\n"), 30)
    assert (process.returncode, out) == (0, b"hi\nno-terminal\n")
    assert err == b"warning: Unable to use a TTY - input is not a terminal; running without one\n"
