"""A running container's replacement tried before its old task is stopped.

A changed spec replaces a container: its old task is stopped and removed, the new one
created. Some refusals are known only when the new task is made: a bind source refused
when kukeond pins it or missing where runc binds it, a value runc or the kernel refuses
(a tmpfs option, a working directory that cannot be made, a command not in the image),
an init OOM-killed. Found after the stop, they left the cell ``Failed`` with its service
gone, where an image that cannot be pulled (or any refusal of the build) holds the update
and keeps the old container serving (`cellfailures`).

So, before a running container is replaced, its new spec is made once under another id
(``<id>_trial``, labelled ``kukeon.io/trial``): its binds pinned in a directory of their
own, a container from the new image, and a task created (``runc create``: namespaces,
mounts, working directory and command looked up; nothing of the command runs) in a
cgroup of its own beside the old one (whose limits it must not touch), its output going
nowhere (the log is the running task's). Then both are deleted, whatever happened. A
refusal of the trial is the container's failure before anything of it changed: the update
is held as a build's refusal is. What the trial cannot tell (containerd's own failure) is
logged and the replacement goes on as before. The trial costs one snapshot and one
``runc create`` per replacement of a running container, none on any other pass.

A trial left by a kukeond killed meanwhile is removed by the next pass (the cell's
containers not in its spec go: ``CellExecutor.remove_all``); its pins go with the cell's.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from kukeon.api.container import containerd_identifier
from kukeon.runtime.bindpins import pin_container
from kukeon.runtime.containerd.errors import ContainerdError, ContainerNotFoundError
from kukeon.runtime.hostthreads import run_on_host_thread

from .cellbuild import BuiltContainer, CellPlace
from .cellexec import CellExecutor
from .cellfailures import CONTAINER_FAILURES
from .cellplan import LIVE_TASK, ContainerPlan, ObservedTask, RemoveContainer

logger = logging.getLogger(__name__)

TRIAL_SUFFIX = ".trial"
"""On the trial's cgroup and pins directory (no container id holds a dot)."""


def trial_name(name: str) -> str:
    """The containerd id of the trial of container ``name`` (no cell's container has it: a
    kukeon id holds no ``_``)."""
    return containerd_identifier(f"{name}_trial", mark=".")


def replaces_running(plan: ContainerPlan, task: ObservedTask | None) -> bool:
    """Whether ``plan`` removes a container whose task runs (a changed spec, a restart)."""
    removed = any(isinstance(action, RemoveContainer) for action in plan.actions)
    return removed and task is not None and task.status in LIVE_TASK


def _trial_of(built: BuiltContainer) -> BuiltContainer:
    """``built`` as its trial is made: another id, cgroup and pins directory, no terminal."""
    spec: dict[str, Any] = copy.deepcopy(built.spec)
    linux = spec.get("linux", {})
    if linux.get("cgroupsPath"):
        linux["cgroupsPath"] = f"{linux['cgroupsPath']}{TRIAL_SUFFIX}"
    spec.get("process", {})["terminal"] = False
    if built.binds is None:
        return replace(built, name=trial_name(built.name), spec=spec)
    binds = built.binds.with_name(f"{built.binds.name}{TRIAL_SUFFIX}")
    staged = {str(pin.staging): binds / pin.staging.name for pin in built.pins}
    for mount in spec.get("mounts", []):
        if mount.get("type") == "bind" and mount.get("source") in staged:
            mount["source"] = str(staged[mount["source"]])
    pins = tuple(replace(pin, staging=binds / pin.staging.name) for pin in built.pins)
    return replace(built, name=trial_name(built.name), spec=spec, binds=binds, pins=pins)


async def _remove(executor: CellExecutor, namespace: str, trial: BuiltContainer) -> None:
    with contextlib.suppress(ContainerNotFoundError):
        await executor.remove_container(namespace, trial.name)
    if trial.binds is not None:
        await run_on_host_thread(_unpin_directory, trial.binds)


def _unpin_directory(directory: Path) -> None:
    """The trial's pins unmounted and their directory removed (blocking)."""
    pin_container(directory, ())  # nothing wanted: every pin there unpinned
    with contextlib.suppress(OSError):
        directory.rmdir()


async def refused_replacement(
    executor: CellExecutor,
    built: BuiltContainer,
    place: CellPlace,
    replaced: tuple[ContainerPlan, ObservedTask | None],
) -> Exception | None:
    """Why the container ``built`` cannot replace the running one (``replaced``: the plan
    and the old task observed), found by making it once under another id; None when it can,
    or nothing is replaced, or the trial cannot tell."""
    if not replaces_running(*replaced):
        return None
    trial = _trial_of(built)
    try:
        await _remove(executor, place.namespace, trial)  # one a killed kukeond left
        await executor.create_container(place, trial, restarted_at="", trial=True)
        if trial.binds is not None:
            await run_on_host_thread(pin_container, trial.binds, trial.pins)
        pid = await executor.create_task(
            place.namespace, trial.name, place.files, built.effective, trial=True
        )
        await executor.check_null_device(place.namespace, trial.name, built.effective, pid)
    except CONTAINER_FAILURES as error:
        logger.info("%s: its update is held: %s", built.name, error)
        return error
    except ContainerdError as error:
        logger.warning("%s: its update could not be tried first: %s", built.name, error)
    finally:
        await _remove(executor, place.namespace, trial)
    return None
