"""A server too busy to take a request (429, or a 5xx with ``Retry-After``): wait what it
asks, ask again, a few times.

kukeond answers ``429 Too Many Requests`` with ``Retry-After: 1`` before doing anything
when a token holder is past its in-flight bounds (``kukeon.apiserver.inflight``): too many
short requests being answered at once, or too many watches, followed logs and sessions
open. As client-go, every request and every open of a long-running one (a watch, a
followed stream, a WebSocket session) waits the ``Retry-After`` and asks again, up to
``retries`` times; then the last refusal is raised, saying its code and how long the
client waited, with the server's own message. A 429 once a long-running request is open
cannot happen: it is only ever the answer to an open.

A server error (5xx) is asked again the same way when, and only when, it carries a
``Retry-After`` (client-go's ``checkWait``: a 503 from a proxy or a server starting, a 504
asking to be retried): the server says the request may be sent again and when. Without
one it is raised at once (a 504 of the request deadline: a write may have been applied).
One 5xx with ``Retry-After`` is not retried: a ``ResourceVersionTooLarge`` 504, since the
server has just waited for that revision, and its answer is the caller's to give (a
reflector lists again at once, as after a 410).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from kukeon.client.errors import ApiRequestError

T = TypeVar("T")

TOO_MANY_REQUESTS = 429
TOO_LARGE_CAUSE = "ResourceVersionTooLarge"
BUSY_RETRIES = 5
BUSY_RETRY_SECONDS = 1.0
"""The wait when the server names none (kukeond names 1 s, ``inflight.RETRY_AFTER_SECONDS``)."""
MAX_RETRY_SECONDS = 10.0
"""The longest one wait, whatever a server asks: a command never hangs on a bad header."""


def retry_after_seconds(header: str | None, *, now: float | None = None) -> float | None:
    """The wait a ``Retry-After`` header asks for (RFC 9110: delay-seconds or an HTTP
    date); None when absent or unreadable, 0 for a date already past."""
    if header is None:
        return None
    text = header.strip()
    if text.isascii() and text.isdigit():  # not '²', which float() refuses
        return float(text)
    import email.utils  # only for a date, which kukeond never sends: kukectl starts light

    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT; a date without a zone is taken as such
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True)
class BusyRetry:
    """How a client answers a 429: ``retries`` more tries, each after the server's
    ``Retry-After`` (``default_wait`` without one), at most ``max_wait`` each."""

    retries: int = BUSY_RETRIES
    default_wait: float = BUSY_RETRY_SECONDS
    max_wait: float = MAX_RETRY_SECONDS

    def retries_on(self, refusal: ApiRequestError) -> bool:
        """Whether ``refusal`` is asked again: a 429, or a 5xx whose ``Retry-After`` says
        when (not a ``ResourceVersionTooLarge``: module docstring)."""
        if refusal.code == TOO_MANY_REQUESTS:
            return True
        return (
            refusal.code >= 500
            and retry_after_seconds(refusal.retry_after) is not None
            and not any(cause.reason == TOO_LARGE_CAUSE for cause in refusal.causes)
        )

    def wait_for(self, refusal: ApiRequestError) -> float:
        asked = retry_after_seconds(refusal.retry_after)
        return min(self.max_wait, self.default_wait if asked is None else asked)

    async def call(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()``'s result, asked again after each 429 or 5xx with ``Retry-After``;
        the other failures, and the last of those (``exhausted``), are raised."""
        waited = 0.0
        tries = 0
        while True:
            tries += 1
            try:
                return await attempt()
            except ApiRequestError as refusal:
                if not self.retries_on(refusal):
                    raise
                if tries > self.retries:
                    raise exhausted(refusal, tries, waited) from refusal
                wait = self.wait_for(refusal)
            # Nothing of the request was done (the server refuses before anything else), or
            # the server said it may be sent again (a 5xx's Retry-After).
            await asyncio.sleep(wait)
            waited += wait


def exhausted(refusal: ApiRequestError, tries: int, waited: float) -> ApiRequestError:
    """The last refusal retried, saying so: the code, the tries, the time waited, the
    server's words."""
    return ApiRequestError(
        refusal.code,
        refusal.reason,
        f"the server answered {refusal.code} {refusal.reason} to {tries} tries in "
        f"{waited:.0f}s: {refusal.message}",
        kind=refusal.kind,
        name=refusal.name,
        causes=refusal.causes,
        retry_after=refusal.retry_after,
    )
