"""Authentication to a registry: the ``WWW-Authenticate`` challenge, basic credentials and
bearer tokens.

A request goes out with what the registry asked for last time; a 401 answer carries a
challenge (RFC 7235), which is met with basic credentials or with a bearer token obtained
from the challenge's realm (sending the basic credentials there, if any), and the request
is sent once more. Tokens are cached per registry and repository scope until shortly
before they expire.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import aiohttp
from yarl import URL

from kukeon.runtime.containerd.reference import ImageReference, credential_for
from kukeon.runtime.containerd.registrybody import (
    HEAD_SECONDS,
    BodyCodingError,
    BodyTooSlowError,
    coding_refusal,
)
from kukeon.runtime.containerd.registryerrors import (
    RegistryCodingError,
    RegistryResponseError,
    RegistryUnauthorizedError,
    RegistryUnreachableError,
    body_error,
    error_suffix,
    read_at_most,
)
from kukeon.runtime.containerd.types import RegistryCredential

_MAX_TOKEN_RESPONSE_BYTES = 4 * 1024 * 1024


class Challenge(NamedTuple):
    """One authentication challenge: scheme (lower-case) and its parameters."""

    scheme: str
    params: Mapping[str, str]


_TOKEN_CHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_SCHEME_RE = re.compile(rf"({_TOKEN_CHARS})(?=[ \t]|,|$)")
_PARAM_RE = re.compile(
    rf'[ \t]*({_TOKEN_CHARS})[ \t]*=[ \t]*(?:"((?:[^"\\]|\\.)*)"|({_TOKEN_CHARS}))[ \t]*'
)
_ESCAPE_RE = re.compile(r"\\(.)")


def parse_www_authenticate(headers: Sequence[str]) -> list[Challenge]:
    """Parse ``WWW-Authenticate`` header values (RFC 7235) into challenges.

    Handles several challenges in one value (``Basic realm="r", Bearer realm="t"``) and
    quoted values with commas (``scope="repository:a:pull,push"``). Parts that do not parse
    (a token68 credential, garbage) are skipped rather than failing the whole header.
    """
    challenges: list[Challenge] = []
    for header in headers:
        position, end = 0, len(header)
        while position < end:
            if header[position] in ", \t":
                position += 1
                continue
            scheme_match = _SCHEME_RE.match(header, position)
            if scheme_match is None:
                next_comma = header.find(",", position)
                position = end if next_comma == -1 else next_comma + 1
                continue
            position = scheme_match.end()
            params: dict[str, str] = {}
            while True:
                param = _PARAM_RE.match(header, position)
                if param is None:
                    break
                key, quoted, bare = param.group(1), param.group(2), param.group(3)
                params[key.lower()] = _ESCAPE_RE.sub(r"\1", quoted) if quoted is not None else bare
                position = param.end()
                if position < end and header[position] == ",":
                    position += 1
                else:
                    break
            challenges.append(Challenge(scheme_match.group(1).lower(), params))
    return challenges


def basic_authorization(credential: RegistryCredential) -> str:
    """The ``Authorization`` header value for HTTP basic auth with this credential."""
    pair = f"{credential.username}:{credential.password}".encode()
    return f"Basic {base64.b64encode(pair).decode('ascii')}"


def preferred_challenge(challenges: Sequence[Challenge]) -> Challenge | None:
    """The challenge to answer: bearer before basic; None when neither is offered."""
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme:
                return challenge
    return None


@dataclass(slots=True)
class _RegistryAuth:
    """What a registry asked for last time, so later requests authenticate up front."""

    challenge: Challenge | None = None
    tokens: dict[str, tuple[str, float]] = field(default_factory=dict)


class Authenticator:
    """Sends requests to registries, answering their challenges with the credentials."""

    def __init__(
        self,
        *,
        credentials: Sequence[RegistryCredential],
        session: Callable[[], aiohttp.ClientSession],
    ) -> None:
        self._credentials = tuple(credentials)
        self._session = session
        self._auth: dict[str, _RegistryAuth] = {}

    async def request(
        self,
        ref: ImageReference,
        method: str,
        url: URL,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        session = self._session()
        state = self._auth.setdefault(ref.registry, _RegistryAuth())
        request_headers = dict(headers or {})
        authorization = await self._authorization(ref, state, refresh=False)
        if authorization is not None:
            request_headers["Authorization"] = authorization
        response = await self._send(ref, session, method, url, request_headers)
        if response.status != 401:
            return response

        challenges = parse_www_authenticate(response.headers.getall("WWW-Authenticate", []))
        response.release()
        challenge = preferred_challenge(challenges)
        if challenge is None:
            raise RegistryUnauthorizedError.about(
                ref,
                "unauthorized, and the registry offered no usable authentication "
                "scheme (basic or bearer)",
            )
        state.challenge = challenge
        authorization = await self._authorization(ref, state, refresh=True)
        credential = credential_for(ref.registry, self._credentials)
        if authorization is None:
            raise RegistryUnauthorizedError.about(
                ref, "authentication required and no credentials are configured for this registry"
            )
        request_headers["Authorization"] = authorization
        response = await self._send(ref, session, method, url, request_headers)
        if response.status in (401, 403):
            suffix = await error_suffix(response)
            response.release()
            who = f"as user {credential.username!r}" if credential else "anonymously"
            raise RegistryUnauthorizedError.about(
                ref, f"unauthorized {who}: the registry refused the credentials{suffix}"
            )
        return response

    async def _send(
        self,
        ref: ImageReference,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        headers: Mapping[str, str],
    ) -> aiohttp.ClientResponse:
        try:
            async with asyncio.timeout(HEAD_SECONDS):
                response = await session.request(method, url, headers=headers)
        except aiohttp.ClientConnectorError as exc:
            raise RegistryUnreachableError.about(ref, f"cannot connect: {exc}") from exc
        except TimeoutError as exc:
            raise RegistryUnreachableError.about(
                ref, f"{method} {url.path}: no whole answer head within {HEAD_SECONDS:g} s"
            ) from exc
        except aiohttp.ClientError as exc:
            raise RegistryUnreachableError.about(ref, f"request failed: {exc!r}") from exc
        refused = coding_refusal(response)
        if refused is not None:
            response.close()  # its body is not read
            raise RegistryCodingError.about(ref, f"{method} {url.path}: {refused}")
        return response

    async def _authorization(
        self, ref: ImageReference, state: _RegistryAuth, *, refresh: bool
    ) -> str | None:
        challenge = state.challenge
        if challenge is None:
            return None
        credential = credential_for(ref.registry, self._credentials)
        if challenge.scheme == "basic":
            if credential is None:
                return None
            return basic_authorization(credential)
        scope = f"repository:{ref.repository}:pull"
        cached = state.tokens.get(scope)
        if cached is not None and not refresh and cached[1] > time.monotonic():
            return f"Bearer {cached[0]}"
        token, lifetime = await self._fetch_token(ref, challenge, scope, credential)
        # Renew a little early so a token never expires between two requests of one pull.
        state.tokens[scope] = (token, time.monotonic() + max(lifetime - 10, 1))
        return f"Bearer {token}"

    async def _fetch_token(
        self,
        ref: ImageReference,
        challenge: Challenge,
        scope: str,
        credential: RegistryCredential | None,
    ) -> tuple[str, float]:
        realm = challenge.params.get("realm")
        if not realm:
            raise RegistryUnauthorizedError.about(ref, "bearer challenge without a token realm")
        query = {"scope": scope}
        if "service" in challenge.params:
            query["service"] = challenge.params["service"]
        token_url = URL(realm).update_query(query)
        headers = {"Authorization": basic_authorization(credential)} if credential else {}
        session = self._session()
        try:
            try:
                async with asyncio.timeout(HEAD_SECONDS):
                    response = await session.get(token_url, headers=headers)
            except TimeoutError:
                raise BodyTooSlowError(f"no whole answer head within {HEAD_SECONDS:g} s") from None
            async with response:
                if response.status in (401, 403):
                    who = f"user {credential.username!r}" if credential else "anonymous access"
                    raise RegistryUnauthorizedError.about(
                        ref,
                        f"token service {token_url.host} refused {who}"
                        f"{await error_suffix(response)}",
                    )
                if response.status != 200:
                    raise RegistryResponseError(
                        registry=ref.registry,
                        reference=str(ref),
                        status=response.status,
                        message=f"token service {token_url.host} answered HTTP {response.status}",
                    )
                raw = await read_at_most(response, _MAX_TOKEN_RESPONSE_BYTES)
        except (BodyCodingError, BodyTooSlowError) as error:
            raise body_error(ref, f"token service {token_url.host}", error) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise RegistryUnreachableError.about(
                ref, f"token service {token_url.host} unreachable: {exc!r}"
            ) from exc
        try:
            document = json.loads(raw) if raw is not None else None
        except (ValueError, UnicodeDecodeError, RecursionError):  # nested past Python's stack
            document = None
        if not isinstance(document, dict):
            document = {}
        token = document.get("token") or document.get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryUnauthorizedError.about(
                ref, f"token service {token_url.host} returned no token"
            )
        expires_in = document.get("expires_in", 60)
        lifetime = float(expires_in) if isinstance(expires_in, int | float) else 60.0
        return token, lifetime
