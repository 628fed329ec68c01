"""The bearer token kukeond's own ``/metrics`` listener asks for (``metrics_token_file``).

The series name every realm, space, stack and cell with its state, CPU, memory and pids,
and count the API's requests: without a token any local account reads them from
``127.0.0.1:9464`` (``runuser -u nobody -- curl``). With ``metrics_token_file`` set, the
listener asks for ``Authorization: Bearer <token>`` as the kubelet's authenticated
endpoint does and as Prometheus sends it (``authorization: {credentials_file: ...}``):
401 with ``WWW-Authenticate: Bearer`` without one, 403 for another, compared in constant
time. The token is read once, at start (as the API's tokens file: a new one needs a
restart), and never logged.

The file is refused, not warned about, when other local users may read or replace it (as
ssh refuses a private key others may read): a token others read guards nothing, and the
setting exists only to guard. The group's bits are the administrator's choice (0640 with
Prometheus' group is the shipped install's).
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from kukeon.apiserver.auth import bearer_token, token_bytes, token_in_text
from kukeon.fileio import path_problems
from kukeon.metrics.endpoint import Handler

from .starterrors import StartupError

log = logging.getLogger(__name__)

MIN_TOKEN_LENGTH = 16
"""As the API's tokens file asks of each token."""

_SETTING = "metrics_token_file"


def read_metrics_token(path: Path) -> str:
    """The token of ``metrics_token_file`` (blocking: call via asyncio.to_thread); a
    ``StartupError`` naming the setting when the file is open to other local users (see
    ``fileio.path_problems``), unreadable, empty, short, or holds what a header cannot carry."""
    try:
        problems = path_problems(path)
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise StartupError(
            f"cannot read the metrics token file {path} ({_SETTING}): {error}"
        ) from error
    if problems:
        said = "; ".join(dict.fromkeys([*problems.change, *problems.read]))
        raise StartupError(
            f"the metrics token file {path} ({_SETTING}) is open to other local users: {said}. "
            "Make it root's, mode 0600 (or 0640 with the scraper's group), in directories "
            "only root may write"
        )
    token = token_in_text(text)
    if token is None:
        raise StartupError(f"the metrics token file {path} ({_SETTING}) is empty")
    if len(token) < MIN_TOKEN_LENGTH or not all("!" <= char <= "~" for char in token):
        raise StartupError(
            f"the metrics token in {path} ({_SETTING}) must be at least {MIN_TOKEN_LENGTH} "
            "visible ASCII characters without spaces (e.g. `openssl rand -hex 32`)"
        )
    return token


def _refusal(status: int, text: str) -> web.Response:
    headers = {hdrs.WWW_AUTHENTICATE: 'Bearer realm="kukeon-metrics"'} if status == 401 else {}
    return web.Response(status=status, text=f"kukeon: {text}\n", headers=headers)


def requiring_token(token: str) -> Middleware:
    """A middleware answering 401 to a request without a bearer token and 403 to one with
    another than ``token``; the token never reaches a log."""
    expected = token_bytes(token)

    @web.middleware
    async def authorize(request: web.Request, handler: Handler) -> web.StreamResponse:
        presented = bearer_token(request.headers.get(hdrs.AUTHORIZATION))
        if presented is None:
            return _refusal(401, "/metrics asks for Authorization: Bearer <token>")
        if not hmac.compare_digest(token_bytes(presented), expected):
            # debug: a scraper with a stale token asks every few seconds
            log.debug("refused /metrics to %s: not the metrics token", request.remote)
            return _refusal(403, "that token is not the metrics token")
        return await handler(request)

    return authorize


def warn_open_listener(address: str) -> None:
    """The one warning of a listener that asks for no token."""
    log.warning(
        "/metrics on %s asks for no token: any local account reads every realm's series "
        "(names, states, CPU, memory, API requests); set %s to ask for one",
        address,
        _SETTING,
    )
