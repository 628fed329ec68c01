"""The API socket's group (``apiSocketGroup``): a numeric gid or none, checked as ``nobody``.

Whoever reaches kukeond's socket is its local admin, root on the host; the socket (0660)
and the run directory (0750) belong to a group for that. kukeond looked up ``kukeon`` in
the group database where it runs: in its container image that is gid 10001, so on the host
``/run/kukeon`` and the socket belonged to gid 10001, whichever host group or account
holds that gid, and nothing could say otherwise. ``apiSocketGroup`` now takes the host's
gid, or ``''`` for root's only: below, the socket given ``nobody``'s gid lets nobody in
(what a member of the host's gid 10001 got), and one given no group keeps them out.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import pytest
from aiohttp import web

from kukeon.apiserver.runner import ApiServerRunner
from kukeon.daemon.app import Daemon
from kukeon.daemon.config import ConfigError, DaemonConfig, load_config
from kukeon.daemon.endpoints import api_settings
from kukeon.daemon.hostdirs import share_run_dir
from kukeon.runtime.hostfiles import make_dirs
from tests.fixtures.localuser import NOBODY, as_nobody, walkable_base

pytestmark = pytest.mark.integration


async def _hello(_: web.Request) -> web.Response:
    return web.Response(text="admin\n")


async def _served(config: DaemonConfig) -> tuple[int, int, bool]:
    """The socket's and run directory's gid, and whether nobody got an answer (the modes
    are 0660 and 0750 whatever the group)."""
    make_dirs(config.run_dir)
    settings = api_settings(cast(Daemon, SimpleNamespace(config=config)))
    await asyncio.to_thread(share_run_dir, config.run_dir, settings.socket_group)
    app = web.Application()
    app.router.add_get("/", _hello)
    runner = ApiServerRunner(app=app, settings=settings, tls=None)
    await runner.start()
    try:
        reached = await asyncio.to_thread(
            as_nobody, "curl", "-sf", "--unix-socket", str(config.api_socket), "http://k/"
        )
        sock, run = config.api_socket.stat(), config.run_dir.stat()
        assert (sock.st_mode & 0o777, run.st_mode & 0o777) == (0o660, 0o750)
        return sock.st_gid, run.st_gid, reached
    finally:
        await runner.stop()


async def test_the_socket_belongs_to_the_gid_given_or_to_root_only() -> None:
    with walkable_base("kukeon-sockgroup-") as base:
        given = DaemonConfig(run_dir=base / "given", api_socket_group=str(NOBODY))
        assert await _served(given) == (NOBODY, NOBODY, True)
        closed = DaemonConfig(run_dir=base / "closed", api_socket_group="")
        assert await _served(closed) == (0, 0, False)


def test_the_group_comes_from_the_environment_and_is_checked(tmp_path: Path) -> None:
    config = load_config(environ={"KUKEON_API_SOCKET_GROUP": "10001"})
    assert config.api_socket_group == "10001"
    assert load_config(environ={}).api_socket_group == "kukeon"  # the default, as before
    with pytest.raises(ConfigError, match="api_socket_group"):
        load_config(environ={"KUKEON_API_SOCKET_GROUP": "wheel;rm"})
