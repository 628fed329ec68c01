"""A created task's ``/dev/null``, checked before its command may run.

runc hides the kernel's interfaces that leak the host (``maskedPaths``: ``/proc/kcore``,
``/proc/keys``, ``/proc/timer_list``, ``/sys/firmware``...) by binding the container's
``/dev/null`` over each of them, by path, when it creates the task. ``/dev`` is runc's own
tmpfs, but a bind volume over it is taken as the container's devices, and runc then makes
no device there: its ``/dev/null`` is whatever the bound directory holds. A directory a
realm's editor may bind (under ``allowedHostPaths``) is theirs to fill from any other cell,
so its ``null`` can be a link to any file the container sees, and runc binds that file over
the masked paths (``/proc/keys`` became the host's ``kernel.core_pattern``: runc before
1.2.8 follows the link, CVE-2025-31133); without a ``null`` runc leaves them unmasked. A
volume does not need the target ``/dev`` for this: runc resolves a target through the
links of the image and of the volumes mounted before it, so ``/data`` over an image's
``/data -> /dev`` lands there too, which no check of the written spec can see. There runc
makes the devices itself, keeps the ``null`` it finds, and reopens the container's stdout
and stderr on it: a container started with the host's ``core_pattern`` open for writing
as its output (runc 1.1.5), whose program the kernel runs as the host's root.

So the node looks, once the task is created (runc has mounted, masked and opened the
container's output; the command has not run), at what runc did, not at what the bound
directory holds now (another cell can swap its ``null`` back meanwhile): each masked path
that exists, resolved inside the container (``inroot``), must be the null character
device (1:3) or an empty read-only directory (runc's tmpfs over a directory), and the
init's stdin, stdout and stderr a pipe, socket or device, never a file. Otherwise the
task is deleted unstarted and the container fails with :class:`NullDeviceReplacedError`.
A privileged container has no masked paths and is not checked.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from typing import Final

from kukeon.runtime.bindpins import BindSourceRefusedError
from kukeon.runtime.containerd.spec import DEFAULT_MASKED_PATHS
from kukeon.runtime.inroot import open_in_root, open_root

NULL_DEVICE: Final = os.makedev(1, 3)
"""The null device's numbers (Documentation/admin-guide/devices.txt)."""


class NullDeviceReplacedError(BindSourceRefusedError):
    """Once runc created a container's task, a masked path is not masked or its output is
    a file: runc took a file of a bind volume over ``/dev`` for the null device."""


def _described(info: os.stat_result) -> str:
    mode = info.st_mode
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = "a character device" if stat.S_ISCHR(mode) else "a block device"
        return f"{kind} {os.major(info.st_rdev)}:{os.minor(info.st_rdev)}"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISREG(mode):
        return "a regular file"
    return "not a device"


def _mask_problem(root: int, path: str) -> str | None:
    """What ``path`` (a masked path) is in the container when runc did not mask it."""
    try:
        found = open_in_root(root, path.lstrip("/"), os.O_PATH)
    except OSError as error:
        if error.errno == errno.ENOENT:
            return None  # not on this kernel: runc masks nothing there either
        return f"{path} is unusable ({error.strerror})"
    try:
        info = os.fstat(found)
        if stat.S_ISCHR(info.st_mode) and info.st_rdev == NULL_DEVICE:
            return None
        if stat.S_ISDIR(info.st_mode) and os.fstatvfs(found).f_flag & os.ST_RDONLY:
            listed = open_in_root(root, path.lstrip("/"), os.O_RDONLY | os.O_DIRECTORY)
            try:
                if not os.listdir(listed):
                    return None
            finally:
                os.close(listed)
        return f"{path} is {_described(info)}, not masked"
    finally:
        os.close(found)


def _output_problem(pid: int) -> str | None:
    """Which of the init's stdin, stdout and stderr runc reopened on a file."""
    for number, name in enumerate(("stdin", "stdout", "stderr")):
        try:
            info = os.stat(f"/proc/{pid}/fd/{number}")
        except FileNotFoundError:
            continue
        if stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode):
            return f"its {name} is {_described(info)}, reopened by runc on its /dev/null"
    return None


def null_device_problem(pid: int, masked: Sequence[str] = DEFAULT_MASKED_PATHS) -> str | None:
    """What runc made of the masked paths (``masked``) and the output of process ``pid``
    (a created task's init) when its ``/dev/null`` was not the null device; None when all
    is as runc makes it. Links are followed inside the container only, and none through
    ``/proc/self/fd``. None too when the process is gone: no command of it can run (its
    start fails). Blocking."""
    try:
        root = open_root(pid)
    except (ProcessLookupError, FileNotFoundError):
        return None
    try:
        for path in masked:
            problem = _mask_problem(root, path)
            if problem is not None:
                return problem
    finally:
        os.close(root)
    return _output_problem(pid)


def replaced_null_device(container: str, problem: str) -> NullDeviceReplacedError:
    """The failure of ``container`` whose ``/dev/null`` is ``problem``."""
    return NullDeviceReplacedError(
        f"container {container}: {problem}; the task was deleted before its command ran. "
        "A bind volume stands over /dev (its target, or a link on its way in the image or "
        "in another volume), so runc took a file of it for /dev/null: leave /dev to the "
        "runtime"
    )
