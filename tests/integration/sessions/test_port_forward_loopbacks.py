"""``kukectl port-forward --address localhost`` listens on both loopbacks or not at all.

Found as ``nobody`` (helper-215's local-user pass): ``localhost`` is ``127.0.0.1`` and
``::1`` (as kubectl's), the second skipped "where the host has no IPv6", but kukectl
skipped it on any error, a port another local user already held on ``[::1]`` included.
It then forwarded ``127.0.0.1`` alone, said nothing, and that user's listener took every
connection a client made to ``localhost:PORT`` over IPv6 first (browsers do): the
requests, and the cookies or credentials in them, meant for the cell. Now a held port is
``error: unable to listen on [::1]:PORT: ...: address already in use`` (exit 1); an
address the host does not have is still skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from kukeon.cli.portforward import PortPair, _forward
from kukeon.client.apiclient import ApiClient
from tests.fixtures.services import require_binary, require_root, unavailable

pytestmark = pytest.mark.integration

CELL = ("r", "s", "st", "web")
SYSTEM_PYTHON = "/usr/bin/python3"  # nobody may run it (not the venv's, under /work)
LISTEN_AS_NOBODY = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_INET6)\n"
    "s.bind(('::1', 0))\n"
    "s.listen()\n"
    "print(s.getsockname()[1], flush=True)\n"
    "sys.stdin.read()\n"  # until the test closes it
)


class _StillThere:
    """The client ``_forward`` asks whether the cell is still there: it always is."""

    async def get(self, *_args: object) -> None:
        return None


@pytest.fixture
def nobody_on_ipv6_loopback() -> Iterator[int]:
    """A port ``nobody`` listens on at ``[::1]``, held until the test ends."""
    require_root()
    require_binary("runuser", "util-linux")
    if not Path(SYSTEM_PYTHON).is_file():
        unavailable(f"no {SYSTEM_PYTHON} for nobody's listener")
    with socket.socket(socket.AF_INET6) as probe:
        try:
            probe.bind(("::1", 0))
        except OSError as error:
            unavailable(f"this host has no IPv6 loopback: {error}")
    listener = subprocess.Popen(
        ["runuser", "-u", "nobody", "--", SYSTEM_PYTHON, "-I", "-c", LISTEN_AS_NOBODY],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd="/",
    )
    try:
        assert listener.stdout is not None
        yield int(listener.stdout.readline())
    finally:
        assert listener.stdin is not None
        listener.stdin.close()
        try:
            listener.wait(timeout=10)
        except subprocess.TimeoutExpired:
            listener.kill()
            listener.wait(timeout=10)


async def _forward_briefly(addresses: list[str], port: int) -> None:
    """``_forward`` as ``port-forward`` calls it; one still listening after 3 s is stopped."""
    client: ApiClient = _StillThere()  # type: ignore[assignment]
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(3):
            await _forward(client, "/route", [PortPair(port, 80)], addresses, cell=CELL)


def test_a_port_another_user_holds_on_the_ipv6_loopback_is_refused(
    nobody_on_ipv6_loopback: int, capsys: pytest.CaptureFixture[str]
) -> None:
    port = nobody_on_ipv6_loopback
    with pytest.raises(click.exceptions.Exit) as refused:
        # Before: forwarded 127.0.0.1 only, for as long as it ran (stopped after 3 s).
        asyncio.run(_forward_briefly(["127.0.0.1", "::1?"], port))
    assert refused.value.exit_code == 1
    said = capsys.readouterr()
    assert f"error: unable to listen on [::1]:{port}: " in said.err, said
    assert "address already in use" in said.err, said


def test_an_address_the_host_does_not_have_is_still_skipped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The control: 192.0.2.1 (TEST-NET-1) is no address of this host, as ::1 of one
    without IPv6; the forward goes on with the other address."""
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    asyncio.run(_forward_briefly(["127.0.0.1", "192.0.2.1?"], port))
    said = capsys.readouterr()
    assert said.out.splitlines() == [f"Forwarding from 127.0.0.1:{port} -> 80"], said
