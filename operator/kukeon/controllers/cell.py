"""The cell controller: a cell document becomes a network namespace, a cgroup and running tasks.

One reconcile pass, always from scratch (nothing is remembered between passes):

1. wait for the stack to be Ready; read the realm (containerd namespace, registry
   credentials) and the space (container defaults, network);
2. `desiredState: Stopped` -> stop every task (SIGTERM, grace, SIGKILL), keep the rest;
3. the cell's cgroup, its network namespace attached to the space's bridge by CNI, and the
   rendered /etc/hosts and /etc/hostname;
4. per container, root first: space defaults applied, image made available, OCI runtime
   spec built; a container created from a different spec (digest label) is recreated,
   only that one; a missing task is created and started; an exited task is restarted when
   its policy owes a restart and the backoff has passed;
5. per-container status and the derived cell state are written (only when changed); the
   `readyObserved` latch is set the first time the cell is Ready; an `autoDelete` cell
   whose workloads all exited with no restart owed is deleted, if it was ever Ready.

A restart that is owed but not yet due, and a host fault, end the pass with
TemporaryError so the framework comes back at the right time (a task exit seen in
containerd's events also brings it back at once). Finalize stops and deletes the tasks and
containers, detaches the cell from its network, and removes its cgroup and files.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kukeon.api import (
    Cell,
    CellNetworkStatus,
    CellState,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
    ContainerTerminated,
    DesiredCellState,
    EventReason,
    EventType,
    Kind,
    Realm,
    Space,
    apply_space_defaults_to_container,
    secret_scope,
)
from kukeon.framework import (
    EventRecorder,
    HandlerContext,
    HandlerError,
    PermanentError,
    TemporaryError,
)
from kukeon.runtime.cgroups import CgroupError, CgroupPath, Delegation
from kukeon.runtime.containerd.containers import LABEL_MANAGED, kukeon_labels
from kukeon.runtime.containerd.errors import (
    AlreadyExistsError,
    ContainerdUnavailableError,
    ContainerNotFoundError,
    ProcessNotStartableError,
    TaskNotFoundError,
)
from kukeon.runtime.containerd.namespaces import instance_labels
from kukeon.runtime.containerd.spec import (
    RuntimeSpecError,
    SpecContext,
    build_runtime_spec,
    current_hard_rlimits,
    inspect_host_device,
    list_host_devices,
)
from kukeon.runtime.containerd.tasks import TaskInfo, TaskIO, TaskStatus
from kukeon.runtime.containerd.ttyinit import SHELL, wrapper_needed
from kukeon.runtime.containerd.ttyio import create_attachable_task
from kukeon.runtime.containerd.types import RegistryCredential
from kukeon.runtime.hostfiles import create_log_file
from kukeon.runtime.network import (
    CellAttachment,
    NetworkError,
    cell_network_id,
    render_hostname,
    render_hosts,
    write_cell_host_files,
)
from kukeon.store import Registry

from .cellfiles import (
    CellFiles,
    SecretUnavailableError,
    own_secret_files,
    prepare_tty_state,
    read_secret_value,
    resolve_secret_refs,
    stage_secrets,
)
from .cellstate import (
    ContainerObservation,
    containerd_container_id,
    derive_cell_state,
    restart_due_at,
    restart_owed,
    spec_digest,
)
from .hierarchy import get_as, ready_parent
from .host import Host
from .images import ImageProvider, ImageUnavailableError, InvalidImageReferenceError
from .reporting import now, report
from .space import conflist_file

LABEL_SPEC_DIGEST = "kukeon.io/spec-digest"
LABEL_NODE = "kukeon.io/node"
LABEL_RESTARTED_AT = "kukeon.io/restarted-at"
"""The cell's `kukeon.io/restartedAt` annotation when the container was created."""
ANNOTATION_RESTARTED_AT = "kukeon.io/restartedAt"
"""Changing it (`kukectl restart` writes the time) restarts every container of the cell."""

CellKey = tuple[str, str, str, str]


def cell_key(cell: Cell) -> CellKey:
    return (cell.spec.realm_id, cell.spec.space_id, cell.spec.stack_id, cell.metadata.name)


def network_id(key: tuple[str, ...], instance: str) -> str:
    """The cell's netns name and CNI container id (`_` cannot occur in resource names)."""
    return cell_network_id(key, instance)


def ordered_containers(cell: Cell) -> list[ContainerSpec]:
    """Root container first, the others in manifest order."""
    if not cell.spec.containers:
        return []
    root = cell.spec.root_container()
    return [root, *(c for c in cell.spec.containers if c.id != root.id)]


async def registry_credentials(registry: Registry, realm: Realm) -> list[RegistryCredential]:
    """The realm's pull credentials, `passwordSecretRef` read from the realm's Secrets."""
    credentials: list[RegistryCredential] = []
    for index, entry in enumerate(realm.spec.registry_credentials):
        password = entry.password or ""
        if entry.password_secret_ref is not None:
            where = (
                f"realm {realm.metadata.name!r} registryCredentials[{index}] "
                f"({entry.username}@{entry.server_address or 'any registry'})"
            )
            value = await read_secret_value(
                registry,
                [secret_scope(realm.metadata.name)],
                entry.password_secret_ref,
                where=where,
            )
            password = value.decode(errors="replace")
        credentials.append(
            RegistryCredential(
                server_address=entry.server_address or "",
                username=entry.username or "",
                password=password,
            )
        )
    return credentials


def exit_signal_name(code: int) -> str | None:
    """`SIGKILL` for 137: a task killed by a signal exits with 128 + the signal's number."""
    if 128 < code < 128 + 65:
        try:
            return signal.Signals(code - 128).name
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class HostFacts:
    """What the spec needs to know about this host, read once at start."""

    hard_rlimits: Mapping[str, int]
    environ: Mapping[str, str]

    @classmethod
    def read(cls) -> HostFacts:
        return cls(hard_rlimits=current_hard_rlimits(), environ=dict(os.environ))


@dataclass(frozen=True)
class Exit:
    """A container's process that ended: its code, when, and why (status ``reason``)."""

    code: int
    finished: datetime
    reason: str | None


class CommandUnusableError(Exception):
    """A container's command that runc cannot run; ``reason`` says why (not found or not
    executable). Only a new spec can fix it, so the cell fails instead of retrying."""

    def __init__(self, container: ContainerSpec, error: ProcessNotStartableError) -> None:
        self.reason = error.reason
        command = (container.command or "the image's entrypoint")[:200]
        what = "not found" if error.reason == "CommandNotFound" else "not executable"
        super().__init__(
            f"container {container.id!r}: command {command!r} {what} in the image "
            f"(runc: {error.detail[:300]})"
        )


# Why a cell could not be built, most specific first: the state and reason written to its
# status, and whether retrying can help (a spec the runtime refuses waits for a new spec;
# everything else is a host or registry condition that may clear by itself).
_FAILURE_TABLE: tuple[tuple[type[Exception], CellState, str, type[HandlerError]], ...] = (
    (RuntimeSpecError, CellState.FAILED, "InvalidSpec", PermanentError),
    # CommandNotFound / CommandNotExecutable: the reason is the error's own.
    (CommandUnusableError, CellState.FAILED, "RunContainerError", PermanentError),
    (InvalidImageReferenceError, CellState.FAILED, "InvalidImageReference", PermanentError),
    (SecretUnavailableError, CellState.FAILED, "SecretUnavailable", TemporaryError),
    (ImageUnavailableError, CellState.FAILED, "ImageUnavailable", TemporaryError),
    (NetworkError, CellState.FAILED, "NetworkFailed", TemporaryError),
    (CgroupError, CellState.FAILED, "CgroupFailed", TemporaryError),
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


class _Pass:
    """The observations of one reconcile pass, turned into status at its end."""

    def __init__(self, cell: Cell) -> None:
        self.previous = {status.id: status for status in cell.status.containers}
        self.statuses: list[ContainerStatus] = []
        self.observations: list[ContainerObservation] = []
        self.wake_in: float | None = None
        self.containerd_ids: frozenset[str] = frozenset()

    def wake_after(self, seconds: float) -> None:
        self.wake_in = seconds if self.wake_in is None else min(self.wake_in, seconds)


class CellController:
    def __init__(
        self,
        *,
        host: Host,
        registry: Registry,
        images: ImageProvider,
        facts: HostFacts,
        recorder: EventRecorder | None = None,
    ) -> None:
        self.host = host
        self.registry = registry
        self.images = images
        self.facts = facts
        self.recorder = recorder
        """Where the cell's Events go (none in tests that do not look at them)."""

    def _event(
        self, cell: Cell, reason: EventReason, message: str, *, warning: bool = False
    ) -> None:
        """Note what happened to the cell: queued, never awaited (see framework.recorder)."""
        if self.recorder is not None:
            kind = EventType.WARNING if warning else EventType.NORMAL
            self.recorder.event(cell, reason, message, type=kind)

    # --- reconcile ----------------------------------------------------------------------

    async def reconcile(self, cell: Cell, ctx: HandlerContext) -> None:
        await ready_parent(ctx, cell, delay=self.host.settings.parent_wait_seconds)
        key = cell_key(cell)
        realm = await get_as(ctx, Realm, key[:1])
        space = await get_as(ctx, Space, key[:2])
        namespace = self.host.namespace_of(realm)

        if cell.spec.desired_state == DesiredCellState.STOPPED:
            running = [
                c.id
                for c in cell.status.containers
                if c.state in (ContainerState.READY, ContainerState.PAUSED)
            ]
            for container_id in running:
                self._event(cell, EventReason.KILLING, f"stopping container {container_id}")
            await self._stop(cell, namespace)
            if cell.status.state != CellState.STOPPED:
                self._event(cell, EventReason.STOPPED, "stopped (desiredState is Stopped)")
            await report(
                ctx,
                cell,
                state=CellState.STOPPED,
                reason="StoppedByUser",
                message="desiredState is Stopped",
                containers=self._stopped_statuses(cell),
            )
            return

        try:
            cell = await self._converge(cell, ctx, realm=realm, space=space, namespace=namespace)
        except BUILD_FAILURES as error:
            state, reason, retry = classify_build_failure(error)
            self._event(cell, EventReason.FAILED, f"{reason}: {error}", warning=True)
            await report(ctx, cell, state=state, reason=reason, message=str(error))
            raise retry(str(error), reason=reason) from error

    async def _converge(
        self, cell: Cell, ctx: HandlerContext, *, realm: Realm, space: Space, namespace: str
    ) -> Cell:
        key = cell_key(cell)
        files = CellFiles(self.host.settings.state_dir, key)
        delegation = Delegation.ALL if cell.spec.nested_cgroup_runtime else Delegation.RESOURCES
        cgroup = await self.host.cgroups.ensure(CgroupPath(key), delegation=delegation)

        attachment: CellAttachment | None = None
        if not all(c.host_network for c in cell.spec.containers):
            attachment = await self.host.networks.attach_cell(
                cell_id=network_id(key, self.host.networks.settings.instance),
                cni_config_path=conflist_file(
                    space,
                    default_dir=self.host.settings.cni_conf_dir,
                    instance=self.host.networks.settings.instance,
                ),
            )
        aliases = sorted({alias for c in cell.spec.containers for alias in c.networks_aliases})
        await write_cell_host_files(
            directory=files.directory,
            hosts_text=render_hosts(
                cell_name=cell.metadata.name,
                ip=attachment.ip if attachment is not None else None,
                aliases=aliases,
            ),
            hostname_text=render_hostname(cell.metadata.name),
        )

        work = _Pass(cell)
        credentials = await registry_credentials(self.registry, realm)

        async def pulling(image: str) -> None:
            # A pull may take minutes: say so (run --wait and get show it); the pass's
            # own report replaces the note.
            nonlocal cell
            cell = await report(
                ctx, cell, observe=False, reason="Pulling", message=f"pulling image {image}"
            )

        for container in ordered_containers(cell):
            await self._converge_container(
                cell,
                container,
                work=work,
                on_pull=pulling,
                space=space,
                namespace=namespace,
                credentials=credentials,
                files=files,
                cgroup_parent=cgroup.path,
                netns_path=str(attachment.netns_path) if attachment is not None else None,
            )

        # Containers dropped from the spec go; the others were just converged.
        await self._remove_all_containers(namespace, key, keep=work.containerd_ids)
        state = derive_cell_state(
            containers=work.observations,
            desired_stopped=False,
            build_error=False,
            host_unobservable=False,
        )
        ready_observed = cell.status.ready_observed or state == CellState.READY
        fields: dict[str, Any] = {
            "state": state,
            "ready_observed": ready_observed,
            "containers": work.statuses,
            "cgroup_ready": True,
            "cgroup_path": cgroup.path,
            "subtree_controllers": list(cgroup.subtree_controllers),
            "network": CellNetworkStatus(
                bridge_name=attachment.bridge_name if attachment is not None else None,
                ip=str(attachment.ip) if attachment is not None else None,
            ),
        }
        if work.wake_in is None or cell.status.reason == "Pulling":
            fields.update(reason=None, message=None)
        cell = await report(ctx, cell, **fields)

        if (
            cell.spec.auto_delete
            and ready_observed
            and work.observations
            and all(not o.running and not o.restart_owed for o in work.observations)
        ):
            ctx.logger.info("autoDelete: every workload of the cell has exited; deleting it")
            await self.registry.delete(Kind.CELL, key)
            return cell
        if work.wake_in is not None:
            raise TemporaryError(
                f"a restart is owed in {work.wake_in:.1f}s",
                delay=work.wake_in,
                reason="RestartBackoff",
            )
        return cell

    async def _converge_container(
        self,
        cell: Cell,
        container: ContainerSpec,
        *,
        work: _Pass,
        space: Space,
        namespace: str,
        credentials: list[RegistryCredential],
        files: CellFiles,
        cgroup_parent: str,
        netns_path: str | None,
        on_pull: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        realm_name, space_name, stack_name, cell_name = cell_key(cell)
        effective = apply_space_defaults_to_container(space, container)
        cid = containerd_container_id(
            space=space_name, stack=stack_name, cell=cell_name, container=container.id
        )
        pulled = False

        async def pulling(image: str) -> None:
            nonlocal pulled
            pulled = True
            self._event(cell, EventReason.PULLING, f"pulling image {image}")
            if on_pull is not None:
                await on_pull(image)

        image = await self.images.ensure(
            namespace=namespace, image=effective.image, credentials=credentials, on_pull=pulling
        )
        image_name = image.name
        if pulled:
            self._event(cell, EventReason.PULLED, f"pulled image {effective.image}")
        resolved = await resolve_secret_refs(self.registry, cell_key(cell), effective)
        secrets = await stage_secrets(
            effective, files=files, environ=self.facts.environ, resolved=resolved
        )
        devices = {
            path: found for path in effective.devices if (found := inspect_host_device(path))
        }
        # tty.onInit/logFile: the command runs under a /bin/sh wrapper the image must have.
        wrapped = effective.attachable and wrapper_needed(effective.tty)
        has_shell = (
            await self.images.has_file(namespace=namespace, image=image_name, path=SHELL)
            if wrapped
            else None
        )
        context = SpecContext(
            image_config=image.config,
            passwd=image.passwd,
            group=image.group,
            container_id=cid,
            hostname=cell_name,
            cgroups_path=f"{cgroup_parent}/{container.id}",
            realm=realm_name,
            space=space_name,
            stack=stack_name,
            cell=cell_name,
            cell_cgroup_path=cgroup_parent,
            netns_path=None if effective.host_network else netns_path,
            hosts_file=None if effective.host_network else str(files.hosts),
            hostname_file=None if effective.host_network else str(files.hostname),
            secret_files=secrets.files,
            secret_env=secrets.env,
            host_hard_rlimits=self.facts.hard_rlimits,
            devices=devices,
            host_devices=list_host_devices() if effective.privileged else (),
            terminal=effective.attachable,
            tty_state_dir=str(files.tty_state(container.id)) if wrapped else None,
            image_has_shell=has_shell,
        )
        spec = build_runtime_spec(effective, context=context)
        digest = spec_digest(
            spec if secrets.digest is None else {**spec, "kukeonSecretFiles": secrets.digest},
            image=image_name,
        )
        if secrets.files:
            user = spec["process"]["user"]
            await own_secret_files(secrets, uid=user["uid"], gid=user["gid"])

        previous = work.previous.get(container.id) or ContainerStatus(id=container.id)
        containers = self.host.containerd.containers(namespace)
        tasks = self.host.containerd.tasks(namespace)
        try:
            existing = await containers.get(cid)
        except ContainerNotFoundError:
            existing = None
        restarted_at = cell.metadata.annotations.get(ANNOTATION_RESTARTED_AT, "")
        if existing is not None and existing.labels.get(LABEL_SPEC_DIGEST) != digest:
            await self.remove_container(namespace, cid)
            existing = None
            previous = ContainerStatus(id=container.id)  # a new spec starts its own history
        elif existing is not None and existing.labels.get(LABEL_RESTARTED_AT, "") != restarted_at:
            # A restart asked for by the user: a fresh container, the same history.
            await self.remove_container(namespace, cid)
            existing = None
        kept = existing is not None
        if existing is None:
            labels = kukeon_labels(
                realm=realm_name,
                space=space_name,
                stack=stack_name,
                cell=cell_name,
                container=container.id,
            )
            labels[LABEL_SPEC_DIGEST] = digest
            labels[LABEL_NODE] = self.host.settings.node_name
            labels[LABEL_RESTARTED_AT] = restarted_at
            labels.update(instance_labels(self.host.instance))
            # AlreadyExists: a concurrent or interrupted create; the next pass checks the digest.
            with contextlib.suppress(AlreadyExistsError):
                await containers.create(cid, image=image_name, spec=spec, labels=labels)
                self._event(cell, EventReason.CREATED, f"created container {container.id}")

        if wrapped:
            user = spec["process"]["user"]
            await prepare_tty_state(
                files, container.id, digest=digest, uid=user["uid"], gid=user["gid"]
            )

        work.containerd_ids |= {cid}
        task = await self._task(tasks, cid)
        status = previous.model_copy(
            update={"name": cid, "image": effective.image, "reason": None, "message": None}
        )
        owed = False
        exited: Exit | None = None
        if task is None and kept and previous.state == ContainerState.READY and previous.pid:
            # It ran and its task is gone without an exit we saw: its shim died (containerd
            # then kills and removes the task) or the host restarted. An exit like any other.
            exited = Exit(code=137, finished=now(), reason="TaskLost")
        elif task is None and kept and previous.exit_code is not None and previous.finish_time:
            # An exit already recorded whose task has gone since (its shim died after it):
            # the restart policy and backoff decide as they did, and a start is a restart.
            exited = Exit(
                code=previous.exit_code, finished=previous.finish_time, reason=previous.reason
            )
        elif task is None or task.status == TaskStatus.CREATED:
            if task is not None:
                await tasks.delete(cid)
            pid = await self._start(namespace, cid, files, effective)
            self._event(cell, EventReason.STARTED, f"started container {container.id}")
            status = status.model_copy(
                update={
                    "state": ContainerState.READY,
                    "pid": pid,
                    "start_time": now(),
                    "exit_code": None,
                    "exit_signal": None,
                    "finish_time": None,
                }
            )
        elif task.status in (TaskStatus.RUNNING, TaskStatus.PAUSING, TaskStatus.PAUSED):
            state = (
                ContainerState.READY if task.status == TaskStatus.RUNNING else ContainerState.PAUSED
            )
            status = status.model_copy(update={"state": state, "pid": task.pid})
        else:  # STOPPED (or UNKNOWN, which containerd reports for a task whose shim is gone)
            # A task whose shim died has no exit time: the one recorded when the exit was
            # first seen keeps the backoff from restarting at every pass.
            recorded = previous.finish_time if previous.pid is None else None
            exited = Exit(
                code=task.exit_status,
                finished=task.exited_at or recorded or now(),
                reason=await self._exit_reason(cell_key(cell), container.id, task.exit_status),
            )
        if exited is not None:
            code = exited.code
            if _new_exit(previous, exited):
                self._exit_event(cell, container.id, exited)
            owed = restart_owed(
                policy=str(effective.restart_policy),
                exit_code=code,
                restart_count=status.restart_count,
                max_retries=effective.restart_max_retries,
            )
            status = status.model_copy(
                update={
                    "state": ContainerState.STOPPED if code == 0 else ContainerState.FAILED,
                    "pid": None,
                    "exit_code": code,
                    "exit_signal": exit_signal_name(code),
                    "finish_time": exited.finished,
                    "reason": exited.reason,
                }
            )
            if owed:
                due = restart_due_at(
                    finished_at=exited.finished,
                    backoff_seconds=effective.restart_backoff_seconds,
                )
                remaining = (due - now()).total_seconds()
                if remaining <= 0:
                    if task is not None:
                        await tasks.delete(cid)
                    last = ContainerTerminated(
                        exit_code=code,
                        signal=exit_signal_name(code),
                        reason=exited.reason,
                        started_at=status.start_time,
                        finished_at=exited.finished,
                    )
                    pid = await self._start(namespace, cid, files, effective)
                    self._event(cell, EventReason.RESTARTED, f"restarted container {container.id}")
                    moment = now()
                    status = status.model_copy(
                        update={
                            "state": ContainerState.READY,
                            "pid": pid,
                            "restart_count": status.restart_count + 1,
                            "restart_time": moment,
                            "start_time": moment,
                            "reason": None,
                            "last_state": last,
                        }
                    )
                    owed = False
                else:
                    # `reason` keeps why it ended (OOMKilled...); the wait is in the message.
                    status = status.model_copy(
                        update={"message": f"exited with {code}; restarting in {remaining:.1f}s"}
                    )
                    self._event(
                        cell,
                        EventReason.BACK_OFF,
                        f"back-off restarting container {container.id}",
                        warning=True,
                    )
                    work.wake_after(remaining)
        running = status.state == ContainerState.READY
        work.statuses.append(status)
        work.observations.append(
            ContainerObservation(
                container.id,
                root=container.id == cell.spec.root_container().id,
                running=running,
                exit_code=None if running else status.exit_code,
                restart_owed=owed,
            )
        )

    def _exit_event(self, cell: Cell, container: str, exited: Exit) -> None:
        if exited.reason == "OOMKilled":
            self._event(
                cell,
                EventReason.OOM_KILLED,
                f"container {container} was killed by the OOM killer (exit code {exited.code})",
                warning=True,
            )
            return
        why = f" ({exited.reason})" if exited.reason else ""
        self._event(
            cell,
            EventReason.EXITED,
            f"container {container} exited with code {exited.code}{why}",
            warning=exited.code != 0,
        )

    async def _exit_reason(self, key: CellKey, container: str, code: int) -> str:
        """``OOMKilled`` when an OOM killer killed a process of the container's cgroup (still
        there: runc removes it when the task is deleted), ``Error`` for another failure."""
        if code == 0:
            return "Completed"
        try:
            stats = await self.host.cgroups.read_stats(CgroupPath((*key, container)))
        except (CgroupError, ValueError):
            stats = None
        if stats is not None and stats.oom_kills:
            return "OOMKilled"
        return "Error"

    @staticmethod
    async def _task(tasks: Any, cid: str) -> TaskInfo | None:
        try:
            task: TaskInfo = await tasks.get(cid)
        except TaskNotFoundError:
            return None
        return task

    async def _start(
        self, namespace: str, cid: str, files: CellFiles, container: ContainerSpec
    ) -> int:
        tasks = self.host.containerd.tasks(namespace)
        log = files.log(container.id)
        await files.start_new_log(container.id)
        try:
            if container.attachable:
                # A TTY whose stdin FIFO and output the shim's logger holds (see ttyio): the
                # container keeps its terminal while kukeond is down; its output goes to the
                # log.
                await create_attachable_task(
                    tasks, cid, stdin=files.tty_stdin(container.id), log=log
                )
            else:
                # 0640 and root's, whatever the umask of the shim's logger that appends to it.
                await asyncio.to_thread(create_log_file, log)
                await tasks.create(cid, io=TaskIO.log_file(log))
            return await tasks.start(cid)
        except ProcessNotStartableError as error:
            raise CommandUnusableError(container, error) from error

    async def _stop_task(self, namespace: str, cid: str) -> None:
        tasks = self.host.containerd.tasks(namespace)
        task = await self._task(tasks, cid)
        if task is None:
            return
        if task.status in (TaskStatus.RUNNING, TaskStatus.PAUSED, TaskStatus.PAUSING):
            await tasks.stop(cid, grace_period=self.host.settings.stop_grace_seconds)
        await tasks.delete(cid)

    async def remove_container(self, namespace: str, cid: str) -> None:
        await self._stop_task(namespace, cid)
        await self.host.containerd.containers(namespace).delete(cid)

    async def _stop(self, cell: Cell, namespace: str) -> None:
        """Stop every task of the cell at once (each may take the whole grace period)."""
        _, space, stack, name = cell_key(cell)
        await _all(
            self._stop_task(
                namespace,
                containerd_container_id(space=space, stack=stack, cell=name, container=c.id),
            )
            for c in ordered_containers(cell)
        )

    @staticmethod
    def _stopped_statuses(cell: Cell) -> list[ContainerStatus]:
        previous = {status.id: status for status in cell.status.containers}
        stopped: list[ContainerStatus] = []
        for container in ordered_containers(cell):
            status = previous.get(container.id) or ContainerStatus(id=container.id)
            if status.state in (ContainerState.READY, ContainerState.PAUSED):
                status = status.model_copy(
                    update={"state": ContainerState.STOPPED, "pid": None, "finish_time": now()}
                )
            stopped.append(status)
        return stopped

    # --- finalize -----------------------------------------------------------------------

    async def finalize(self, cell: Cell, ctx: HandlerContext) -> None:
        key = cell_key(cell)
        namespace = await self._namespace(ctx, key[0])
        await self._remove_all_containers(namespace, key)
        await self.host.networks.detach_cell(
            cell_id=network_id(key, self.host.networks.settings.instance)
        )
        await self.host.cgroups.remove(CgroupPath(key))
        await CellFiles(self.host.settings.state_dir, key).remove()
        self._event(
            cell,
            EventReason.DELETED,
            f"deleted from node {self.host.settings.node_name}: containers, network and "
            "cgroup removed",
        )

    async def _namespace(self, ctx: HandlerContext, realm: str) -> str:
        found = await get_as(ctx, Realm, (realm,))
        return self.host.namespace_of(found)

    async def _remove_all_containers(
        self, namespace: str, key: CellKey, *, keep: frozenset[str] = frozenset()
    ) -> None:
        """Every container labelled as this cell's but those in `keep` (containerd ids)."""
        realm, space, stack, name = key
        labels = {
            LABEL_MANAGED: "true",
            "kukeon.io/realm": realm,
            "kukeon.io/space": space,
            "kukeon.io/stack": stack,
            "kukeon.io/cell": name,
        }
        found = await self.host.containerd.containers(namespace).list(labels=labels)
        await _all(self.remove_container(namespace, c.id) for c in found if c.id not in keep)


def _new_exit(previous: ContainerStatus, exited: Exit) -> bool:
    """Whether this exit is news: the container ran when last reported, or the exit
    differs from the one recorded (a pass that only waits for the backoff sees it again)."""
    if previous.state in (ContainerState.READY, ContainerState.PAUSED):
        return True
    if previous.finish_time is None:
        return True
    return abs((previous.finish_time - exited.finished).total_seconds()) > 0.001


async def _all(steps: Iterable[Awaitable[None]]) -> None:
    """Run the steps concurrently; every one runs to its end, then the first error is raised."""
    results = await asyncio.gather(*steps, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
