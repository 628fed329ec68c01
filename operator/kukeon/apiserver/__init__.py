"""The aiohttp REST API over the registry, and the client kukectl uses to speak it.

Modules: ``paths`` (URL layout, shared with the client), ``status`` (errors as Kubernetes
Status objects), ``auth`` (tokens, roles, the trusted unix socket), ``mergepatch``
(RFC 7386), ``admission`` (what non-admins may ask of the host, by realm security
level), ``handlers`` (the resource routes, put together from ``target``, ``request``,
``handlerbase``, ``resourcereads``, ``writerules`` and ``resourcewrites``), ``watchhub``
(one registry watch shared by every watcher of a collection), ``watchstream`` (the watch
protocol of the resource and Event watches), ``events`` (the Event routes), ``app``
(middlewares, health, version, metrics; ``create_app``), ``runner`` (listeners and
lifecycle; ``serve_api``), ``client`` (the typed async client), ``httpexchange`` (one
request on a connection of its own, for a short-lived client without aiohttp) and
``reflector`` (a watch that resumes and relists).

This package may import ``kukeon.api`` and ``kukeon.store``; nothing else of the project.
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
    from kukeon.apiserver.paths import DEFAULT_SOCKET
    from kukeon.apiserver.runner import (
        ApiServerError,
        ApiServerRunner,
        build_runner,
        serve_api,
    )
    from kukeon.apiserver.settings import ApiSettings
    from kukeon.apiserver.status import ApiError

# The server's names load on first use: kukectl imports `kukeon.apiserver.client` (and
# `paths`, `httpexchange`, `reflector`) and must not pay for the server, the store and
# aetcd on every run.
_HOMES = {
    "ReadinessCheck": "app",
    "create_app": "app",
    "long_running": "app",
    "LOCAL_ADMIN": "auth",
    "Principal": "auth",
    "Role": "auth",
    "TokenBook": "auth",
    "TokensFileError": "auth",
    "ApiServerError": "runner",
    "ApiServerRunner": "runner",
    "build_runner": "runner",
    "serve_api": "runner",
    "DEFAULT_SOCKET": "paths",
    "ApiSettings": "settings",
    "ApiError": "status",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)


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
