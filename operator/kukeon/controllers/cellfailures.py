"""Why a cell could not be built: the state and reason its status says, and whether retrying
can help, for each failure a build raises (``classify_build_failure``)."""

from __future__ import annotations

from kukeon.api import CellState
from kukeon.framework import HandlerError, PermanentError, TemporaryError
from kukeon.runtime.bindpins import BindSourceRefusedError
from kukeon.runtime.cgroups import CgroupError
from kukeon.runtime.containerd.errors import ContainerdUnavailableError, RootfsUnreachableError
from kukeon.runtime.containerd.layersize import LayerRefusedError
from kukeon.runtime.containerd.spec import RuntimeSpecError
from kukeon.runtime.idranges import IdRangeClashError, IdRangeError
from kukeon.runtime.network import NetworkError

from .cellexec import CommandUnusableError
from .cellfiles import SecretUnavailableError
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
