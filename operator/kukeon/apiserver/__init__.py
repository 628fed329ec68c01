"""The aiohttp REST API over the registry (its clients are in ``kukeon.client``).

Modules: ``status`` (errors as Kubernetes Status objects), ``auth`` (tokens, roles, the
trusted unix socket), ``admission`` (what non-admins may ask of the host, by realm security
level), ``handlers`` (the resource routes, put together from ``target``, ``request``,
``handlerbase``, ``resourcereads``, ``writerules`` and ``resourcewrites``), ``watchhub``
(one registry watch shared by every watcher of a collection), ``watchstream`` (the watch
protocol of the resource and Event watches), ``events`` (the Event routes), ``app``
(middlewares, health, version, metrics; ``create_app``), ``runner`` (listeners and
lifecycle; ``serve_api``). The URL layout (``kukeon.client.paths``) and the merge patch
format (``kukeon.client.mergepatch``) are the client's, shared with the server.

This package may import ``kukeon.api``, ``kukeon.store`` and ``kukeon.client``; nothing
else of the project (``kukeon.client`` never imports it).
Logs, exec and attach (which need the runtime) are not served yet.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kukeon.apiserver.app import ReadinessCheck, create_app, long_running
    from kukeon.apiserver.auth import (
        LOCAL_ADMIN,
        Principal,
        Role,
        TokenBook,
        TokensFileError,
    )
    from kukeon.apiserver.runner import (
        ApiServerError,
        ApiServerRunner,
        build_runner,
        serve_api,
    )
    from kukeon.apiserver.settings import ApiSettings
    from kukeon.apiserver.status import ApiError
    from kukeon.client.paths import DEFAULT_SOCKET

# The server's names load on first use: importing one module of the package (a test, the
# daemon's wiring) does not pay for the whole server, the store and aetcd.
_HOMES = {
    "ReadinessCheck": "app",
    "create_app": "app",
    "long_running": "app",
    "LOCAL_ADMIN": "auth",
    "Principal": "auth",
    "Role": "auth",
    "TokenBook": "auth",
    "TokensFileError": "auth",
    "DEFAULT_SOCKET": "kukeon.client.paths",  # where the server listens: the client's default
    "ApiServerError": "runner",
    "ApiServerRunner": "runner",
    "build_runner": "runner",
    "serve_api": "runner",
    "ApiSettings": "settings",
    "ApiError": "status",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = home if "." in home else f"{__name__}.{home}"
    return getattr(importlib.import_module(module), name)


__all__ = [
    "DEFAULT_SOCKET",
    "LOCAL_ADMIN",
    "ApiError",
    "ApiServerError",
    "ApiServerRunner",
    "ApiSettings",
    "Principal",
    "ReadinessCheck",
    "Role",
    "TokenBook",
    "TokensFileError",
    "build_runner",
    "create_app",
    "long_running",
    "serve_api",
]
