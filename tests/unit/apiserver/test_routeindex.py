"""The route shortcut answers every request as aiohttp's own walk over the routes would."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from kukeon.apiserver import ApiSettings, create_app
from kukeon.apiserver.routeindex import RouteShortcut

V = "/apis/kukeon.io/v1beta1"
STACK = f"{V}/realms/r/spaces/s/stacks/t"


def _app_without_shortcut() -> web.Application:
    """The same app, its router built as before the shortcut (aiohttp's walk alone)."""
    with mock.patch.object(RouteShortcut, "resolve", _nothing):
        return create_app(registry=mock.MagicMock(), settings=ApiSettings(socket_path=None))


async def _nothing(self: RouteShortcut, request: web.Request) -> Any:
    return None, set()


def _described(match: Any) -> tuple[Any, ...]:
    """What a resolution decides: the route (or the HTTP error), the parameters."""
    http_error = getattr(match, "http_exception", None)
    if http_error is not None:
        allowed = sorted(getattr(http_error, "allowed_methods", ()) or ())
        return type(http_error).__name__, allowed
    return match.route.resource.canonical, match.route.method, dict(match)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{V}/realms"),
        ("POST", f"{V}/realms"),
        ("GET", f"{V}/realms/r"),
        ("PATCH", f"{V}/realms/r/status"),
        ("GET", f"{V}/realms/r/spaces/s/stacks"),
        ("GET", f"{STACK}/cells"),
        ("GET", f"{STACK}/cells?labelSelector=a%3Db"),
        ("GET", f"{STACK}/cells/c1"),
        ("DELETE", f"{STACK}/cells/c1"),
        ("PUT", f"{STACK}/cells/c1/status"),
        ("GET", f"{STACK}/cellsets/x"),
        ("GET", f"{STACK}/secrets/x/status"),
        ("POST", f"{STACK}/profileruns"),
        ("POST", f"{STACK}/cells/c1"),  # 405: the allowed methods as aiohttp lists them
        ("DELETE", f"{STACK}/cells"),
        ("GET", f"{STACK}/cells/c1/logs"),  # 404
        ("GET", f"{STACK}/cells/"),
        ("GET", f"{STACK}/unknown/c1"),
        ("GET", f"{STACK}/cells/c%2F1"),
        ("GET", f"{STACK}/cells/%7Bc%7D"),
        ("GET", f"{V}/realms/r/spaces//stacks"),
        ("GET", f"{V}/cells"),
        ("GET", f"{V}/nodes/n1"),
    ],
)
async def test_the_shortcut_resolves_as_aiohttps_walk(method: str, path: str) -> None:
    fast = create_app(registry=mock.MagicMock(), settings=ApiSettings(socket_path=None))
    walked = _app_without_shortcut()
    decided = []
    for app in (fast, walked):
        request = make_mocked_request(method, path, app=app)
        decided.append(_described(await app.router.resolve(request)))
    assert decided[0] == decided[1]


def test_a_parameter_spanning_segments_is_refused() -> None:
    shortcut = RouteShortcut(f"{V}/realms")
    router = web.UrlDispatcher()
    resource = router.add_resource(f"{V}/realms/{{tail:.*}}")
    with pytest.raises(ValueError, match="whole-segment"):
        shortcut.add(resource)
