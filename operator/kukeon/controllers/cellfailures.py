"""Why a cell could not be built: the state and reason its status says, and whether retrying
can help, for each failure a build raises (``classify_build_failure``); and what the status
says when some containers failed while the others were converged, those whose former
spec's container runs on held, not failed (``failed_containers``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kukeon.api import Cell, CellState, ContainerState, ContainerStatus
from kukeon.api.containerstatus import IMAGE_PULL_BACK_OFF
from kukeon.framework import HandlerError, PermanentError, Requeue, TemporaryError
from kukeon.runtime.bindpins import BindSourceRefusedError
from kukeon.runtime.cgroups import CgroupError
from kukeon.runtime.containerd.errors import ContainerdUnavailableError, RootfsUnreachableError
from kukeon.runtime.containerd.layersize import LayerRefusedError
from kukeon.runtime.containerd.remap import RemapError
from kukeon.runtime.containerd.spec import RuntimeSpecError
from kukeon.runtime.idranges import IdRangeClashError, IdRangeError
from kukeon.runtime.network import NetworkError

from .cellexec import CommandUnusableError, InitOomKilledError
from .cellfiles import SecretUnavailableError
from .cellpids import PidsLimitReachedError
from .cellplan import ProbeView
from .cellprogress import ordered_containers
from .images import ImageUnavailableError, InvalidImageReferenceError

# Why a cell could not be built, most specific first: the state and reason written to its
# status, and whether retrying can help (a spec the runtime refuses waits for a new spec;
# everything else is a host or registry condition that may clear by itself).
_FAILURE_TABLE: tuple[tuple[type[Exception], CellState, str, type[HandlerError]], ...] = (
    (RuntimeSpecError, CellState.FAILED, "InvalidSpec", PermanentError),
    # CommandNotFound / CommandNotExecutable / WorkingDirUnusable: the error's own reason.
    (CommandUnusableError, CellState.FAILED, "RunContainerError", PermanentError),
    (InvalidImageReferenceError, CellState.FAILED, "InvalidImageReference", PermanentError),
    (SecretUnavailableError, CellState.FAILED, "SecretUnavailable", TemporaryError),
    # A bind source through a link below its allowed directory (the tenant may remove it).
    (BindSourceRefusedError, CellState.FAILED, "BindSourceRefused", TemporaryError),
    (ImageUnavailableError, CellState.FAILED, "ImageUnavailable", TemporaryError),
    # A layer too large for the room unpacking has (it may free up) or corrupt.
    (LayerRefusedError, CellState.FAILED, "ImageUnavailable", TemporaryError),
    (NetworkError, CellState.FAILED, "NetworkFailed", TemporaryError),
    (CgroupError, CellState.FAILED, "CgroupFailed", TemporaryError),
    # Under its realm's memory limit, the realm's other containers may leave room later.
    (InitOomKilledError, CellState.FAILED, "OOMKilled", TemporaryError),
    # A pids cgroup above the container at its limit: others there may exit, or it is raised.
    (PidsLimitReachedError, CellState.FAILED, "PidsLimitReached", TemporaryError),
    # Another installation on the host claimed the realm's ids first (docs/user-namespaces.md).
    (IdRangeClashError, CellState.FAILED, "UserNamespaceRangeClash", TemporaryError),
    (IdRangeError, CellState.FAILED, "UserNamespaceUnavailable", TemporaryError),
    (RootfsUnreachableError, CellState.FAILED, "UserNamespaceUnavailable", TemporaryError),
    # The image's files could not be shifted to the realm's ids (its snapshot not mounted,
    # a file refused): said with its path; a host condition may clear, an image re-imported.
    (RemapError, CellState.FAILED, "UserNamespaceUnavailable", TemporaryError),
    # containerd does not answer: whatever was last reported may no longer be true.
    (ContainerdUnavailableError, CellState.UNKNOWN, "HostUnobservable", TemporaryError),
)
BUILD_FAILURES = tuple(entry[0] for entry in _FAILURE_TABLE)


def classify_build_failure(error: Exception) -> tuple[CellState, str, type[HandlerError]]:
    for kind, state, reason, retry in _FAILURE_TABLE:
        if isinstance(error, kind):
            if isinstance(error, CommandUnusableError):
                reason = error.reason
            return state, reason, retry
    raise TypeError(f"not a build failure: {error!r}")


CONTAINER_FAILURES: tuple[type[Exception], ...] = (
    RuntimeSpecError,
    CommandUnusableError,
    InvalidImageReferenceError,
    SecretUnavailableError,
    BindSourceRefusedError,
    ImageUnavailableError,
    LayerRefusedError,
    InitOomKilledError,
)
"""The failures of one container (its spec, image, secrets, binds, command): the pass goes
on with its siblings (as the kubelet handles each container apart); the others (network,
cgroup, user namespace, containerd) are the whole cell's."""


@dataclass(frozen=True, slots=True)
class ContainerFailure:
    """Why one container of the cell could not be converged in this pass."""

    container: str
    error: Exception
    untouched: bool
    """Raised before anything of it in containerd was changed (its build): a container of
    its former spec, running as last reported, runs on."""


@dataclass(frozen=True, slots=True)
class FailedContainers:
    """What the cell's status says of a pass some containers failed: ``Degraded`` when each
    of them runs on from its former spec (the cell serves what it served), else ``Failed``;
    ``statuses`` those containers' statuses, ``events`` one Warning text a failure."""

    state: CellState
    reason: str
    message: str
    retry: type[HandlerError]
    statuses: dict[str, ContainerStatus]
    events: tuple[str, ...]
    failures: tuple[ContainerFailure, ...]
    held: frozenset[str] = frozenset()
    """The containers that run on from their former spec (their probes go on)."""


_RUNS = (ContainerState.RUNNING, ContainerState.PAUSED)


def image_of(failure: ContainerFailure) -> str | None:
    error = failure.error
    return error.image if isinstance(error, ImageUnavailableError) else None


def _held(failure: ContainerFailure, status: ContainerStatus | None, reason: str) -> str:
    """The message of a container that runs on from its former spec."""
    error = failure.error
    if reason == IMAGE_PULL_BACK_OFF:
        retry = "retried with back-off, at once when the image is imported or pulled on this node"
        old = status.image if status is not None else None
        return (
            f"container {failure.container} keeps running image {old!r} until its new image "
            f"can be started: {error} ({retry})"
        )
    retry = "retried with back-off" if classify_build_failure(error)[2] is TemporaryError else ""
    when = f" ({retry})" if retry else " (until its spec changes)"
    return (
        f"container {failure.container} keeps running as it was, its spec cannot be "
        f"started: {error}{when}"
    )


def missing_images(*errors: Exception) -> list[str]:
    """The images these failures wait for (their import or pull requeues the cell)."""
    return [
        error.image
        for error in errors
        if isinstance(error, ImageUnavailableError)
        and not isinstance(error, InvalidImageReferenceError)
    ]


def failed_containers(
    cell: Cell,
    failures: list[ContainerFailure],
    views: Callable[[str], ProbeView | None] | None = None,
) -> FailedContainers:
    """The status of a pass whose ``failures`` (each container's, in the cell's order) the
    other containers were converged beside; ``cell`` as last written (its statuses as last
    reported). A container whose build failed while its task of the former spec runs is
    held (reason ``ImagePullBackOff`` for an image, else the failure's own, message naming
    it and why); one that has nothing running (new, or its old container removed) is
    ``Failed``, and so is the cell then, with the failure's reason and message. ``views``:
    what the probes of each container's running task say now (a held one's go on)."""
    previous = {status.id: status for status in cell.status.containers}
    statuses: dict[str, ContainerStatus] = {}
    held: list[tuple[str, str]] = []
    failed: list[tuple[str, str]] = []
    retries: set[type[HandlerError]] = set()
    for failure in failures:
        _state, reason, retry = classify_build_failure(failure.error)
        retries.add(retry)
        status = previous.get(failure.container)
        if failure.untouched and status is not None and status.state in _RUNS and status.pid:
            if missing_images(failure.error) and status.image not in (None, image_of(failure)):
                reason = IMAGE_PULL_BACK_OFF
            message = _held(failure, status, reason)
            update: dict[str, Any] = {"reason": reason, "message": message}
            view = views(failure.container) if views is not None else None
            if view is not None and view.pid == status.pid:
                update.update(started=view.started, ready=view.ready, probes=list(view.probes))
            statuses[failure.container] = status.model_copy(update=update)
            held.append((reason, message))
            continue
        message = str(failure.error)
        base = status if status is not None else ContainerStatus(id=failure.container)
        statuses[failure.container] = base.model_copy(
            update={
                "state": ContainerState.FAILED,
                "pid": None,
                "ready": False,
                "reason": reason,
                "message": message,
            }
        )
        failed.append((reason, message))
    said = failed + held
    return FailedContainers(
        state=CellState.FAILED if failed else CellState.DEGRADED,
        reason=said[0][0],
        message="; ".join(message for _, message in said),
        retry=TemporaryError if TemporaryError in retries else PermanentError,
        statuses=statuses,
        events=tuple(f"{reason}: {message}" for reason, message in said),
        failures=tuple(failures),
        held=frozenset(id for id, status in statuses.items() if status.state in _RUNS),
    )


class ContainersFailedError(Exception):
    """Some containers of the cell failed in a pass that converged the others; the cell's
    status says so already (``failed``); ``wake_in`` a sibling's restart due later."""

    def __init__(self, failed: FailedContainers, *, wake_in: float | None) -> None:
        super().__init__(failed.message)
        self.failed = failed
        self.wake_in = wake_in

    def retry(self) -> HandlerError | Requeue:
        """How the framework comes back: after its back-off when a failure may clear by
        itself, but no later than ``wake_in`` (a sibling's restart, a removed container's
        grace ending); else when a sibling's restart is due (or the spec changes)."""
        failed = self.failed
        if failed.retry is PermanentError:
            if self.wake_in is not None:
                return Requeue(failed.message, delay=self.wake_in, reason=failed.reason)
            return PermanentError(failed.message, reason=failed.reason)
        return TemporaryError(failed.message, reason=failed.reason, at_most=self.wake_in)


def failed_fields(
    cell: Cell, failed: FailedContainers, converged: list[ContainerStatus]
) -> dict[str, Any]:
    """The status fields of a pass some containers failed (`failed_containers`): theirs
    beside the converged ones', in the cell's order; the readiness latch left as it was."""
    found = {status.id: status for status in converged} | failed.statuses
    return {
        "state": failed.state,
        "reason": failed.reason,
        "message": failed.message,
        "ready_observed": cell.status.ready_observed,
        "containers": [found[c.id] for c in ordered_containers(cell) if c.id in found],
    }
