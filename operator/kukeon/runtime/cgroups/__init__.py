"""cgroup drivers: v2 (unified) and v1 (legacy/hybrid), detected at start.

Every realm, space, stack and cell owns the cgroup ``<root>/<realm>/<space>/<stack>/<cell>``
(root ``/kukeon`` by default, configurable so several kukeond or test runs share a host);
each task of a cell gets its own leaf ``<cell>/<container>``, created by runc, because runc
removes a task's own cgroup when the task is deleted: limits go on the cell.

:func:`open_driver` reads ``/proc/self/mountinfo`` and returns a :class:`CgroupDriver`:
:class:`CgroupV2Driver` on a unified host, :class:`CgroupV1Driver` on a hybrid or legacy
one. Drivers are async (file work runs in a thread), idempotent (a second identical call
changes nothing, removing something absent is a no-op) and return what they observed
(:class:`CgroupState`, :class:`CgroupRemoval`). Host faults are typed
(:mod:`kukeon.runtime.cgroups.errors`) and name the path and the missing piece.

Modules: ``mode`` (mountinfo, layout detection), ``paths``, ``records``, ``fs`` (the
filesystem seam a fake replaces in unit tests), ``v2``, ``v1``, ``driver`` (Protocol and
factory), ``errors``. Imports nothing from ``kukeon.store`` or ``kukeon.controllers``.
"""

from kukeon.runtime.cgroups.driver import CgroupDriver, open_driver
from kukeon.runtime.cgroups.errors import (
    CgroupBusyError,
    CgroupError,
    CgroupIOError,
    CgroupNotWritableError,
    CgroupUnavailableError,
    CgroupWriteError,
    ControllerUnavailableError,
    InvalidCgroupPathError,
    NoInternalProcessesError,
)
from kukeon.runtime.cgroups.fs import CgroupFs, RealCgroupFs
from kukeon.runtime.cgroups.mode import (
    CgroupMode,
    CgroupMounts,
    V1Hierarchy,
    detect_cgroup_mode,
    parse_mountinfo,
    read_cgroup_mounts,
)
from kukeon.runtime.cgroups.paths import DEFAULT_ROOT, LOG_COPIERS, CgroupPath
from kukeon.runtime.cgroups.records import (
    RESOURCE_CONTROLLERS,
    CgroupLimits,
    CgroupNesting,
    CgroupRemoval,
    CgroupState,
    CgroupStats,
    Delegation,
    PidsCount,
    cpu_shares_to_weight,
)
from kukeon.runtime.cgroups.v1 import MANAGED_V1_CONTROLLERS, CgroupV1Driver
from kukeon.runtime.cgroups.v2 import CgroupV2Driver

__all__ = [
    "DEFAULT_ROOT",
    "LOG_COPIERS",
    "MANAGED_V1_CONTROLLERS",
    "RESOURCE_CONTROLLERS",
    "CgroupBusyError",
    "CgroupDriver",
    "CgroupError",
    "CgroupFs",
    "CgroupIOError",
    "CgroupLimits",
    "CgroupMode",
    "CgroupMounts",
    "CgroupNesting",
    "CgroupNotWritableError",
    "CgroupPath",
    "CgroupRemoval",
    "CgroupState",
    "CgroupStats",
    "CgroupUnavailableError",
    "CgroupV1Driver",
    "CgroupV2Driver",
    "CgroupWriteError",
    "ControllerUnavailableError",
    "Delegation",
    "InvalidCgroupPathError",
    "NoInternalProcessesError",
    "PidsCount",
    "RealCgroupFs",
    "V1Hierarchy",
    "cpu_shares_to_weight",
    "detect_cgroup_mode",
    "open_driver",
    "parse_mountinfo",
    "read_cgroup_mounts",
]
