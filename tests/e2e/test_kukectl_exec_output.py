"""`kukectl exec` carries every byte: a command that prints a lot and exits at once gets its
whole output (the tail is read to the end of the stream, never cut after a fixed pause),
stdout and stderr alike; and a process that never reads its input ends the session after
the deadline instead of holding it for ever."""

from __future__ import annotations

import pytest

from kukeon.api import Kind
from kukeon.daemon import noderoutes
from tests.fixtures.kukectl import kukectl
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import SLEEPER, cell_doc, cell_key

pytestmark = pytest.mark.e2e

LINES = 200_000


def _seq(first: int, last: int) -> str:
    return "".join(f"{n}\n" for n in range(first, last + 1))


async def _running_cell(k: Kukeond) -> list[str]:
    await k.hierarchy()
    await k.apply(
        cell_doc(k, "box", [{"id": "c", "image": k.image.name, "command": "sh", "args": SLEEPER}])
    )
    await k.wait_for(Kind.CELL, cell_key(k, "box"), state="Ready")
    return ["exec", "box", "--realm", k.realm, "--space", "s1", "--stack", "st1"]


async def test_exec_gets_every_byte_of_a_large_output_that_ends_with_the_exit(
    kukeond: Kukeond,
) -> None:
    argv = await _running_cell(kukeond)
    code, out, err = await kukectl(kukeond, *argv, "--", "seq", "1", str(LINES))
    assert code == 0, err
    assert len(out) == len(_seq(1, LINES))
    assert out == _seq(1, LINES)

    # Both streams, the last bytes of each written just before the exit.
    script = f"seq 1 {LINES}; seq 1 50000 >&2; echo last-out; echo last-err >&2; exit 7"
    code, out, err = await kukectl(kukeond, *argv, "--", "sh", "-c", script)
    assert code == 7
    assert out == _seq(1, LINES) + "last-out\n"
    assert err == _seq(1, 50000) + "last-err\n"


async def test_exec_input_nobody_reads_ends_the_session_at_the_deadline(
    kukeond: Kukeond, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(noderoutes, "STDIN_STALL_SECONDS", 1.0)
    argv = await _running_cell(kukeond)
    code, _, err = await kukectl(kukeond, *argv, "-i", "--", "sleep", "600", stdin=b"x" * (8 << 20))
    assert code == 1
    assert "did not read its input for 1s" in err
