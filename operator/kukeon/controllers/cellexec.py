"""The cell controller's hands: observing a cell's containers and tasks, and acting on them.

`CellExecutor` reads what containerd holds of a container (its labels, its task, and for a
failed task whether its cgroup counted an OOM kill) into the planner's observations, and
performs a `ContainerPlan`'s actions through `Host` in order: remove, create (labelled with
its spec digest, node, restart request and installation), the tty state directory, the
plan's Events, then the task's deletion and start. It also stops and removes the
containers dropped from a spec, the orphan collector's and those of a cell finalized (for
the first and last, `stopgraces` stopped the tasks first, with no pass waiting a grace).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import posixpath
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from kukeon.api import ContainerSpec, EventReason
from kukeon.api.container import VolumeKind
from kukeon.concurrently import run_all
from kukeon.fileio import host_disk_refusal
from kukeon.runtime.bindpins import BindSourceRefusedError, pin_container
from kukeon.runtime.cgroups import CgroupError, CgroupPath
from kukeon.runtime.containerd.containers import LABEL_MANAGED, kukeon_labels
from kukeon.runtime.containerd.errors import (
    AlreadyExistsError,
    ContainerdCallError,
    ContainerNotFoundError,
    ProcessNotStartableError,
    SpecRefusedError,
    TaskNotFoundError,
    missing_mount_source,
    program_named,
)
from kukeon.runtime.containerd.namespaces import instance_labels
from kukeon.runtime.containerd.nulldevice import null_device_problem, replaced_null_device
from kukeon.runtime.containerd.remap import Remap
from kukeon.runtime.containerd.specerrors import RuntimeSpecError
from kukeon.runtime.containerd.stopsignal import container_stop_signal, stop_signal_label
from kukeon.runtime.containerd.tasks import TaskInfo, TaskIO, TaskStatus
from kukeon.runtime.containerd.ttyio import create_attachable_task
from kukeon.runtime.hostfiles import create_log_file
from kukeon.runtime.hostthreads import run_on_host_thread

from .cellbuild import BuiltContainer, CellPlace
from .cellfiles import CellFiles, prepare_tty_state
from .cellpids import pids_limit_error
from .cellplan import (
    LIVE_TASK,
    ContainerPlan,
    CreateContainer,
    DeleteTask,
    Note,
    ObservedContainer,
    ObservedTask,
    RemoveContainer,
    StartTask,
)
from .host import Host

REMAP_SCRATCH = "remap"
"""In the state directory: the mount points of images being shifted to a user namespace."""

logger = logging.getLogger(__name__)

LABEL_SPEC_DIGEST = "kukeon.io/spec-digest"
LABEL_NODE = "kukeon.io/node"
LABEL_TRIAL = "kukeon.io/trial"
"""On a container made only to try a running one's replacement (`celltrial`): no task
event of it is the cell's."""
LABEL_RESTARTED_AT = "kukeon.io/restarted-at"
"""The cell's `kukeon.io/restartedAt` annotation when the container was created."""
ANNOTATION_RESTARTED_AT = "kukeon.io/restartedAt"
"""Changing it (`kukectl restart` writes the time) restarts every container of the cell."""

CellKey = tuple[str, str, str, str]


class CommandUnusableError(Exception):
    """A container's command that runc cannot run; ``reason`` says why (not found, not
    executable, its working directory cannot be made). Only a new spec can fix it, so the
    cell fails instead of retrying."""

    def __init__(self, container: ContainerSpec, error: ProcessNotStartableError) -> None:
        self.reason = error.reason
        runc = f"(runc: {error.detail[:300]})"
        if error.reason == "WorkingDirUnusable":
            where = (container.working_dir or "the image's working directory")[:200]
            super().__init__(
                f"container {container.id!r}: working directory {where!r} cannot be made in "
                f"the image (a file is in the way, or it cannot be made there) {runc}"
            )
            return
        # runc names the program it tried: with no command, the image's entrypoint or,
        # in an image without one, the first of the args.
        command = program_named(error.detail) or container.command or "the image's entrypoint"
        command = command[:200]
        what = "not found" if error.reason == "CommandNotFound" else "not executable"
        super().__init__(
            f"container {container.id!r}: command {command!r} {what} in the image"
            f"{_one_program_hint(container, error.reason)} {runc}"
        )


class InitOomKilledError(Exception):
    """runc's init was OOM-killed before the container's command ran: the container's own
    memory limit or its realm's (``spec.limits.memoryBytes``, shared by all its containers)
    left it no room. The realm's may have room later: retried, not failed for good."""

    def __init__(self, container: ContainerSpec, error: SpecRefusedError) -> None:
        own = container.resources.memory_limit_bytes if container.resources else None
        limit = f"resources.memoryLimitBytes {own}" if own else "no resources.memoryLimitBytes"
        super().__init__(
            f"container {container.id!r}: runc's init was OOM-killed before the command ran: "
            f"its memory limit ({limit}) or its realm's (spec.limits.memoryBytes, all its "
            f"containers together) left it no room (runc: {error.detail[:300]})"
        )


def refused_spec_error(container: ContainerSpec, error: SpecRefusedError) -> RuntimeSpecError:
    """runc's refusal of a value only the node could judge, as the field that asked for it
    (the cell fails as InvalidSpec, for good, instead of retrying an UnexpectedError)."""
    runc = f"(runc: {error.detail[:300]})"
    if error.setting == "memory":
        limit, usage, peak = (*error.numbers, 0, 0, 0)[:3]
        why = (
            f"runc could not set the limit of {limit} bytes: the container already used "
            f"{usage} bytes (peak {peak}) when it was set; raise it {runc}"
        )
        return RuntimeSpecError(
            container=container.id, field="resources.memoryLimitBytes", reason=why
        )
    field = "tmpfs"
    target = posixpath.normpath(error.target) if error.target else ""
    for index, tmpfs in enumerate(container.tmpfs):
        if posixpath.normpath(tmpfs.path) == target:
            field = f"tmpfs[{index}].options"
    for index, volume in enumerate(container.volumes):
        if volume.kind == VolumeKind.TMPFS and posixpath.normpath(volume.target) == target:
            field = f"volumes[{index}]"
    why = (
        f"this node's kernel refused the tmpfs at {target[:200]} with {error.data[:200]!r} "
        f"(invalid argument: e.g. an mpol= NUMA node it lacks, huge= without transparent "
        f"huge pages) {runc}"
    )
    return RuntimeSpecError(container=container.id, field=field, reason=why)


def missing_bind_source(container: ContainerSpec, detail: str) -> BindSourceRefusedError | None:
    """runc's refusal of a bind whose source is not on the node, as the volume that names it
    (retried: the source may be made); None for any other failure."""
    found = missing_mount_source(detail)
    if found is None:
        return None
    source, target = found
    field = "volumes"
    for index, volume in enumerate(container.volumes):
        if volume.kind == VolumeKind.BIND and posixpath.normpath(volume.target) == target:
            field = f"volumes[{index}].source"
    return BindSourceRefusedError(
        f"container {container.id!r}: {field}: {source[:300]!r} does not exist on this node "
        f"(runc could not bind it at {target[:200]!r})"
    )


def _one_program_hint(container: ContainerSpec, reason: str) -> str:
    """How to write a whole command line, when the program not found looks like one
    (docker-compose splits a `command:` string into words; kukeon's is the program alone)."""
    program = container.command
    if reason != "CommandNotFound" or program is None or len(program.split()) < 2:
        return ""
    return (
        "; command is the program alone, spaces and all, and its arguments go in args: "
        "a shell line is command: sh with args: [-c, 'LINE']"
    )


class CellExecutor:
    """Observes and acts on a cell's containerd containers and tasks."""

    def __init__(
        self,
        host: Host,
        *,
        note: Callable[[Note], None] | None = None,
        grace_seconds: float | None = None,
        task_ended: Callable[[CellKey, str, int, Path], Awaitable[None]] | None = None,
    ) -> None:
        self.host = host
        self.note = note
        self.task_ended = task_ended
        """Called with an ended task before its exit is read (``LogCopiers.task_ended``:
        its log gets all it wrote first)."""
        self.grace_seconds = grace_seconds
        """The cell's stop grace (`terminationGracePeriodSeconds`); kukeond's when None."""

    def stop_grace_seconds(self) -> float:
        """The grace a stop of the cell's tasks gets (``grace_seconds``, else kukeond's)."""
        if self.grace_seconds is not None:
            return self.grace_seconds
        return self.host.settings.stop_grace_seconds

    def _note(self, reason: EventReason, message: str) -> None:
        if self.note is not None:
            self.note(Note(reason, message))

    # --- observe ----------------------------------------------------------------------

    async def observe(
        self, namespace: str, key: CellKey, name: str, container: str
    ) -> tuple[ObservedContainer | None, ObservedTask | None]:
        """What containerd holds of the container `name` (kukeon id `container`)."""
        try:
            found = await self.host.containerd.containers(namespace).get(name)
        except ContainerNotFoundError:
            return None, None
        observed = ObservedContainer(
            spec_digest=found.labels.get(LABEL_SPEC_DIGEST),
            restarted_at=found.labels.get(LABEL_RESTARTED_AT, ""),
        )
        task = await self.task(namespace, name)
        if task is None:
            return observed, None
        failed = task.status not in LIVE_TASK and task.status != TaskStatus.CREATED
        files = CellFiles(self.host.settings.state_dir, key)
        if failed and self.task_ended is not None:
            await self.task_ended(key, container, task.pid, files.log(container))
        oom = failed and task.exit_status != 0 and await self._oom_killed(key, container)
        said = None
        if failed and task.exit_status != 0 and not oom:
            said = await files.last_line(container)
        return observed, ObservedTask(
            status=task.status,
            pid=task.pid,
            exit_status=task.exit_status,
            exited_at=task.exited_at,
            oom_killed=oom,
            last_line=said,
        )

    async def _oom_killed(self, key: CellKey, container: str) -> bool:
        """Whether an OOM killer killed a process of the container's cgroup (still there:
        runc removes it when the task is deleted)."""
        try:
            stats = await self.host.cgroups.read_stats(CgroupPath((*key, container)))
        except (CgroupError, ValueError):
            return False
        return bool(stats is not None and stats.oom_kills)

    async def task(self, namespace: str, name: str) -> TaskInfo | None:
        try:
            return await self.host.containerd.tasks(namespace).get(name)
        except TaskNotFoundError:
            return None

    # --- act --------------------------------------------------------------------------

    async def execute_container_actions(
        self,
        plan: ContainerPlan,
        built: BuiltContainer,
        place: CellPlace,
        *,
        restarted_at: str,
    ) -> None:
        """The plan's containerd container removed and created: what needs neither the
        cell's cgroup nor its network namespace to exist yet (only their paths)."""
        namespace, name = place.namespace, built.name
        for action in plan.actions:
            if isinstance(action, RemoveContainer):
                await self.remove_container(namespace, name)
            elif isinstance(action, CreateContainer):
                await self.create_container(place, built, restarted_at=restarted_at)

    async def create_planned_task(
        self, plan: ContainerPlan, built: BuiltContainer, place: CellPlace
    ) -> bool:
        """The plan's notes, its old task deleted and its new task created but not started
        (runc has made the process, not run the container's command); whether one was."""
        namespace, name = place.namespace, built.name
        if built.wrapped:
            uid, gid = built.host_user
            await prepare_tty_state(
                place.files, built.effective.id, digest=built.digest, uid=uid, gid=gid
            )
        if self.note is not None:
            for note in plan.notes:
                self.note(note)
        for action in plan.actions:
            if isinstance(action, DeleteTask):
                await self.host.containerd.tasks(namespace).delete(name)
            elif isinstance(action, StartTask):
                if built.binds is not None:
                    await run_on_host_thread(pin_container, built.binds, built.pins)
                pid = await self.create_task(namespace, name, place.files, built.effective)
                await self.check_null_device(namespace, name, built.effective, pid)
                return True
        return False

    async def check_null_device(
        self, namespace: str, name: str, container: ContainerSpec, pid: int
    ) -> None:
        """The created task's masked paths are masked and its output is no file, or the
        task is deleted before its command runs and the container fails (``nulldevice``):
        runc took a file of a bind over /dev for /dev/null. A privileged container has no
        masked paths."""
        if container.privileged:
            return
        if pid <= 0:
            return  # no process was made: none runs the command (its start fails)
        problem = await run_on_host_thread(null_device_problem, pid)
        if problem is not None:
            await self.discard_created_task(namespace, name)
            logger.warning("task %s: %s; deleted unstarted", name, problem)
            raise replaced_null_device(container.id, problem)

    async def start_created_task(
        self, plan: ContainerPlan, built: BuiltContainer, place: CellPlace
    ) -> int:
        """The task ``create_planned_task`` made, started; its pid."""
        restart = plan.start is not None and plan.start.restart
        tasks = self.host.containerd.tasks(place.namespace)
        try:
            pid = await tasks.start(built.name)
        except ProcessNotStartableError as error:
            raise CommandUnusableError(built.effective, error) from error
        started = EventReason.RESTARTED if restart else EventReason.STARTED
        self._note(
            started, f"{'restarted' if restart else 'started'} container {built.effective.id}"
        )
        return pid

    async def discard_created_task(self, namespace: str, name: str) -> None:
        """A task created and never started deleted (its process never ran the container's
        command); one containerd cannot delete now is left to the next pass, whose plan
        deletes a task that was created and never started."""
        try:
            await self.host.containerd.tasks(namespace).delete(name)
        except TaskNotFoundError:
            pass
        except Exception as error:
            logger.warning("task %s, created and not started, not deleted: %s", name, error)

    async def create_container(
        self, place: CellPlace, built: BuiltContainer, *, restarted_at: str, trial: bool = False
    ) -> None:
        """The container made in containerd, labelled; a ``trial`` (`celltrial`) unsaid."""
        realm, space, stack, cell = place.key
        labels = kukeon_labels(
            realm=realm, space=space, stack=stack, cell=cell, container=built.effective.id
        )
        labels[LABEL_SPEC_DIGEST] = built.digest
        labels[LABEL_NODE] = self.host.settings.node_name
        labels[LABEL_RESTARTED_AT] = restarted_at
        labels.update(instance_labels(self.host.instance))
        labels.update(stop_signal_label(built.stop_signal))
        if trial:
            labels[LABEL_TRIAL] = "true"
        containers = self.host.containerd.containers(place.namespace)
        # AlreadyExists: a concurrent or interrupted create; the next pass checks the digest.
        with contextlib.suppress(AlreadyExistsError):
            if place.id_range is None:
                await containers.create(
                    built.name, image=built.image, spec=built.spec, labels=labels
                )
            else:  # `hostUsers: false`: the rootfs is the image's shifted to the range
                remap = Remap(place.id_range, self.host.settings.state_dir / REMAP_SCRATCH)
                await containers.create(
                    built.name, image=built.image, spec=built.spec, labels=labels, remap=remap
                )
            if not trial:
                self._note(EventReason.CREATED, f"created container {built.effective.id}")

    async def create_task(
        self,
        namespace: str,
        name: str,
        files: CellFiles,
        container: ContainerSpec,
        *,
        trial: bool = False,
    ) -> int:
        """A new task of the container, created (not started), and its init's pid; a
        ``trial``'s (`celltrial`) output goes nowhere: the container's log is its running
        task's."""
        tasks = self.host.containerd.tasks(namespace)
        log = files.log(container.id)
        if not trial:
            await files.start_new_log(container.id)
        # Its logger's CPU is the realm's (in the realm's copiers' cgroup), not the host's.
        copier_procs = self.host.cgroups.log_copier_procs(files.key[0])

        async def create() -> int:
            if trial:
                return await tasks.create(name, io=TaskIO.discard())
            if container.attachable:
                # A TTY whose stdin FIFO and output the shim's logger holds (see ttyio): the
                # container keeps its terminal while kukeond is down; its output goes to the
                # log.
                return await create_attachable_task(
                    tasks,
                    name,
                    stdin=files.tty_stdin(container.id),
                    log=log,
                    rotation=self.host.settings.log_rotation,
                    cgroup_procs=copier_procs,
                )
            # 0640 and root's, whatever the umask of the shim's logger that appends to it.
            try:
                await asyncio.to_thread(create_log_file, log)
            except OSError as error:
                if host_disk_refusal(error) is None:
                    raise
                # No room for the file (no inode, over quota): the logger makes it
                # once there is, saying what it dropped. The task is made now; before,
                # a restart's old task was gone and the failed pass left it RUNNING in
                # the status, which the next pass took for a lost task (TaskLost,
                # never started again under restartPolicy never).
                logger.warning("%s: %s; the task starts without it", name, error)
            io = TaskIO.log_file(
                log, rotation=self.host.settings.log_rotation, cgroup_procs=copier_procs
            )
            return await tasks.create(name, io=io)

        try:
            try:
                return await create()
            except AlreadyExistsError:
                # The pass saw no task, yet containerd holds one: a create interrupted by
                # kukeond's death (containerd shows such a task as not found). Delete it and
                # create again, or every later pass would fail the same way.
                logger.warning("task %s exists but could not be seen: deleting it", name)
                with contextlib.suppress(TaskNotFoundError):
                    await tasks.delete(name)
                return await create()
        except ProcessNotStartableError as error:
            raise CommandUnusableError(container, error) from error
        except SpecRefusedError as error:
            if error.setting == "oom":
                raise InitOomKilledError(container, error) from error
            raise refused_spec_error(container, error) from error
        except ContainerdCallError as error:
            missing = missing_bind_source(container, error.detail)
            if missing is not None:
                raise missing from error
            # Read only now: a start that succeeds reads no counters.
            full = await pids_limit_error(
                self.host.cgroups, CgroupPath(files.key), container, error.detail
            )
            if full is None:
                raise
            raise full from error

    # --- stop and remove ----------------------------------------------------------------

    async def stop_task(self, namespace: str, name: str) -> None:
        task = await self.task(namespace, name)
        if task is None:
            return
        tasks = self.host.containerd.tasks(namespace)
        if task.status in LIVE_TASK:
            signal = await container_stop_signal(self.host.containerd, namespace, name)
            await tasks.stop(name, grace_period=self.stop_grace_seconds(), signal=signal)
        await tasks.delete(name)

    async def remove_container(self, namespace: str, name: str) -> None:
        await self.stop_task(namespace, name)
        await self.host.containerd.containers(namespace).delete(name)

    async def cell_containers(self, namespace: str, key: CellKey) -> list[str]:
        """The containerd ids of every container labelled as this cell's."""
        realm, space, stack, cell = key
        labels = {
            LABEL_MANAGED: "true",
            "kukeon.io/realm": realm,
            "kukeon.io/space": space,
            "kukeon.io/stack": stack,
            "kukeon.io/cell": cell,
        }
        return [c.id for c in await self.host.containerd.containers(namespace).list(labels=labels)]

    async def remove_all(
        self,
        namespace: str,
        key: CellKey,
        *,
        keep: frozenset[str] = frozenset(),
        found: Iterable[str] | None = None,
    ) -> None:
        """Every container labelled as this cell's but those in `keep` (containerd ids);
        `found`: those ids as listed already (`cell_containers`)."""
        if found is None:
            found = await self.cell_containers(namespace, key)
        await run_all(self.remove_container(namespace, name) for name in found if name not in keep)
