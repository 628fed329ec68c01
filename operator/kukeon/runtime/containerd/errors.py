"""Typed failures of the containerd adapter, translated from gRPC status codes.

Callers branch on the type (an image that is not there is not a daemon that is down), and
every message names the object, its containerd namespace and the operation, so a status
``message`` built from one needs no more context.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import grpc

from kukeon.fileio import closed_to_others


class ContainerdError(Exception):
    """Base of every failure reported by this package."""


class ContainerdUnavailableError(ContainerdError):
    """containerd could not be reached on its socket (not running, wrong address, restarting)."""

    def __init__(self, *, address: str, operation: str, detail: str) -> None:
        self.address = address
        self.operation = operation
        self.detail = detail
        super().__init__(f"containerd at {address} is unavailable ({operation}): {detail}")


class NotFoundError(ContainerdError):
    """The named object does not exist in the namespace."""

    kind = "object"

    def __init__(self, name: str, *, namespace: str | None, detail: str = "") -> None:
        self.name = name
        self.namespace = namespace
        self.detail = detail
        where = f" in containerd namespace {namespace!r}" if namespace else ""
        suffix = f": {detail}" if detail else ""
        super().__init__(f"{self.kind} {name!r} not found{where}{suffix}")


class NamespaceNotFoundError(NotFoundError):
    kind = "namespace"


class ImageNotFoundError(NotFoundError):
    kind = "image"


class ContentNotFoundError(NotFoundError):
    kind = "content blob"


class SnapshotNotFoundError(NotFoundError):
    kind = "snapshot"


class ContainerNotFoundError(NotFoundError):
    kind = "container"


class TaskNotFoundError(NotFoundError):
    kind = "task"


class LeaseNotFoundError(NotFoundError):
    kind = "lease"


class AlreadyExistsError(ContainerdError):
    """An object with that name already exists (containerd's answer to a duplicate create)."""

    def __init__(self, kind: str, name: str, *, namespace: str | None) -> None:
        self.kind = kind
        self.name = name
        self.namespace = namespace
        where = f" in containerd namespace {namespace!r}" if namespace else ""
        super().__init__(f"{kind} {name!r} already exists{where}")


class NamespaceNotEmptyError(ContainerdError):
    """containerd deletes a namespace only once it holds no images, containers or content."""

    def __init__(self, name: str, *, detail: str) -> None:
        self.name = name
        self.detail = detail
        super().__init__(f"containerd namespace {name!r} is not empty: {detail}")


class InvalidImageArchiveError(ContainerdError):
    """An OCI image archive that cannot be imported: names the file and what is wrong."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"image archive {path}: {reason}")


class ImageNameNotReferenceError(ContainerdError):
    """An archive whose images are recorded under names that are not image references:
    no cell could name them (``kukectl image import`` refuses it; nothing is imported)."""

    def __init__(self, path: str, problems: Sequence[tuple[str, str, str]]) -> None:
        self.path = path
        self.problems = tuple(problems)
        """(where in ``index.json``, the name, why it is not a reference), each bad one."""
        shown = "; ".join(f"{where}: {why}" for where, _, why in self.problems)
        super().__init__(f"image archive {path}: names that are not image references: {shown}")


class InvalidImageError(ContainerdError):
    """An image whose manifest or config is unusable (bad JSON, no layer for this platform)."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"image {name!r}: {reason}")


class BlobDigestMismatchError(ContainerdError):
    """The bytes handed to the content store do not hash to (or measure) what was promised."""

    def __init__(self, *, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"blob digest mismatch: expected {expected}, got {actual}")


class ContainerdCallError(ContainerdError):
    """Any other refusal by containerd, with its gRPC code and message."""

    def __init__(self, *, operation: str, code: grpc.StatusCode, detail: str) -> None:
        self.operation = operation
        self.code = code
        self.detail = detail
        super().__init__(f"containerd {operation} failed ({code.name}): {detail}")


class ProcessNotStartableError(ContainerdError):
    """runc refused to start a task's process for a reason only a new spec can fix.

    ``reason`` is ``CommandNotFound`` (no such file, not on ``$PATH``, a path through a
    file), ``CommandNotExecutable`` (a directory, no execute permission, a binary for
    another architecture): docker's exit codes 127 and 126, Kubernetes'
    ``RunContainerError``; or ``WorkingDirUnusable`` (the working directory cannot be made:
    a file is there or above it).
    """

    def __init__(self, *, container_id: str, reason: str, detail: str) -> None:
        self.container_id = container_id
        self.reason = reason
        self.detail = detail
        super().__init__(f"cannot start the process of container {container_id!r}: {detail}")


class SpecRefusedError(ContainerdError):
    """runc refused a value of the container's spec that only the node could judge: a
    memory limit below what the container already used when runc set it, or a tmpfs
    mount the node's kernel does not take (a NUMA node it lacks, ``huge=`` without
    transparent huge pages). Only a new spec fixes it.

    ``setting`` is ``memory`` (``numbers``: the limit, the usage, the peak usage),
    ``tmpfs`` (``target``: the mount point, ``data``: the options the kernel refused) or
    ``oom``: runc's init was OOM-killed before the command ran, under the container's own
    limit or its realm's (which may have room later)."""

    def __init__(
        self,
        *,
        container_id: str,
        setting: str,
        detail: str,
        target: str = "",
        data: str = "",
        numbers: tuple[int, ...] = (),
    ) -> None:
        self.container_id = container_id
        self.setting = setting
        self.target = target
        self.data = data
        self.numbers = numbers
        self.detail = detail
        super().__init__(f"runc refused the {setting} of container {container_id!r}: {detail}")


# runc 1.1's words (libcontainer's cgroup managers and its mount of a tmpfs), as
# containerd wraps them.
_MEMORY_REFUSED = re.compile(
    r"unable to set memory limit to (\d+) \(current usage: (\d+), peak usage: (\d+)\)"
)
_INIT_OOM_KILLED = re.compile(r"container init was OOM-killed")
_TMPFS_REFUSED = re.compile(
    r'error mounting "tmpfs" to rootfs at "((?:[^"\\]|\\.)*)": [^\n]*?data: ([^\n]*?): '
    r"invalid argument"
)


def spec_refusal(container_id: str, detail: str) -> SpecRefusedError | None:
    """runc's refusal of a resource or tmpfs value in ``detail``, typed; None otherwise."""
    memory = _MEMORY_REFUSED.search(detail)
    if memory is not None:
        numbers = tuple(int(number) for number in memory.groups())
        return SpecRefusedError(
            container_id=container_id, setting="memory", numbers=numbers, detail=detail
        )
    if _INIT_OOM_KILLED.search(detail):
        return SpecRefusedError(container_id=container_id, setting="oom", detail=detail)
    tmpfs = _TMPFS_REFUSED.search(detail)
    if tmpfs is not None:
        return SpecRefusedError(
            container_id=container_id,
            setting="tmpfs",
            target=tmpfs.group(1),
            data=tmpfs.group(2),
            detail=detail,
        )
    return None


_SOURCE_MISSING = re.compile(
    r'error mounting "((?:[^"\\]|\\.)*)" to rootfs at "((?:[^"\\]|\\.)*)": '
    # The path after `stat` is written as it is: a newline in it is one here.
    r"stat (?s:.*?): no such file or directory"
)


def missing_mount_source(detail: str) -> tuple[str, str] | None:
    """The source and target of a bind mount runc could not make because its source is not
    on the node (runc 1.1's words), as the paths are; None for any other failure."""
    found = _SOURCE_MISSING.search(detail)
    if found is None:
        return None
    return _go_unquoted(found.group(1)), _go_unquoted(found.group(2))


def _go_unquoted(text: str) -> str:
    """A string Go's %q wrote, without its escapes (``\\n``, ``\\"``...); as written when
    it has one JSON does not read (``\\x00``, ``\\U0001f600``)."""
    try:
        unquoted = json.loads(f'"{text}"')
    except ValueError:
        return text
    return unquoted if isinstance(unquoted, str) else text


class RootfsUnreachableError(ContainerdError):
    """runc could not mount a container's root filesystem because a directory above it is
    closed to other users: a user-namespace container's (``hostUsers: false``) rootfs is
    mounted from inside its namespace, where the host's root is a stranger. A host
    condition an operator fixes (``chmod o+x``), not the spec's."""

    def __init__(self, *, container_id: str, closed: Path, mode: int, detail: str) -> None:
        self.container_id = container_id
        self.closed = closed
        self.detail = detail
        super().__init__(
            f"the root filesystem of container {container_id!r} cannot be mounted in its "
            f"user namespace: {closed} (mode {mode:04o}) is not searchable by other users; "
            "every directory above containerd's task state needs it (chmod o+x; containerd "
            f"makes /run/containerd 0711) (runc: {detail[:300]})"
        )


_ROOTFS_DENIED = re.compile(r"error preparing rootfs: mount (/[^:,\s]+)[^\n]*?: permission denied")


def closed_rootfs_ancestor(detail: str) -> tuple[Path, int] | None:
    """The top-most directory above the rootfs runc was refused that others cannot search,
    with its mode, when the refusal is that one; None otherwise (a refusal with every
    directory open has another cause, and is left as it is)."""
    found = _ROOTFS_DENIED.search(detail)
    if found is None:
        return None
    try:
        return closed_to_others(Path(found.group(1)).parent)
    except OSError:
        return None


# The program as runc names it: Go's %q, where a quote or backslash in it is escaped.
_PROGRAM_NAMED = re.compile(r'exec: "((?:[^"\\]|\\.)*)": ')
_PROGRAM = _PROGRAM_NAMED.pattern

# runc's words (libcontainer's LookPath and execve errors, and the working directory it
# makes before the exec, wrapped by containerd), most specific first.
_NOT_STARTABLE: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"executable file not found in \$PATH"), "CommandNotFound"),
    (
        re.compile(
            _PROGRAM + r"stat [^\n]*: (?:no such file or directory|not a directory|"
            r"too many levels of symbolic links|file name too long)"
        ),
        "CommandNotFound",
    ),
    # runc makes a missing working directory (before a read-only root is remounted); it
    # cannot when a file is in the way (a mount's missing target is "error mounting ...").
    (re.compile(r"error during container init: mkdir /[^\n]*: "), "WorkingDirUnusable"),
    (re.compile(_PROGRAM + r"(?:permission denied|is a directory)"), "CommandNotExecutable"),
    (re.compile(r"exec format error"), "CommandNotExecutable"),
)


def program_named(detail: str) -> str | None:
    """The program runc could not run, as its error names it (Go's %q undone; a name with
    an escape JSON lacks, as Go's hexadecimal bytes, kept as written)."""
    found = _PROGRAM_NAMED.search(detail)
    if found is None:
        return None
    try:
        program = json.loads(f'"{found.group(1)}"')
    except ValueError:
        return found.group(1)
    return program if isinstance(program, str) else found.group(1)


def not_startable_reason(detail: str) -> str | None:
    """The reason a task create/start failure can only be fixed by a new spec, if it is one."""
    for pattern, reason in _NOT_STARTABLE:
        if pattern.search(detail):
            return reason
    return None


def is_not_found(error: BaseException) -> bool:
    return isinstance(error, grpc.aio.AioRpcError) and error.code() == grpc.StatusCode.NOT_FOUND


def is_already_exists(error: BaseException) -> bool:
    return (
        isinstance(error, grpc.aio.AioRpcError) and error.code() == grpc.StatusCode.ALREADY_EXISTS
    )


def translate(
    error: grpc.aio.AioRpcError,
    *,
    operation: str,
    kind: str,
    name: str,
    namespace: str | None,
) -> ContainerdError:
    """Turn a gRPC failure about one object into the matching typed error."""
    code = error.code()
    detail = error.details() or ""
    if code == grpc.StatusCode.NOT_FOUND:
        not_found = _NOT_FOUND_BY_KIND.get(kind, NotFoundError)
        return not_found(name, namespace=namespace, detail=detail)
    if code == grpc.StatusCode.ALREADY_EXISTS:
        return AlreadyExistsError(kind, name, namespace=namespace)
    return ContainerdCallError(operation=f"{operation} {kind} {name!r}", code=code, detail=detail)


_NOT_FOUND_BY_KIND: dict[str, type[NotFoundError]] = {
    "namespace": NamespaceNotFoundError,
    "image": ImageNotFoundError,
    "content": ContentNotFoundError,
    "snapshot": SnapshotNotFoundError,
    "container": ContainerNotFoundError,
    "task": TaskNotFoundError,
    "lease": LeaseNotFoundError,
}
