"""The ``/ui/`` routes: the page, its static files, who the caller is, a manifest read and
what its Apply writes (kukectl apply's create, or its three-way merge over an object that
exists).

The page and its files hold nothing secret and must load before the browser can send a
token, so they answer without one (``kukeon.apiserver.app.public``); everything the page
shows comes from the JSON API and ``/ui/whoami``, which ask for the token as any request
does. Static files are served from a table built at start from the package's ``static/``
directory, so no request path ever reaches the filesystem.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

from aiohttp import web

from kukeon.apiserver.app import public
from kukeon.apiserver.auth import Role
from kukeon.apiserver.bodies import BodyError, check_manifest, decode_json, decode_off_loop
from kukeon.apiserver.expect import send_continue
from kukeon.apiserver.request import principal_of
from kukeon.apiserver.status import ApiError, Cause
from kukeon.ui.headers import ASSET_CACHE, SHELL_CACHE, ui_headers
from kukeon.ui.manifests import (
    ApplyRefusedError,
    StaleManifestError,
    apply_update,
    read_manifest,
)

log = logging.getLogger(__name__)

UI_PREFIX = "/ui"
STATIC_PREFIX = f"{UI_PREFIX}/static"
SHELL = "index.html"

_CONTENT_TYPES = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def _walk(directory: Traversable, prefix: str = "") -> dict[str, Asset]:
    assets: dict[str, Asset] = {}
    for entry in directory.iterdir():
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            assets.update(_walk(entry, f"{name}/"))
            continue
        suffix = "." + entry.name.rpartition(".")[2]
        if suffix not in _CONTENT_TYPES:
            continue
        body = entry.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        assets[name] = Asset(body=body, content_type=_CONTENT_TYPES[suffix], etag=etag)
    return assets


def load_assets() -> dict[str, Asset]:
    """Every file of the package's ``static/`` directory by relative name (blocking)."""
    return _walk(resources.files("kukeon.ui").joinpath("static"))


def whoami_document(request: web.Request) -> dict[str, Any]:
    principal = principal_of(request)
    return {
        "user": principal.user,
        "role": principal.role.value,
        "realms": sorted(principal.realms),
        # What the page offers buttons for; the API decides (403) whatever it shows.
        "writes": principal.role in (Role.ADMIN, Role.EDITOR),
    }


class UiRoutes:
    """The console's routes on an API server's application."""

    def __init__(self) -> None:
        self._assets: dict[str, Asset] = {}

    def add_routes(self, app: web.Application) -> None:
        app.on_startup.append(self._load)
        app.router.add_get(UI_PREFIX, self.redirect)
        app.router.add_get(f"{UI_PREFIX}/", self.shell)
        app.router.add_get(f"{STATIC_PREFIX}/{{name:.+}}", self.asset)
        app.router.add_get(f"{UI_PREFIX}/whoami", self.whoami)
        app.router.add_post(f"{UI_PREFIX}/manifest", self.manifest)
        app.router.add_post(f"{UI_PREFIX}/apply-update", self.apply_update)

    async def _load(self, _: web.Application) -> None:
        self._assets = await asyncio.to_thread(load_assets)
        log.debug("web console: %d static files", len(self._assets))

    @public
    async def redirect(self, _: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"{UI_PREFIX}/", headers=ui_headers(cache=SHELL_CACHE))

    @public
    async def shell(self, request: web.Request) -> web.StreamResponse:
        return self._answer(request, SHELL, cache=SHELL_CACHE)

    @public
    async def asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name == SHELL:
            raise ApiError(404, f"no such file of the web console: {name[:100]}")
        return self._answer(request, name, cache=ASSET_CACHE)

    def _answer(self, request: web.Request, name: str, *, cache: str) -> web.StreamResponse:
        asset = self._assets.get(name)
        if asset is None:
            raise ApiError(404, f"no such file of the web console: {name[:100]}")
        headers = {**ui_headers(cache=cache), "ETag": asset.etag}
        if cache != SHELL_CACHE and request.headers.get("If-None-Match") == asset.etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=asset.body, content_type=asset.content_type, headers=headers)

    async def whoami(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(whoami_document(request), headers=ui_headers(cache=SHELL_CACHE))

    async def manifest(self, request: web.Request) -> web.StreamResponse:
        await send_continue(request)
        raw = await request.read()
        try:
            text = await decode_off_loop(lambda: check_manifest(raw))
        except BodyError as exc:
            raise ApiError(exc.code, exc.message) from None
        try:
            entries = await decode_off_loop(lambda: read_manifest(text))
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        return web.json_response({"documents": entries}, headers=ui_headers(cache=SHELL_CACHE))

    async def apply_update(self, request: web.Request) -> web.StreamResponse:
        """What Apply creates, or writes over an object that exists
        (``manifests.apply_update``)."""
        try:
            await send_continue(request)
            raw = await request.read()
            answer = await decode_off_loop(lambda: apply_update(decode_json(raw)))
        except BodyError as exc:
            raise ApiError(exc.code, exc.message) from None
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        except StaleManifestError as exc:
            raise ApiError(409, str(exc), reason="Conflict") from None
        except ApplyRefusedError as exc:
            causes = [Cause(field, message) for field, message in exc.causes]
            raise ApiError(422, str(exc), reason="Invalid", causes=causes) from None
        return web.json_response(answer, headers=ui_headers(cache=SHELL_CACHE))
