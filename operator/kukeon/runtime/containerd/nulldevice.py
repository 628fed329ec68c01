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

So the node looks, once the task is created (runc has mounted and masked, the command
has not run): the container's ``/dev/null``, resolved inside the container
(``inroot``), must be the null character device (1:3). Otherwise the task is deleted
unstarted and the container fails with :class:`NullDeviceReplacedError`. A privileged
container has no masked paths and is not checked.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Final

from kukeon.runtime.bindpins import BindSourceRefusedError
from kukeon.runtime.inroot import open_in_root, open_root

NULL_DEVICE: Final = os.makedev(1, 3)
"""The null device's numbers (Documentation/admin-guide/devices.txt)."""


class NullDeviceReplacedError(BindSourceRefusedError):
    """A container's ``/dev/null`` is not the null device once runc created its task (a
    bind volume stands over ``/dev``): its masked paths are not masked."""


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


def null_device_problem(pid: int) -> str | None:
    """What ``/dev/null`` of process ``pid`` (a created task's init) is, when it is not the
    null device; None when it is. Links are followed inside the container only, and
    none through ``/proc/self/fd``. None too when the process is gone: no command of it
    can run (its start fails). Blocking."""
    try:
        root = open_root(pid)
    except (ProcessLookupError, FileNotFoundError):
        return None
    try:
        try:
            found = open_in_root(root, "dev/null", os.O_PATH)
        except OSError as error:
            if error.errno == errno.ENOENT:
                return "missing, so runc left the masked paths of /proc and /sys unmasked"
            return f"unusable ({error.strerror})"
        try:
            info = os.fstat(found)
        finally:
            os.close(found)
    finally:
        os.close(root)
    if stat.S_ISCHR(info.st_mode) and info.st_rdev == NULL_DEVICE:
        return None
    return f"{_described(info)}, which runc bound over the masked paths of /proc and /sys"


def replaced_null_device(container: str, problem: str) -> NullDeviceReplacedError:
    """The failure of ``container`` whose ``/dev/null`` is ``problem``."""
    return NullDeviceReplacedError(
        f"container {container}: its /dev/null is {problem}; the task was deleted before "
        "its command ran. A bind volume stands over /dev (its target, or a link on its "
        "way in the image or in another volume): leave /dev to the runtime"
    )
