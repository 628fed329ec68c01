"""Why a cell could not be built: the state and reason its status says, and whether retrying
can help, for each failure a build raises (``classify_build_failure``); and what the status
says when the build that failed was an in-place update whose old containers still run
(``image_hold``)."""

from __future__ import annotations

from dataclasses import dataclass

from kukeon.api import Cell, CellState, ContainerState, ContainerStatus
from kukeon.api.containerstatus import IMAGE_PULL_BACK_OFF
from kukeon.framework import HandlerError, PermanentError, TemporaryError
from kukeon.runtime.bindpins import BindSourceRefusedError
from kukeon.runtime.cgroups import CgroupError
from kukeon.runtime.containerd.errors import ContainerdUnavailableError, RootfsUnreachableError
from kukeon.runtime.containerd.layersize import LayerRefusedError
from kukeon.runtime.containerd.spec import RuntimeSpecError
from kukeon.runtime.idranges import IdRangeClashError, IdRangeError
from kukeon.runtime.network import NetworkError

from .cellexec import CommandUnusableError, InitOomKilledError
from .cellfiles import SecretUnavailableError
from .cellpids import PidsLimitReachedError
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


@dataclass(frozen=True, slots=True)
class ImageHold:
    """A cell whose containers were changed in place to an image the node cannot get,
    while their containers of the old image run on (nothing is replaced before its new
    image is there): ``Degraded`` with reason ``ImagePullBackOff`` and this ``message``,
    not ``Failed``, since the cell runs and serves what it served (READY as observed);
    ``containers`` the statuses to write, those waiting for the image saying so."""

    message: str
    containers: list[ContainerStatus]


_RUNS = (ContainerState.RUNNING, ContainerState.PAUSED)


def image_hold(cell: Cell, error: ImageUnavailableError) -> ImageHold | None:
    """What the status says when `error` is an in-place image update the node cannot
    carry out yet: every container naming the image runs one made from another image (its
    status as last reported). None otherwise (a new cell or container: nothing runs, the
    cell is ``Failed`` with ``ImageUnavailable``)."""
    if isinstance(error, InvalidImageReferenceError):
        return None
    wanted = [c.id for c in cell.spec.containers if c.image == error.image]
    statuses = {status.id: status for status in cell.status.containers}
    held = [statuses.get(cid) for cid in wanted]
    if not held or any(
        status is None
        or status.state not in _RUNS
        or not status.pid
        or not status.image
        or status.image == error.image
        for status in held
    ):
        return None
    olds = {status.id: status.image for status in held if status is not None}
    retry = "retried with back-off, at once when the image is imported or pulled on this node"
    said = {
        cid: f"{error}; it keeps running image {old!r} until the new one can be started ({retry})"
        for cid, old in olds.items()
    }
    kept = ", ".join(f"{cid} keeps running image {old!r}" for cid, old in olds.items())
    message = f"container {kept} until its new image can be started: {error} ({retry})"
    containers = [
        status.model_copy(update={"reason": IMAGE_PULL_BACK_OFF, "message": said[status.id]})
        if status.id in said
        else status
        for status in cell.status.containers
    ]
    return ImageHold(message=message, containers=containers)
