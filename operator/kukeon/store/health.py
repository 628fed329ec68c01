"""Whether etcd is known to be away, so requests can be refused at once meanwhile.

Each request retries transient failures for the whole retry budget (20 s by default)
before it is ``Unavailable``. While etcd is away (stopped, partitioned, every member
down) that made every API call wait the budget before its 503, each holding a handler
meanwhile, so a client retrying in a loop piled them up. kube-apiserver fails a request at
its own timeout too, but kukeond knows: once one request has spent its whole budget,
etcd is *away* until something answers again. Meanwhile a request first waits at most
``CHECK_WAIT_SECONDS`` for the one probe in flight (a linearizable count-only range of
one key, which needs a leader and quorum as every request does; one at a time, however
many requests ask, and none sooner than ``PROBE_MIN_GAP_SECONDS`` after the last failed):
etcd answered, the request goes on (so the first request after etcd is back is served);
else it is refused with ``EtcdAway`` (a 503 with ``Retry-After``; nothing was sent, so a
write surely was not applied). Without requests, a background loop probes with backoff
up to ``PROBE_MAX_SECONDS``. It is said once in the log when it begins and once when it
ends (with how long), never per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from kukeon.cancelling import cancel_and_wait
from kukeon.retrying import Backoff

from .errors import EtcdAway

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 1
"""The ``Retry-After`` of a refusal."""
CHECK_WAIT_SECONDS = 0.5
"""How long a request waits for the probe before it is refused."""
PROBE_TIMEOUT_SECONDS = 2.0
"""The deadline of one probe (an etcd that hangs, SIGSTOPped or partitioned)."""
PEER_ANSWER_TIMEOUT_SECONDS = PROBE_TIMEOUT_SECONDS + 0.5
"""The longest a fleet node takes to tell a peer whether it reaches etcd (its probe's
deadline, and a margin; ``daemon/peerfence.py``)."""
PEER_ASK_TIMEOUT_SECONDS = PEER_ANSWER_TIMEOUT_SECONDS + 1.5
"""The longest a node cut off from etcd waits for its peers' answers before it fences: a
fence comes up to this late (``fenceAfterSeconds`` keeps below the replacement by it)."""
PROBE_MIN_GAP_SECONDS = 0.5
"""After a failed probe, requests are refused without another for this long (an etcd
that refuses connections would otherwise be asked once per request)."""
PROBE_FIRST_SECONDS = 0.25
PROBE_MAX_SECONDS = 2.0
"""The background probe's longest wait between attempts: etcd back is noticed within
this (and a probe's deadline) even when no request comes."""


class StoreHealth:
    """etcd's reachability as the requests through one client have found it."""

    def __init__(
        self,
        probe: Callable[[], Awaitable[bool]],
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``probe``: one cheap request; True when etcd answered (whatever it said),
        False (or an exception) when it did not."""
        self._probe = probe
        self._clock = clock
        self._away_since: float | None = None
        self._reason = ""
        self._probing: asyncio.Task[bool] | None = None
        self._last_failed_probe = float("-inf")
        self._prober: asyncio.Task[None] | None = None
        self._back = asyncio.Event()
        self._back.set()

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    @property
    def away(self) -> bool:
        return self._away_since is not None

    async def check(self, what: str) -> None:
        """Return when etcd is not known away, or the probe finds it back; else raise
        ``EtcdAway`` within ``CHECK_WAIT_SECONDS`` (nothing of the request is sent)."""
        if self._away_since is None:
            return
        probe = self._probe_in_flight()
        if probe is not None:
            try:
                async with asyncio.timeout(CHECK_WAIT_SECONDS):
                    if await asyncio.shield(probe):
                        return
            except TimeoutError:
                pass
        if self._away_since is None:
            return  # a request or the background probe got an answer meanwhile
        seconds = self._now() - self._away_since
        raise EtcdAway(
            f"{what}: etcd is unavailable (unreachable for {seconds:.0f}s: {self._reason}); "
            f"not sent, ask again in {RETRY_AFTER_SECONDS}s",
            retry_after_seconds=RETRY_AFTER_SECONDS,
        )

    async def reachable(self) -> bool:
        """Whether etcd answers now: the probe in flight, or a new one (bounded by
        ``PROBE_TIMEOUT_SECONDS``); False at once right after one failed. However many
        ask, one probe at a time goes to etcd (a peer's question, ``daemon.peerfence``)."""
        probe = self._probe_in_flight()
        return False if probe is None else await asyncio.shield(probe)

    def _probe_in_flight(self) -> asyncio.Task[bool] | None:
        """The probe under way, or a new one; None right after one failed."""
        if self._probing is not None and not self._probing.done():
            return self._probing
        if self._now() - self._last_failed_probe < PROBE_MIN_GAP_SECONDS:
            return None
        self._probing = asyncio.get_running_loop().create_task(self._probe_once())
        return self._probing

    async def _probe_once(self) -> bool:
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
                back = await self._probe()
        except Exception as error:  # any failure of the probe: still away
            log.debug("etcd probe failed: %r", error)
            back = False
        if back:
            self.answered()
        else:
            self._last_failed_probe = self._now()
        return back

    def failed(self, reason: str) -> None:
        """A request spent its whole retry budget: etcd is away until it answers again."""
        self._reason = reason
        if self._away_since is not None:
            return
        self._away_since = self._now()
        self._back.clear()
        log.warning(
            "etcd is unreachable (%s): requests are refused at once (503, Retry-After) "
            "until it answers again",
            reason,
        )
        if self._prober is None or self._prober.done():
            self._prober = asyncio.get_running_loop().create_task(self._probe_until_back())
            self._prober.add_done_callback(self._prober_ended)

    def answered(self) -> None:
        """etcd answered a request or a probe: no longer away."""
        if self._away_since is None:
            return
        seconds = self._now() - self._away_since
        self._away_since = None
        self._back.set()
        log.warning("etcd answers again after %.1fs unreachable", seconds)

    async def wait_back(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when etcd, known away, answers again meanwhile (a
        retry loop's wait: it tries again as soon as etcd is back)."""
        if self._back.is_set():
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._back.wait()

    async def _probe_until_back(self) -> None:
        """Probe with backoff while etcd is away and no request asks (theirs count too)."""
        backoff = Backoff(PROBE_FIRST_SECONDS, PROBE_MAX_SECONDS, jitter=0.5)
        while self._away_since is not None:
            await backoff.sleep()
            if (probe := self._probe_in_flight()) is not None:
                await asyncio.shield(probe)

    def _prober_ended(self, task: asyncio.Task[None]) -> None:
        """The prober ends when etcd answers or at close. Anything else is a bug: said here,
        and requests go back to retrying by themselves rather than being refused for ever."""
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error("the etcd probe failed: %r", error, exc_info=error)
            self._away_since = None
            self._back.set()

    async def close(self) -> None:
        """Stop probing (the client is being closed)."""
        tasks = [task for task in (self._prober, self._probing) if task is not None]
        self._prober = self._probing = None
        await cancel_and_wait(*tasks)


def health_of(store: object) -> StoreHealth | None:
    """The health of a registry's etcd client (``Registry.client.health``); None for a
    store without one (a unit test's in-memory fake)."""
    health = getattr(getattr(store, "client", None), "health", None)
    return health if isinstance(health, StoreHealth) else None


async def pause(health: StoreHealth | None, seconds: float) -> None:
    """A retry loop's wait between attempts: ``seconds``, ended at once when etcd, known
    away, answers again (a loop backed off to its cap resumes with etcd, not up to a cap
    later)."""
    if health is None:
        await asyncio.sleep(seconds)
    else:
        await health.wait_back(seconds)
