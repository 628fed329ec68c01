"""How a handler tells the framework what went wrong, and therefore what to do next.

A handler that cannot finish raises one of these instead of returning: the framework
records the failure in the object's ``status.reason``/``status.message`` and decides
from the class whether to try again (``TemporaryError`` and every unexpected exception,
with exponential backoff) or to wait for the user to change the object
(``PermanentError``). ``reason`` is the machine-readable CamelCase word written to
``status.reason``; the message is the human sentence written to ``status.message``.

``Requeue`` is no error: the pass did all it could for now and asks to run again after a
delay it knows (a container's restart back-off), as Kubernetes' ``RequeueAfter``.
"""

from __future__ import annotations

from dataclasses import dataclass

from kukeon.api import Kind


class HandlerError(Exception):
    """Base of the errors a handler raises on purpose."""

    default_reason = "HandlerFailed"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or self.default_reason


class TemporaryError(HandlerError):
    """Try again later: after ``delay`` seconds if given, else after the next backoff step,
    but no later than ``at_most`` seconds when given (a deadline the object has anyway)."""

    default_reason = "TemporaryFailure"

    def __init__(
        self,
        message: str,
        *,
        delay: float | None = None,
        reason: str | None = None,
        at_most: float | None = None,
    ) -> None:
        super().__init__(message, reason=reason)
        for name, seconds in (("delay", delay), ("at_most", at_most)):
            if seconds is not None and seconds < 0:
                raise ValueError(f"TemporaryError {name} must be >= 0, got {seconds}")
        self.delay = delay
        self.at_most = at_most


@dataclass(frozen=True, slots=True)
class Awaited:
    """The one object a waiting handler waits for, as the handler saw it.

    ``revision`` is the resourceVersion it read (0: the object was absent). The framework
    runs the waiting object again as soon as a newer version of ``kind``/``key`` (or its
    deletion) reaches the operator's watch, and at once if that already happened while
    the handler ran; the retry ``delay`` stays as a safety net.
    """

    kind: Kind
    key: tuple[str, ...]
    revision: int = 0


class WaitingError(TemporaryError):
    """Not a failure: the object waits for another one (its parent, its children).

    Run again like a :class:`TemporaryError` and recorded in the status the same way, but
    no error: counted as ``waiting`` (no retry in ``kukeon_reconcile_retries_total``),
    logged at info level once when the wait starts (a reason or message the object's last
    pass did not end with) and at debug level while it goes on, as an Event is said once
    and then counted: the order of a hierarchy's creation and deletion makes these waits
    routine, and warnings are for what an operator should look at. ``on`` names the
    object waited for, when there is one: its change wakes this one (``Awaited``).
    ``said_by_handler``: the handler said the wait where it belongs itself (a node's entry
    of a realm, space or stack), so nothing is recorded in the object's own status.
    """

    default_reason = "Waiting"

    def __init__(
        self,
        message: str,
        *,
        delay: float | None = None,
        reason: str | None = None,
        on: Awaited | None = None,
    ) -> None:
        super().__init__(message, delay=delay, reason=reason)
        self.on = on
        self.said_by_handler = False


class PermanentError(HandlerError):
    """Retrying cannot help: wait until the object's spec or metadata changes."""

    default_reason = "PermanentFailure"


class Requeue(Exception):  # noqa: N818 -- no error: its name must not say one
    """Not a failure: run the object again after ``delay`` seconds, exactly.

    For a wait the handler planned (a crash-looping container's restart back-off): the
    handler has written what the object's status should say itself, so nothing is
    recorded in it, the run counts as ``requeued`` (not an error), is logged at debug
    level (it repeats every pass of the wait), and neither grows nor resets into the
    failure backoff: the next real failure backs off from its first step. A change of the
    object still runs it at once. ``reason`` is the log's word for the wait.

    ``keeps_backoff``: a wait that is one step of a retry, not its end (a pass that
    started an image pull beside it: the pull's failure is the pass after's), leaves the
    failure count as it was, so the next failure backs off one step further; otherwise
    every failed pull, a wait then a failure, would retry at the first step for ever.
    """

    def __init__(
        self, message: str, *, delay: float, reason: str, keeps_backoff: bool = False
    ) -> None:
        super().__init__(message)
        if delay < 0:
            raise ValueError(f"Requeue delay must be >= 0, got {delay}")
        self.delay = delay
        self.reason = reason
        self.keeps_backoff = keeps_backoff
