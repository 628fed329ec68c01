"""The cell controller: a cell document becomes a network namespace, a cgroup and running tasks.

One reconcile pass, always from scratch (nothing is remembered between passes):

1. wait for the stack to be Ready; read the realm (containerd namespace, registry
   credentials) and the space (container defaults, network);
2. `desiredState: Stopped` -> stop every task (SIGTERM, grace, SIGKILL), keep the rest;
3. the cell's cgroup, its network namespace attached to the space's bridge, and the
   rendered /etc/hosts and /etc/hostname;
4. per container, root first: space defaults applied, image made available, OCI runtime
   spec built (`cellbuild`); what containerd holds of it observed, the actions planned
   (`cellplan`, pure: a container created from a different spec (digest label) is
   recreated, only that one; a missing task is created and started; an exited task is
   restarted when its policy owes a restart and the backoff has passed) and performed
   (`cellexec`). The root container is made beside step 3, and its first task created in
   the namespace while it is attached; started once it is.
5. per-container status and the derived cell state are written (only when changed); the
   `readyObserved` latch is set the first time the cell is Ready; an `autoDelete` cell
   whose workloads all exited with no restart owed is deleted, if it was ever Ready.

A restart owed but not yet due, or the grace of a dropped container's stop (`stopgraces`:
no pass waits one out), ends the pass with Requeue (no failure: the status is written), a
host fault with TemporaryError, so the framework comes back at the right time (a task exit
in containerd's events: at once). Finalize stops and deletes the tasks and containers,
detaches the cell from its network, and removes its cgroup and files.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from kukeon.api import (
    Cell,
    CellState,
    ContainerSpec,
    ContainerState,
    ContainerStatus,
    DesiredCellState,
    EventReason,
    EventType,
    Kind,
    Realm,
    Space,
)
from kukeon.api.containerstatus import CRASH_LOOP_BACK_OFF
from kukeon.concurrently import both, nothing
from kukeon.framework import EventRecorder, HandlerContext, Requeue
from kukeon.runtime.cgroups import CgroupPath, CgroupState, Delegation
from kukeon.runtime.containerd.client import patience as containerd_patience
from kukeon.runtime.containerd.tasks import TaskStatus
from kukeon.runtime.network import cell_network_id, render_hostname, write_cell_host_files
from kukeon.store import Registry

from .cellbuild import (
    BuiltContainer,
    CellPlace,
    ContainerBuilder,
    HostFacts,
    container_storage_ceiling,
    made_elsewhere,
)
from .cellexec import (
    ANNOTATION_RESTARTED_AT,
    LABEL_NODE,
    LABEL_RESTARTED_AT,
    LABEL_SPEC_DIGEST,
    CellExecutor,
)
from .cellfailures import (
    BUILD_FAILURES,
    CONTAINER_FAILURES,
    ContainerFailure,
    ContainersFailedError,
    FailedContainers,
    classify_build_failure,
    failed_containers,
    failed_fields,
    missing_images,
)
from .cellfiles import CellFiles
from .cellnetns import cell_namespace, cell_netns_path
from .cellnetwork import CellInterfaces, CellNetworking
from .cellpeers import CellPeers, render_cell_hosts
from .cellplan import (
    ContainerInputs,
    ContainerPlan,
    Note,
    plan_cell,
    plan_container,
    task_beside_network,
)
from .cellports import (
    ADDRESS_RECHECK_SECONDS,
    HOST_ADDRESS_MISSING,
    missing_host_addresses,
    publish_ports,
    release_ports,
)
from .cellprogress import PassProgress, ordered_containers
from .cellstate import containerd_container_id
from .cellstop import plan_stop, stopped_statuses
from .celltrial import refused_replacement
from .cellusers import cell_id_range
from .hierarchy import get_as, ready_parent
from .host import Host
from .images import ImageProvider, realm_image_quota
from .imagewaits import ImageWaits
from .logcopiers import LogCopiers
from .probing import ProbeManager, RunningContainer
from .pullcredentials import ignored_credentials, registry_credentials
from .reporting import now, report
from .restartwaits import RestartWaits
from .stopgraces import StopGraces, stop_grace, waited

__all__ = [
    "ANNOTATION_RESTARTED_AT",
    "LABEL_NODE",
    "LABEL_RESTARTED_AT",
    "LABEL_SPEC_DIGEST",
    "CellController",
    "HostFacts",
    "cell_key",
    "network_id",
    "ordered_containers",
    "registry_credentials",
]

logger = logging.getLogger(__name__)

CellKey = tuple[str, str, str, str]


def cell_key(cell: Cell) -> CellKey:
    return (cell.spec.realm_id, cell.spec.space_id, cell.spec.stack_id, cell.metadata.name)


def network_id(key: tuple[str, ...], instance: str) -> str:
    """The cell's netns name and CNI container id (`_` cannot occur in resource names)."""
    return cell_network_id(key, instance)


CONTAINERD_PATIENCE_SECONDS = 5.0
"""How long a cell's pass waits for an unreachable containerd before it reports the cell
HostUnobservable (and is retried after the queue's backoff): long enough to ride out a
containerd restart, short enough that a cell made while containerd is down says why."""


class LeftThisNodeError(Exception):
    """The node stopped running the cell (fenced) while its pass was under way."""


@dataclass(frozen=True)
class _Prepared:
    """A container built and made in containerd as planned; its task not acted on yet."""

    built: BuiltContainer
    plan: ContainerPlan


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
        self.probes: ProbeManager | None = None
        """Set by ``Controllers.register``: the probes of the containers that run here."""
        self.peers: CellPeers | None = None
        """Set by ``Controllers.register``: the other cells each hosts file lists."""
        self.log_copiers: LogCopiers | None = None
        """Set by ``Controllers.register``: the watch on the running tasks' log copiers."""
        self.stop_graces = StopGraces()
        self.restart_waits = RestartWaits()  # each back-off also on the monotonic clock
        self.image_waits = ImageWaits()
        """The cells whose pass ended waiting for an image, woken when it arrives (its
        trigger set by ``Controllers.register``)."""
        self.runs_here: Callable[[Cell], bool] = lambda cell: True
        """Set by ``Controllers``: whether this node still runs the cell (``departures``).
        The framework asks it before a pass; a task's start asks again: a pass under way
        when the node fenced itself (a pull can take minutes) must not start a copy after
        fencing stopped the others."""

    def _event(
        self,
        cell: Cell,
        reason: EventReason,
        message: str,
        *,
        warning: bool = False,
        occurrence: str | None = None,
    ) -> None:
        """Note what happened to the cell: queued, never awaited (see framework.recorder)."""
        if self.recorder is not None:
            kind = EventType.WARNING if warning else EventType.NORMAL
            self.recorder.event(cell, reason, message, type=kind, occurrence=occurrence)

    def _note(self, cell: Cell, note: Note) -> None:
        self._event(
            cell, note.reason, note.message, warning=note.warning, occurrence=note.occurrence
        )

    def _executor(self, cell: Cell | None = None) -> CellExecutor:
        """Built per use: `host` may be replaced on a running controller (tests do)."""
        executor = CellExecutor(self.host)
        if cell is not None:
            executor.note = lambda note: self._note(cell, note)
            executor.grace_seconds = stop_grace(cell)
            executor.task_ended = self.log_copiers.task_ended if self.log_copiers else None
        return executor

    # --- reconcile ----------------------------------------------------------------------

    async def reconcile(self, cell: Cell, ctx: HandlerContext) -> None:
        with containerd_patience(CONTAINERD_PATIENCE_SECONDS):
            await self._reconcile(cell, ctx)

    async def _reconcile(self, cell: Cell, ctx: HandlerContext) -> None:
        await ready_parent(ctx, cell, delay=self.host.settings.parent_wait_seconds)
        key = cell_key(cell)
        realm = await get_as(ctx, Realm, key[:1])
        space = await get_as(ctx, Space, key[:2])
        namespace = self.host.namespace_of(realm)
        since = self.image_waits.begin(key)

        if cell.spec.desired_state == DesiredCellState.STOPPED:
            if self.probes is not None:
                self.probes.forget(key)
            if self.log_copiers is not None:
                self.log_copiers.forget(key)
            await self._stop(cell, ctx, namespace)
            return
        progress = PassProgress(ctx, cell)
        try:
            cell = await self._converge(progress, realm=realm, space=space, namespace=namespace)
        except LeftThisNodeError as left:
            logger.info("cell %s no longer runs here: its pass starts no task", left)
        except ContainersFailedError as error:
            for image in missing_images(*(f.error for f in error.failed.failures)):
                self.image_waits.waiting(key, image, since=since)
            for said in error.failed.events:
                self._event(cell, EventReason.FAILED, said, warning=True)
            raise error.retry() from error
        except BUILD_FAILURES as error:
            state, reason, retry = classify_build_failure(error)
            for image in missing_images(error):  # an import or pull of it requeues the cell
                self.image_waits.waiting(key, image, since=since)
            self._event(cell, EventReason.FAILED, f"{reason}: {error}", warning=True)
            await report(ctx, cell, state=state, reason=reason, message=str(error))
            raise retry(str(error), reason=reason) from error
        await self.stop_graces.abandon(CellFiles(self.host.settings.state_dir, key))

    async def _stop(self, cell: Cell, ctx: HandlerContext, namespace: str) -> None:
        """`desiredState: Stopped`: every task stopped at once (`stopgraces`), the rest kept."""
        plan, key = plan_stop(cell), cell_key(cell)
        containers = ordered_containers(cell)
        names = (
            containerd_container_id(space=key[1], stack=key[2], cell=key[3], container=c.id)
            for c in containers
        )
        files = CellFiles(self.host.settings.state_dir, key)
        await self.stop_graces.stop(self._executor(cell), files, (namespace, names), plan.killing)
        for note in plan.stopped:
            self._note(cell, note)
        await report(
            ctx,
            cell,
            state=CellState.STOPPED,
            reason="StoppedByUser",
            message="desiredState is Stopped",
            containers=stopped_statuses(cell, containers, at=now()),
        )

    async def _converge(
        self, progress: PassProgress, *, realm: Realm, space: Space, namespace: str
    ) -> Cell:
        cell, ctx = progress.cell, progress.ctx
        key = cell_key(cell)
        files = CellFiles(self.host.settings.state_dir, key)
        place = CellPlace(
            key=key,
            namespace=namespace,
            files=files,
            # Where `_cell_host` puts them: the specs name these paths before they exist.
            cgroup_parent=self.host.cgroups.cgroup_path(CgroupPath(key)),
            netns_path=cell_netns_path(self.host, cell, key),
            credentials=await registry_credentials(self.registry, realm),
            ignored_credentials=ignored_credentials(realm),
            cgroup_nesting=self.host.cgroups.nesting() if cell.spec.nested_cgroup_runtime else None,
            id_range=await cell_id_range(self.host, cell),
            ephemeral_storage_bytes=container_storage_ceiling(realm),
            image_storage_bytes=realm_image_quota(realm),
            bind_roots=self.host.settings.bind_roots(realm),
        )
        executor = self._executor(cell)
        builder = ContainerBuilder(
            registry=self.registry,
            images=self.images,
            facts=self.facts,
            note=lambda note: self._note(cell, note),
        )

        async def prepare(container: ContainerSpec) -> _Prepared | ContainerFailure:
            return await self._prepare_container(
                progress, builder, executor, place, container, space
            )

        containers = ordered_containers(cell)
        # The root container is built and created in containerd while the cell's cgroup,
        # its empty network namespace and hosts files are made (the spec names their paths
        # before they exist). The cell's containers are listed meanwhile too: those dropped
        # from the spec go at the end (only this pass makes containers of the cell, all of
        # them kept).
        (cgroup, netns), (first, listed) = await both(
            self._cell_host(cell, files, namespace),
            both(
                prepare(containers[0]) if containers else nothing(),
                executor.cell_containers(namespace, key),
            ),
        )
        if (cgroup.path, netns) != (place.cgroup_parent, place.netns_path):
            place, first = made_elsewhere(place, cgroup.path, netns), None
        # Then the namespace is attached while the root container's task is created in it:
        # runc makes the process, which runs the container's command only once started,
        # after the attachment (a workload never runs without its network).
        early = first if isinstance(first, _Prepared) else None
        early = early if early and task_beside_network(early.plan, cell.status.reason) else None
        interfaces = await self._network_beside_task(
            cell, ctx, space, files, (early, place, executor)
        )
        converged, failures = await self._each_container(
            progress, containers, first, prepare, (place, executor, early is not None)
        )
        return await self._conclude(
            progress, (place, executor, listed), converged, failures, (cgroup, interfaces)
        )

    async def _each_container(
        self,
        progress: PassProgress,
        containers: list[ContainerSpec],
        first: _Prepared | ContainerFailure | None,
        prepare: Callable[[ContainerSpec], Awaitable[_Prepared | ContainerFailure]],
        run: tuple[CellPlace, CellExecutor, bool],
    ) -> tuple[list[tuple[ContainerPlan, ContainerStatus]], list[ContainerFailure]]:
        """Each container converged on its own, root first (``first``: its preparation, made
        already; ``run``'s flag: its task created already): one that fails is told apart,
        its siblings are converged all the same (as the kubelet handles each container)."""
        place, executor, early = run
        converged: list[tuple[ContainerPlan, ContainerStatus]] = []
        failures: list[ContainerFailure] = []
        try:
            for index, container in enumerate(containers):
                prepared = first if index == 0 and first is not None else await prepare(container)
                if isinstance(prepared, ContainerFailure):
                    failures.append(prepared)
                    continue
                created = index == 0 and early
                try:
                    converged.append(
                        await self._run_container(
                            progress, prepared, place, executor, created=created
                        )
                    )
                except CONTAINER_FAILURES as error:
                    failures.append(ContainerFailure(container.id, error, untouched=False))
        except Exception:
            # The pass ends without its report: a container started before the failure is
            # written all the same, a restart with its history (restartCount, lastState),
            # a new container (`kukectl restart`, a changed spec) with its new start: a
            # later pass finds it running and keeps the start it reads back, so one whose
            # sibling's stop grace requeued the pass kept its old startTime for good.
            await progress.record(*(s for plan, s in converged if plan.start))
            raise
        return converged, failures

    async def _conclude(
        self,
        progress: PassProgress,
        where: tuple[CellPlace, CellExecutor, list[str]],
        converged: list[tuple[ContainerPlan, ContainerStatus]],
        failures: list[ContainerFailure],
        host: tuple[CgroupState, CellInterfaces],
    ) -> Cell:
        """Containers dropped from the spec go (those that failed stay: one of its former
        spec may run on); probes and log copiers follow; the status is written."""
        place, executor, listed = where
        names = frozenset(status.name for _, status in converged if status.name) | {
            place.container_name(failure.container) for failure in failures
        }
        waiting = await self.stop_graces.removing(executor, place, names, listed)  # grace left
        views = self.probes.views(place.key) if self.probes else None
        failed = failed_containers(progress.cell, failures, views) if failures else None
        # One held on its former spec keeps its probes and storage watch as they were (this
        # pass has no spec of what runs); its siblings' follow what runs now.
        self._probe(progress.cell, place.namespace, converged, host[1], failed)
        if self.log_copiers is not None:
            held = failed.statuses.values() if failed is not None else ()
            statuses = [*(s for _, s in converged), *held]
            self.log_copiers.sync_statuses(progress.cell, place.files, statuses)
        finish = self._finish(progress.cell, progress.ctx, converged, *host, failed)
        return await (finish if waiting is None else waited(waiting, finish))

    async def _cell_host(
        self, cell: Cell, files: CellFiles, namespace: str
    ) -> tuple[CgroupState, str | None]:
        """The cell's cgroup, its network namespace (not attached yet: `_network`; a running
        task's taken back when its file is gone: `cellnetns`) and its /etc/hosts,
        /etc/hostname and /etc/resolv.conf when missing (a task's bind mounts need them
        when it is created; `_network` writes what they say)."""
        key = cell_key(cell)
        delegation = Delegation.ALL if cell.spec.nested_cgroup_runtime else Delegation.RESOURCES
        # None needs the others (a task joins them when it is created).
        cgroup, (netns, _) = await both(
            self.host.cgroups.ensure(CgroupPath(key), delegation=delegation),
            both(
                cell_namespace(
                    self.host,
                    cell,
                    key,
                    namespace,
                    lambda why: self._event(cell, EventReason.NETWORK_RECOVERED, why, warning=True),
                ),
                write_cell_host_files(
                    directory=files.directory,
                    hosts_text=render_cell_hosts(cell, None, ""),
                    hostname_text=render_hostname(cell.metadata.name),
                    only_missing=True,
                ),
            ),
        )
        return cgroup, str(netns) if netns is not None else None

    async def _network(
        self, cell: Cell, ctx: HandlerContext, space: Space, files: CellFiles
    ) -> CellInterfaces:
        """The cell's network namespace on its networks (`cellnetwork`), then its
        /etc/hosts (its address, its peers) and /etc/hostname."""
        key = cell_key(cell)
        interfaces = await CellNetworking(self.host).attach(ctx, cell, space, key)
        attachment = interfaces.primary
        peers = self.peers.peers_text(cell) if self.peers is not None else ""
        await write_cell_host_files(
            directory=files.directory,
            hosts_text=render_cell_hosts(
                cell, attachment.ip if attachment is not None else None, peers
            ),
            hostname_text=render_hostname(cell.metadata.name),
        )
        return interfaces

    async def _network_beside_task(
        self,
        cell: Cell,
        ctx: HandlerContext,
        space: Space,
        files: CellFiles,
        root: tuple[_Prepared | None, CellPlace, CellExecutor],
    ) -> CellInterfaces:
        """`_network`, and meanwhile the root container's task created (not started) when
        ``root`` has one to make; a failure of either leaves no task of it behind."""
        prepared, place, executor = root

        async def create() -> bool:
            if prepared is None:
                return False
            if not self.runs_here(cell):
                raise LeftThisNodeError("/".join(place.key))
            return await executor.create_planned_task(prepared.plan, prepared.built, place)

        interfaces, created = await asyncio.gather(
            self._network(cell, ctx, space, files), create(), return_exceptions=True
        )
        if isinstance(interfaces, BaseException) or isinstance(created, BaseException):
            if prepared is not None and created is True:
                await executor.discard_created_task(place.namespace, prepared.built.name)
            for result in (interfaces, created):
                if isinstance(result, BaseException):
                    raise result
        assert isinstance(interfaces, CellInterfaces)
        return interfaces

    async def _prepare_container(
        self,
        progress: PassProgress,
        builder: ContainerBuilder,
        executor: CellExecutor,
        place: CellPlace,
        container: ContainerSpec,
        space: Space,
    ) -> _Prepared | ContainerFailure:
        """Build one container, observe it, plan, and remove or create it in containerd
        (its task is `_run_container`'s); why not, when that failed."""
        name = place.container_name(container.id)
        # What containerd holds is observed while the container is built (it does not
        # depend on the build): a new cell's start waits for one, not both.
        try:
            built, (observed, task) = await both(
                builder.build(place, container, space, on_pull=progress.pulling),
                executor.observe(place.namespace, place.key, name, container.id),
            )
        except CONTAINER_FAILURES as error:  # nothing of it changed: does its old task run?
            found = await executor.task(place.namespace, name)
            runs = found is not None and found.status in (TaskStatus.RUNNING, TaskStatus.PAUSED)
            return ContainerFailure(container.id, error, untouched=runs)
        cell, effective = progress.cell, built.effective
        restarted_at = cell.metadata.annotations.get(ANNOTATION_RESTARTED_AT, "")
        plan = plan_container(
            ContainerInputs(
                spec=effective,
                name=built.name,
                root=effective.id == cell.spec.root_container().id,
                digest=built.digest,
                restarted_at=restarted_at,
                previous=progress.previous.get(effective.id),
                container=observed,
                task=task,
                now=now(),
                probes=self.probes.view(place.key, effective.id) if self.probes else None,
                probe_kill=self.probes.kill(place.key, effective.id) if self.probes else None,
                restart_wait=self.restart_waits.of(place.key, effective.id),
            )
        )
        refused = await refused_replacement(executor, built, place, (plan, task))
        if refused is not None:  # known before the running container is touched: held
            return ContainerFailure(container.id, refused, untouched=True)
        await self.stop_graces.replacing(executor, place, plan, (name, task))  # or Requeue
        try:
            await executor.execute_container_actions(plan, built, place, restarted_at=restarted_at)
        except CONTAINER_FAILURES as error:
            return ContainerFailure(container.id, error, untouched=False)
        return _Prepared(built, plan)

    async def _run_container(
        self,
        progress: PassProgress,
        prepared: _Prepared,
        place: CellPlace,
        executor: CellExecutor,
        *,
        created: bool = False,
    ) -> tuple[ContainerPlan, ContainerStatus]:
        """The prepared container's task actions (``created``: its new task is created already,
        to start); its status (already written when its exit time is the clock's)."""
        plan = prepared.plan
        if plan.start is not None and not self.runs_here(progress.cell):
            if created:
                await executor.discard_created_task(place.namespace, prepared.built.name)
            raise LeftThisNodeError("/".join(place.key))
        if not created:
            created = await executor.create_planned_task(plan, prepared.built, place)
        status = plan.status
        if created:
            at = now()  # before the start: an exit at once (containerd's time) comes after it
            status = plan.started(
                await executor.start_created_task(plan, prepared.built, place), at=at
            )
        if plan.record_exit:
            await progress.record(status)
        return plan, status

    async def _finish(
        self,
        cell: Cell,
        ctx: HandlerContext,
        converged: list[tuple[ContainerPlan, ContainerStatus]],
        cgroup: CgroupState,
        interfaces: CellInterfaces,
        failed: FailedContainers | None = None,
    ) -> Cell:
        """The cell's status from its containers' (and those that ``failed``); autoDelete;
        the wait for a restart."""
        plan = plan_cell(cell, [container_plan for container_plan, _ in converged])
        published = await publish_ports(
            self.host, cell, interfaces.primary, [status for _, status in converged]
        )
        fields: dict[str, Any] = {
            "state": plan.state,
            "ready_observed": plan.ready_observed,
            "containers": published,
            "cgroup_ready": True,
            "cgroup_path": cgroup.path,
            "subtree_controllers": list(cgroup.subtree_controllers),
            "network": interfaces.status(),
        }
        unreachable = (  # none without an address: nothing is published then
            await missing_host_addresses(cell, node=ctx.node_name)
            if interfaces.primary is not None
            else None
        )
        if failed is not None:
            fields.update(failed_fields(cell, failed, published))
        elif plan.wake_in is not None:  # said here: the framework records nothing of a Requeue
            fields.update(reason=CRASH_LOOP_BACK_OFF, message=plan.wait_message)
        elif plan.not_ready is not None:
            fields.update(reason="ContainersNotReady", message=plan.not_ready)
        elif unreachable is not None:
            fields.update(reason=HOST_ADDRESS_MISSING, message=unreachable)
        elif plan.clear_reason:  # an Error says which container failed, else nothing
            fields.update(reason=plan.failed_reason, message=plan.failed)
        cell = await report(ctx, cell, **fields)
        if failed is not None:
            raise ContainersFailedError(failed, wake_in=plan.wake_in)
        if plan.delete:
            ctx.logger.info("autoDelete: every workload of the cell has exited; deleting it")
            await self.registry.delete(Kind.CELL, cell_key(cell))
            return cell
        if plan.wake_in is not None:
            raise Requeue(plan.wait_message, delay=plan.wake_in, reason=CRASH_LOOP_BACK_OFF)
        if unreachable is not None:
            self._event(
                cell,
                EventReason.HOST_ADDRESS_MISSING,
                unreachable,
                warning=True,
                occurrence=unreachable,
            )
            # hostaddresses triggers a pass when an address comes; this look is the fallback.
            raise Requeue(unreachable, delay=ADDRESS_RECHECK_SECONDS, reason=HOST_ADDRESS_MISSING)
        return cell

    def _probe(
        self,
        cell: Cell,
        namespace: str,
        converged: list[tuple[ContainerPlan, ContainerStatus]],
        interfaces: CellInterfaces,
        failed: FailedContainers | None = None,
    ) -> None:
        """Hand the tasks that run now to the probes (a probe of a task gone stops, not a
        held one's)."""
        if self.probes is None:
            return
        running = [  # the effective specs: a space's default limit is the container's
            RunningContainer(spec=plan.spec, pid=status.pid, containerd_id=status.name)
            for plan, status in converged
            if status.state == ContainerState.RUNNING and status.pid and status.name and plan.spec
        ]
        primary = interfaces.primary
        self.probes.sync(
            cell,
            cell_key(cell),
            namespace=namespace,
            address=str(primary.ip) if primary is not None else "127.0.0.1",
            running=running,
            held=failed.held if failed is not None else (),
        )

    async def remove_container(self, namespace: str, cid: str) -> None:
        """Stop the container's task and delete it (the orphan collector's removal too)."""
        await self._executor().remove_container(namespace, cid)

    # --- finalize -----------------------------------------------------------------------

    async def finalize(self, cell: Cell, ctx: HandlerContext) -> None:
        with containerd_patience(CONTAINERD_PATIENCE_SECONDS):
            await self._finalize(cell, ctx)

    async def _finalize(self, cell: Cell, ctx: HandlerContext) -> None:
        key = cell_key(cell)
        self.image_waits.forget(key)
        if self.probes is not None:
            self.probes.forget(key)
        if self.log_copiers is not None:
            self.log_copiers.forget(key)
        namespace = await self._namespace(ctx, key[0])
        executor, files = self._executor(cell), CellFiles(self.host.settings.state_dir, key)
        found = await executor.cell_containers(namespace, key)
        await self.stop_graces.stop(executor, files, (namespace, found))  # or Requeue
        await executor.remove_all(namespace, key, found=found)
        await release_ports(self.host, key)
        await self.host.networks.detach_cell(
            cell_id=network_id(key, self.host.networks.settings.instance)
        )
        await self.host.cgroups.remove(CgroupPath(key))
        await files.remove()
        self.stop_graces.forget(key)
        self._event(
            cell,
            EventReason.DELETED,
            f"deleted from node {self.host.settings.node_name}: containers, network and "
            "cgroup removed",
        )

    async def _namespace(self, ctx: HandlerContext, realm: str) -> str:
        found = await get_as(ctx, Realm, (realm,))
        return self.host.namespace_of(found)
