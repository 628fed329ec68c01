"""A watch that survives: reconnect from the last revision seen, relist on 410 Gone.

``ApiClient.watch`` is one HTTP stream; it ends when the server restarts, when a proxy or
the server's own timeout closes it, and answers 410 Gone when etcd has compacted the
revision it was asked to resume from. :func:`follow` turns that into one unbroken
sequence of events, as a Kubernetes reflector does:

- every event (bookmarks included) advances the revision to resume from; a stream that
  ends or breaks is opened again from there, after a bounded exponential backoff
  (reset as soon as a stream delivers something);
- 410 Gone (as the HTTP answer or as an ERROR event) relists: the listed objects that are
  new or changed since they were last seen (by content: after a rewound history a revision
  can come back with other content) come out as ADDED/MODIFIED, those that
  vanished as DELETED (carrying their last known state), then the watch goes on from the
  list's revision; so does a 504 ``ResourceVersionTooLarge`` (the revision to resume from
  is newer than the server's: its etcd was restored from an older backup), as client-go's
  reflector does, instead of asking again for a revision that may never come;
- events the caller has already seen (same object at the same or an older revision,
  deletions of objects it never saw) are dropped, so a resumed stream never repeats;
- the first connection is not retried: a server that cannot be reached at all, or a
  request it refuses (400, 401, 403, 404), is the caller's error at once; a first open
  the server is too busy for (429) is waited out as any request's (``ApiClient.busy``:
  its ``Retry-After``, five times), then is the caller's error too;
- a reopen refused with 429 (the token holder's watches, followed logs and sessions at
  the server's bound) or 5xx goes on trying after the backoff, however long it takes:
  the watch the caller has is not ended by a server busy for a while (``notify`` hears
  it once).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from kukeon.api import AnyResource, Kind, key_of

from .apiclient import ApiClient, ApiRequestError, ClientWatchEvent, ObjectList, ServerUnreachable


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


TOO_LARGE_CAUSE = "ResourceVersionTooLarge"


def too_large(error: ApiRequestError) -> bool:
    """The server has not reached the revision asked for (a 504 whose cause says so)."""
    return error.code == 504 and any(cause.reason == TOO_LARGE_CAUSE for cause in error.causes)


class _Reflection:
    """What ``follow`` knows between streams: the objects delivered, where to resume from,
    whether the next stream must list first, and the state of an outage."""

    def __init__(self, initial: Sequence[AnyResource], initial_revision: int | None) -> None:
        self.known: dict[tuple[str, ...], AnyResource] = {key_of(item): item for item in initial}
        self.revision = initial_revision
        self.relist = False
        self.started = initial_revision is not None  # the caller reached the server already
        self.delay = 0.0
        self.outage_reported = False
        self.opens = 0  # watch streams asked for: the first is not a reconnect

    def fresh(self, event: ClientWatchEvent) -> bool:
        """Record the event; False when it repeats something already delivered."""
        assert event.object is not None
        key = key_of(event.object)
        seen = self.known.get(key)
        if event.type == "DELETED":
            if seen is None:
                return False
            del self.known[key]
            return True
        if seen is not None and _revision(seen) >= _revision(event.object):
            return False
        self.known[key] = event.object
        return True

    def relisted(self, listing: ObjectList) -> list[ClientWatchEvent]:
        """What changed between the objects delivered and a new list, which becomes known;
        the watch goes on from the list's revision."""
        changes: list[ClientWatchEvent] = []
        listed = {key_of(item): item for item in listing.items}
        for key, item in listed.items():
            seen = self.known.get(key)
            # Content, not only the revision: etcd restored from an older backup (410
            # HistoryRewound) numbers its new writes from a lower revision, so an object
            # can come back at the revision it had before, with other content.
            if seen is None or _revision(seen) != _revision(item) or seen != item:
                self.known[key] = item
                kind_of_change = "ADDED" if seen is None else "MODIFIED"
                changes.append(ClientWatchEvent(kind_of_change, item, _revision(item)))
        for key in [key for key in self.known if key not in listed]:
            gone = self.known.pop(key)
            changes.append(ClientWatchEvent("DELETED", gone, listing.resource_version))
        self.revision = listing.resource_version
        self.relist = False
        return changes

    def delivered(self, event: ClientWatchEvent) -> bool:
        """Note an event of the stream (the server is reachable); whether to pass it on."""
        self.started = True
        self.delay = 0.0
        self.outage_reported = False
        if event.resource_version:
            self.revision = max(self.revision or 0, event.resource_version)
        return event.object is not None and self.fresh(event)

    def refused(self, error: ApiRequestError, notify: Callable[[str], None] | None) -> str:
        """Why the stream stopped, for an answer worth waiting out; raises the others."""
        if error.code == 410 and self.started:
            self.relist = True
            self.delay = 0.0
            # Compacted, or the server's store went back to an older history (a restore):
            # the server's own words say which.
            return f"the server no longer has the watch's revision ({error.message}); listing again"
        if too_large(error) and self.started:
            self.relist = True
            return f"the server is behind the watch's revision ({error.message}); listing again"
        if error.code == 429 and self.opens <= 1:
            raise error  # the first open: its retries are spent, as a request's would be
        if self.started and _retryable(error):
            problem = f"the server answered {error.code}: {error.message}"
            if error.code == 429 and notify is not None and not self.outage_reported:
                notify(f"{problem}; waiting to watch again")
                self.outage_reported = True
            return problem
        raise error

    def unreachable(self, error: ServerUnreachable, notify: Callable[[str], None] | None) -> str:
        """Why the stream stopped when the server is away (the first connection raises)."""
        if not self.started:
            raise error
        problem = str(error)
        if notify is not None and not self.outage_reported:
            notify(f"{problem}; reconnecting")
            self.outage_reported = True
        return problem


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
    state = _Reflection(initial, initial_revision)
    selection = {"label_selector": label_selector, "name": name, "field_selector": field_selector}

    def remaining() -> float | None:
        return None if deadline is None else deadline - loop.time()

    while True:
        left = remaining()
        if left is not None and left <= 0:
            return
        problem: str
        try:
            if state.relist:
                for change in state.relisted(await client.list(kind, scope, **selection)):
                    yield change
            state.opens += 1
            stream = client.watch(
                kind,
                scope,
                resource_version=state.revision,
                timeout_seconds=None if left is None else max(left, 0.001),
                **selection,
            )
            async for event in stream:
                if state.delivered(event):
                    yield event
            problem = "the watch stream ended"
        except ApiRequestError as error:
            problem = state.refused(error, notify)
        except ServerUnreachable as error:
            problem = state.unreachable(error, notify)
        if state.relist and notify is not None:
            notify(problem)
        if state.revision is None:
            # Nothing was seen to resume from: only a list tells what happened meanwhile.
            state.relist = True
        left = remaining()
        wait = state.delay if left is None else min(state.delay, max(left, 0.0))
        if wait > 0:
            await asyncio.sleep(wait)
        state.delay = backoff.next(state.delay)
