"""A watch that survives: reconnect from the last revision seen, relist on 410 Gone.

``ApiClient.watch`` is one HTTP stream; it ends when the server restarts, when a proxy or
the server's own timeout closes it, and answers 410 Gone when etcd has compacted the
revision it was asked to resume from. :func:`follow` turns that into one unbroken
sequence of events, as a Kubernetes reflector does:

- every event (bookmarks included) advances the revision to resume from; a stream that
  ends or breaks is opened again from there, after a bounded exponential backoff
  (reset as soon as a stream delivers something);
- 410 Gone (as the HTTP answer or as an ERROR event) relists: the listed objects that are
  new or changed since they were last seen come out as ADDED/MODIFIED, those that
  vanished as DELETED (carrying their last known state), then the watch goes on from the
  list's revision;
- events the caller has already seen (same object at the same or an older revision,
  deletions of objects it never saw) are dropped, so a resumed stream never repeats;
- the first connection is not retried: a server that cannot be reached at all, or a
  request it refuses (400, 401, 403, 404), is the caller's error at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from kukeon.api import AnyResource, Kind, key_of

from .client import ApiClient, ApiRequestError, ClientWatchEvent, ServerUnreachable


@dataclass(frozen=True)
class Backoff:
    """Waits between reconnection attempts: initial, doubled each failure, capped."""

    initial: float = 0.2
    maximum: float = 10.0

    def next(self, current: float) -> float:
        return min(self.maximum, max(self.initial, current * 2))


def _revision(res: AnyResource) -> int:
    try:
        return int(res.metadata.resource_version or 0)
    except ValueError:
        return 0


def _retryable(error: ApiRequestError) -> bool:
    return error.code == 429 or error.code >= 500


async def follow(
    client: ApiClient,
    kind: Kind,
    scope: Sequence[str] = (),
    *,
    label_selector: str | None = None,
    name: str | None = None,
    field_selector: str | None = None,
    stop_after: float | None = None,
    backoff: Backoff = Backoff(),
    notify: Callable[[str], None] | None = None,
    initial: Sequence[AnyResource] = (),
    initial_revision: int | None = None,
) -> AsyncIterator[ClientWatchEvent]:
    """Existing objects as ADDED, then every change, until ``stop_after`` seconds have passed
    (forever without one). ``notify`` hears one line per interruption.

    A caller that has listed already passes its list (``initial``, at ``initial_revision``):
    those objects are not delivered again and the watch starts after that revision."""
    loop = asyncio.get_running_loop()
    deadline = None if stop_after is None else loop.time() + stop_after
    known: dict[tuple[str, ...], AnyResource] = {key_of(item): item for item in initial}
    revision: int | None = initial_revision
    relist = False
    started = initial_revision is not None  # the caller reached the server already
    delay = 0.0
    outage_reported = False

    def remaining() -> float | None:
        return None if deadline is None else deadline - loop.time()

    def fresh(event: ClientWatchEvent) -> bool:
        """Record the event; False when it repeats something already delivered."""
        assert event.object is not None
        key = key_of(event.object)
        seen = known.get(key)
        if event.type == "DELETED":
            if seen is None:
                return False
            del known[key]
            return True
        if seen is not None and _revision(seen) >= _revision(event.object):
            return False
        known[key] = event.object
        return True

    while True:
        left = remaining()
        if left is not None and left <= 0:
            return
        problem: str
        try:
            if relist:
                listing = await client.list(
                    kind,
                    scope,
                    label_selector=label_selector,
                    name=name,
                    field_selector=field_selector,
                )
                listed = {key_of(item): item for item in listing.items}
                for key, item in listed.items():
                    seen = known.get(key)
                    if seen is None or _revision(seen) != _revision(item):
                        known[key] = item
                        yield ClientWatchEvent(
                            "ADDED" if seen is None else "MODIFIED", item, _revision(item)
                        )
                for key in [key for key in known if key not in listed]:
                    gone = known.pop(key)
                    yield ClientWatchEvent("DELETED", gone, listing.resource_version)
                revision = listing.resource_version
                relist = False
            stream = client.watch(
                kind,
                scope,
                resource_version=revision,
                label_selector=label_selector,
                name=name,
                field_selector=field_selector,
                timeout_seconds=None if left is None else max(left, 0.001),
            )
            async for event in stream:
                started = True
                delay = 0.0
                outage_reported = False
                if event.resource_version:
                    revision = max(revision or 0, event.resource_version)
                if event.object is None or not fresh(event):
                    continue
                yield event
            problem = "the watch stream ended"
        except ApiRequestError as error:
            if error.code == 410 and started:
                relist = True
                problem = "the watch's revision was compacted; listing again"
                delay = 0.0
            elif started and _retryable(error):
                problem = f"the server answered {error.code}: {error.message}"
            else:
                raise
        except ServerUnreachable as error:
            if not started:
                raise
            problem = str(error)
            if notify is not None and not outage_reported:
                notify(f"{problem}; reconnecting")
                outage_reported = True
        if relist and notify is not None:
            notify(problem)
        if revision is None:
            # Nothing was seen to resume from: only a list tells what happened meanwhile.
            relist = True
        left = remaining()
        wait = delay if left is None else min(delay, max(left, 0.0))
        if wait > 0:
            await asyncio.sleep(wait)
        delay = backoff.next(delay)
