"""An app served as kukeond serves it (``StatusAppRunner``) on a unix socket, for tests that
speak raw HTTP to it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from kukeon.apiserver.lowlevel import PARSER_LIMITS, StatusAppRunner


@contextlib.asynccontextmanager
async def serving(app: web.Application, path: Path) -> AsyncIterator[Path]:
    """``app`` on the unix socket ``path`` until the block ends."""
    runner = StatusAppRunner(app, access_log=None, **PARSER_LIMITS)
    await runner.setup()
    await web.UnixSite(runner, str(path)).start()
    try:
        yield path
    finally:
        await runner.cleanup()
