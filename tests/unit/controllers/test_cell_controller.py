"""CellController against a fake host: reconcile, stop, restart, autoDelete, failures, finalize.

containerd, the cgroup driver, the networks, the image provider, the registry and the
handler context are in-memory fakes; the clock is the controller's `now`, moved by the
tests. What runs for real: the controller, the planner, the executor, the spec builder and
the cell's files in a temporary state directory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any, cast

import pytest

from kukeon.api import (
    AnyResource,
    Cell,
    CellState,
    CellStatus,
    ContainerState,
    Kind,
    Realm,
    Space,
    Stack,
)
from kukeon.controllers import cell as cell_module
from kukeon.controllers.cell import (
    CellController,
    HostFacts,
    registry_credentials,
)
from kukeon.controllers.cellfailures import classify_build_failure
from kukeon.controllers.cellplan import LIVE_TASK
from kukeon.controllers.host import Host, HostSettings
from kukeon.controllers.imagepulls import ImagePullingError
from kukeon.controllers.images import ImageUnavailableError, ReadyImage
from kukeon.controllers.restartwaits import RestartWaits
from kukeon.framework import HandlerContext, PermanentError, Requeue, TemporaryError
from kukeon.runtime.cgroups import CgroupStats, PidsCount
from kukeon.runtime.containerd.errors import (
    AlreadyExistsError,
    ContainerNotFoundError,
    ProcessNotStartableError,
    TaskNotFoundError,
)
from kukeon.runtime.containerd.tasks import ExitStatus, TaskInfo, TaskStatus
from kukeon.runtime.containerd.types import ImageConfig
from kukeon.runtime.network import NetworkError, cell_network_id
from kukeon.store import NotFound

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
NODE = "n1"
NAMESPACE = "r.kukeon.io"


# --- fakes -----------------------------------------------------------------------------------


@dataclass
class FakeContainer:
    id: str
    labels: dict[str, str]
    spec: dict[str, Any]


@dataclass
class Containerd:
    """The containers and tasks of one namespace, and what was done to them."""

    containers: dict[str, FakeContainer] = field(default_factory=dict)
    tasks: dict[str, TaskInfo] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    next_pid: int = 1000
    refuse_start: str | None = None
    refusal_detail: str = "exec: no such file"
    create_exists: bool = False
    # Tasks containerd holds but shows as not found (a create interrupted by kukeond's death).
    hidden_tasks: set[str] = field(default_factory=set)
    deaf: bool = False
    """The tasks ignore every signal but SIGKILL."""
    waiting: dict[str, list[asyncio.Event]] = field(default_factory=dict)
    """The waits for each task's exit."""

    def running(self, cid: str, pid: int) -> TaskInfo:
        return TaskInfo(cid, cid, pid, TaskStatus.RUNNING, 0, None, "", "", False)

    def exit(self, cid: str, code: int, *, at: datetime | None, status: TaskStatus) -> None:
        task = self.tasks[cid]
        self.tasks[cid] = TaskInfo(cid, cid, task.pid, status, code, at, "", "", False)
        for ended in self.waiting.pop(cid, []):
            ended.set()


class FakeContainers:
    def __init__(self, world: Containerd) -> None:
        self.world = world

    async def get(self, cid: str) -> FakeContainer:
        if cid not in self.world.containers:
            raise ContainerNotFoundError(cid, namespace=NAMESPACE)
        return self.world.containers[cid]

    async def create(
        self, cid: str, *, image: str, spec: dict[str, Any], labels: dict[str, str]
    ) -> None:
        self.world.calls.append(("create", cid))
        if self.world.create_exists:
            raise AlreadyExistsError("container", cid, namespace=NAMESPACE)
        self.world.containers[cid] = FakeContainer(cid, labels, spec)

    async def delete(self, cid: str) -> None:
        self.world.calls.append(("delete", cid))
        self.world.containers.pop(cid, None)

    async def list(self, *, labels: dict[str, str]) -> list[FakeContainer]:
        return [
            c
            for c in self.world.containers.values()
            if all(c.labels.get(k) == v for k, v in labels.items())
        ]


class FakeTasks:
    def __init__(self, world: Containerd) -> None:
        self.world = world

    async def get(self, cid: str) -> TaskInfo:
        if cid not in self.world.tasks:
            raise TaskNotFoundError(cid, namespace=NAMESPACE)
        return self.world.tasks[cid]

    async def create(self, cid: str, **_: Any) -> int:
        if cid in self.world.hidden_tasks:
            raise AlreadyExistsError("task", cid, namespace=NAMESPACE)
        self.world.calls.append(("create-task", cid))
        self.world.tasks[cid] = TaskInfo(cid, cid, 0, TaskStatus.CREATED, 0, None, "", "", False)
        return 0  # no process: the fake's tasks have no /proc to look at

    async def start(self, cid: str) -> int:
        if self.world.refuse_start is not None:
            raise ProcessNotStartableError(
                container_id=cid, reason=self.world.refuse_start, detail=self.world.refusal_detail
            )
        self.world.calls.append(("start", cid))
        self.world.next_pid += 1
        self.world.tasks[cid] = self.world.running(cid, self.world.next_pid)
        return self.world.next_pid

    async def stop(self, cid: str, *, grace_period: float, signal: int = 15) -> None:
        self.world.calls.append(("stop", cid))
        self.world.exit(cid, 143, at=T0, status=TaskStatus.STOPPED)

    async def kill(self, cid: str, signal: int = 15, *, all: bool = False) -> None:
        self.world.calls.append(("kill" if signal != 9 else "sigkill", cid))
        if signal == 9 or not self.world.deaf:
            self.world.exit(cid, 128 + signal, at=T0, status=TaskStatus.STOPPED)

    async def wait(self, cid: str) -> ExitStatus:
        task = self.world.tasks.get(cid)
        if task is not None and task.status in LIVE_TASK:
            ended = asyncio.Event()
            self.world.waiting.setdefault(cid, []).append(ended)
            await ended.wait()
            task = self.world.tasks.get(cid)
        return ExitStatus(task.exit_status if task is not None else 0, None)

    async def delete(self, cid: str) -> None:
        self.world.calls.append(("delete-task", cid))
        self.world.hidden_tasks.discard(cid)
        self.world.tasks.pop(cid, None)

    async def list(self) -> list[TaskInfo]:
        return list(self.world.tasks.values())


class FakeContainerd:
    def __init__(self, world: Containerd) -> None:
        self.world = world

    def containers(self, namespace: str) -> FakeContainers:
        assert namespace == NAMESPACE
        return FakeContainers(self.world)

    def tasks(self, namespace: str) -> FakeTasks:
        assert namespace == NAMESPACE
        return FakeTasks(self.world)


@dataclass
class FakeCgroupState:
    path: str
    subtree_controllers: tuple[str, ...] = ("cpu", "memory")


class FakeCgroups:
    def __init__(self) -> None:
        self.oom_kills = 0
        self.removed: list[tuple[str, ...]] = []
        self.pids_read: list[tuple[str, ...]] = []

    def cgroup_path(self, path: Any) -> str:
        return "/kukeon/" + "/".join(path.parts)

    async def ensure(self, path: Any, *, delegation: Any) -> FakeCgroupState:
        return FakeCgroupState(self.cgroup_path(path))

    async def read_stats(self, path: Any) -> CgroupStats:
        return CgroupStats(oom_kills=self.oom_kills)

    async def pids_counts(self, path: Any) -> tuple[PidsCount, ...]:
        self.pids_read.append(tuple(path.parts))
        return ()  # no pids controller: a failed task create is left as runc said it

    async def remove(self, path: Any) -> None:
        self.removed.append(tuple(path.parts))

    def log_copier_procs(self, realm: str) -> tuple[Path, ...]:
        return ()


@dataclass
class FakeAttachment:
    netns_path: Path
    bridge_name: str = "kk-r-s"
    network_name: str = "kk-r-s"
    ifname: str = "eth0"

    @property
    def ip(self) -> IPv4Address:
        return IPv4Interface("10.88.0.2/24").ip


@dataclass
class NetworkSettings:
    instance: str = ""


class FakeNetnsFiles:
    """Cell namespace files: those in ``lost`` no longer hold their tasks' namespace."""

    def __init__(self) -> None:
        self.lost: set[str] = set()
        self.bound_from: list[tuple[str, int]] = []

    def holds(self, name: str, pid: int) -> bool | None:
        return name not in self.lost

    async def bind_from(self, name: str, pid: int) -> bool:
        self.bound_from.append((name, pid))
        changed = name in self.lost
        self.lost.discard(name)
        return changed


class FakeNetworks:
    def __init__(self, root: Path) -> None:
        self.settings = NetworkSettings()
        self.netns = FakeNetnsFiles()
        self.root = root
        self.made: list[str] = []
        self.attached: list[str] = []
        self.detached: list[str] = []

    def cell_netns_path(self, cell_id: str) -> Path:
        return self.root / cell_id

    async def make_cell_netns(self, *, cell_id: str) -> Path:
        self.made.append(cell_id)
        return self.cell_netns_path(cell_id)

    async def attach_cell(
        self, *, cell_id: str, cni_config_path: Path, builtin: bool = False
    ) -> FakeAttachment:
        self.attached.append(cell_id)
        return FakeAttachment(self.cell_netns_path(cell_id))

    async def detach_cell(self, *, cell_id: str) -> None:
        self.detached.append(cell_id)

    async def leave_networks(self, *, cell_id: str, keep: Collection[str] = ()) -> list[str]:
        return []


class FakeImages:
    def __init__(self) -> None:
        self.missing: str | None = None
        self.pull: bool | None = False
        """Pull the next image asked for (None: pulled beside a pass, to be said)."""
        self.beside = False
        """A cell's pull runs beside its pass (`imagepulls`): the first pass ends."""

    async def ensure(
        self,
        *,
        namespace: str,
        image: str,
        credentials: Any,
        on_pull: Callable[[str], Awaitable[None]] | None = None,
        realm_limit: int | None = None,
        waiter: tuple[str, ...] | None = None,
    ) -> ReadyImage:
        if image == self.missing:
            raise ImageUnavailableError(image, "not found anywhere")
        pulled = self.beside and self.pull is None
        if self.beside and self.pull and waiter is not None and on_pull is not None:
            self.pull = None
            await on_pull(image)
            raise ImagePullingError(image, namespace)
        if self.pull and on_pull is not None:
            self.pull = False
            await on_pull(image)
        return ReadyImage(
            name=f"docker.io/library/{image}:latest",
            config=ImageConfig(cmd=("sh",)),
            passwd=None,
            group=None,
            pulled=pulled,
        )

    async def has_file(self, *, namespace: str, image: str, path: str) -> bool:
        return True


class FakeRegistry:
    def __init__(self) -> None:
        self.deleted: list[tuple[str, ...]] = []

    async def delete(self, kind: Kind, key: tuple[str, ...]) -> None:
        self.deleted.append(key)

    async def get(self, kind: Kind, key: tuple[str, ...]) -> AnyResource:
        raise NotFound(f"{kind} {key}")


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def event(
        self, obj: AnyResource, reason: str, message: str, *, type: Any, occurrence: Any = None
    ) -> None:
        self.events.append((str(reason), message))

    def reasons(self) -> list[str]:
        return [reason for reason, _ in self.events]


class Store:
    def __init__(self, objects: dict[tuple[Kind, tuple[str, ...]], AnyResource]) -> None:
        self.objects = objects

    async def get(self, kind: Kind, key: tuple[str, ...]) -> AnyResource:
        try:
            return self.objects[(kind, key)]
        except KeyError:
            raise NotFound(f"{kind} {key}") from None


class Context:
    """What the controller uses of a HandlerContext; keeps every status write."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.node_name = NODE
        self.logger = logging.LoggerAdapter(logging.getLogger("test"))
        self.writes: list[dict[str, Any]] = []

    async def patch_status(
        self, obj: AnyResource, /, *, observe: bool = True, **fields: Any
    ) -> Cell:
        assert isinstance(obj, Cell)
        self.writes.append(fields)
        return obj.model_copy(update={"status": obj.status.model_copy(update=fields)})


@dataclass
class Rig:
    controller: CellController
    world: Containerd
    cgroups: FakeCgroups
    networks: FakeNetworks
    images: FakeImages
    registry: FakeRegistry
    recorder: Recorder
    ctx: Context
    clock: list[datetime]

    def at(self, seconds: float) -> None:
        self.clock[0] = T0 + timedelta(seconds=seconds)

    async def reconcile(self, cell: Cell) -> Cell:
        """One pass; the cell as written (its last status write applied)."""
        await self.controller.reconcile(cell, cast(HandlerContext, self.ctx))
        return self.latest(cell)

    def latest(self, cell: Cell) -> Cell:
        status = cell.status
        for fields in self.ctx.writes:
            status = status.model_copy(update=fields)
        self.ctx.writes.clear()
        return cell.model_copy(update={"status": status})


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Rig:
    clock = [T0]
    monkeypatch.setattr(cell_module, "now", lambda: clock[0])
    world = Containerd()
    cgroups = FakeCgroups()
    networks = FakeNetworks(tmp_path / "netns")
    host = Host(
        settings=HostSettings(
            node_name=NODE, state_dir=tmp_path / "state", cni_conf_dir=tmp_path / "cni"
        ),
        containerd=cast(Any, FakeContainerd(world)),
        cgroups=cast(Any, cgroups),
        networks=cast(Any, networks),
    )
    images, registry, recorder = FakeImages(), FakeRegistry(), Recorder()
    controller = CellController(
        host=host,
        registry=cast(Any, registry),
        images=cast(Any, images),
        facts=HostFacts(hard_rlimits={}, environ={"TOKEN": "t0k3n"}),
        recorder=cast(Any, recorder),
    )
    controller.restart_waits = RestartWaits(lambda: (clock[0] - T0).total_seconds())  # no steps
    stack = Stack.model_validate(
        {
            "metadata": {"name": "st"},
            "spec": {"realmId": "r", "spaceId": "s"},
            "status": {"state": "Ready", "nodes": {NODE: {"state": "Ready"}}},
        }
    )
    objects: dict[tuple[Kind, tuple[str, ...]], AnyResource] = {
        (Kind.REALM, ("r",)): Realm.model_validate({"metadata": {"name": "r"}}),
        (Kind.SPACE, ("r", "s")): Space.model_validate(
            {"metadata": {"name": "s"}, "spec": {"realmId": "r"}}
        ),
        (Kind.STACK, ("r", "s", "st")): stack,
    }
    return Rig(
        controller, world, cgroups, networks, images, registry, recorder, Context(Store(objects)),
        clock,
    )  # fmt: skip


def make_cell(*containers: dict[str, Any], **spec: Any) -> Cell:
    return Cell.model_validate(
        {
            "metadata": {"name": "c"},
            "spec": {
                "realmId": "r",
                "spaceId": "s",
                "stackId": "st",
                "nodeName": NODE,
                "containers": list(containers) or [{"id": "app", "image": "busybox"}],
                **spec,
            },
        }
    )


def app(**fields: Any) -> dict[str, Any]:
    return {"id": "app", "image": "busybox", "command": "sh", **fields}


CID = "s_st_c_app"


# --- reconcile -------------------------------------------------------------------------------


async def test_a_new_cell_is_built_and_runs(rig: Rig) -> None:
    cell = await rig.reconcile(make_cell(app(), {"id": "side", "image": "busybox"}))
    assert str(cell.status.state) == "Ready"
    assert cell.status.ready_observed
    assert cell.status.network.ip == "10.88.0.2"
    assert [c.state for c in cell.status.containers] == [ContainerState.RUNNING] * 2
    assert cell.status.containers[0].pid == 1001
    assert cell.status.containers[0].start_time == T0
    assert set(rig.world.containers) == {CID, "s_st_c_side"}
    assert rig.recorder.reasons() == ["Created", "Started", "Created", "Started"]
    assert rig.networks.attached
    assert (
        "10.88.0.2" in (rig.controller.host.settings.state_dir / "cells/r/s/st/c/hosts").read_text()
    )
    # The pids counters are read only once a task create failed (cellpids), none here.
    assert rig.cgroups.pids_read == []
    # Again: nothing to do, nothing to write.
    rig.world.calls.clear()
    rig.recorder.events.clear()
    again = await rig.reconcile(cell)
    assert rig.world.calls == []
    assert rig.recorder.events == []
    assert again.status == cell.status


async def test_a_running_cells_lost_namespace_file_is_taken_back_from_its_task(
    rig: Rig,
) -> None:
    """The namespace file no longer holds the namespace the cell's running task is in: it is
    bound from the task's pid again (before the attachment), with a Warning Event, and the
    task is left running."""
    cell = await rig.reconcile(make_cell(app()))
    pid = cell.status.containers[0].pid
    assert pid is not None
    name = cell_network_id(("r", "s", "st", "c"), "")
    rig.networks.netns.lost.add(name)
    rig.world.calls.clear()
    rig.recorder.events.clear()
    again = await rig.reconcile(cell)
    assert rig.networks.netns.bound_from == [(name, pid)]
    assert rig.recorder.reasons() == ["NetworkNamespaceRecovered"]
    assert rig.world.calls == []
    assert str(again.status.state) == "Ready"
    # Once it holds it again, a pass binds nothing.
    rig.networks.netns.bound_from.clear()
    await rig.reconcile(again)
    assert rig.networks.netns.bound_from == []


def hold_until(
    monkeypatch: pytest.MonkeyPatch,
    held: tuple[object, str],
    until: tuple[object, str],
    *,
    after: bool = False,
) -> None:
    """``held``'s method waits until ``until``'s was called (``after``: returned): a pass
    doing them one after the other never ends."""
    opened = asyncio.Event()
    held_call = getattr(*held)
    until_call = getattr(*until)

    async def holding(*args: Any, **kwargs: Any) -> Any:
        await opened.wait()
        return await held_call(*args, **kwargs)

    async def opening(*args: Any, **kwargs: Any) -> Any:
        if not after:
            opened.set()
        result = await until_call(*args, **kwargs)
        opened.set()
        return result

    monkeypatch.setattr(*held, holding)
    monkeypatch.setattr(*until, opening)


async def test_the_root_container_is_made_while_the_cells_network_is_set_up(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new cell's network attachment and its root container's create overlap: the
    attachment here finishes only once the container exists (one after the other, the
    pass would never end)."""
    hold_until(monkeypatch, (rig.networks, "attach_cell"), (FakeContainers, "create"), after=True)
    async with asyncio.timeout(5):
        cell = await rig.reconcile(make_cell(app()))
    assert str(cell.status.state) == "Ready"
    spec = rig.world.containers[CID].spec
    netns = [n for n in spec["linux"]["namespaces"] if n["type"] == "network"]
    assert netns == [{"type": "network", "path": str(rig.networks.root / "kukeon_r_s_st_c")}]
    assert spec["linux"]["cgroupsPath"] == "/kukeon/r/s/st/c/app"


async def test_a_container_is_observed_while_it_is_built(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The image is made ready only once containerd was asked for the container: one
    after the other, the pass would never end."""
    hold_until(monkeypatch, (rig.images, "ensure"), (FakeContainers, "get"))
    async with asyncio.timeout(5):
        cell = await rig.reconcile(make_cell(app()))
    assert str(cell.status.state) == "Ready"


async def test_a_pass_under_way_when_the_node_stops_running_the_cell_starts_no_task(
    rig: Rig,
) -> None:
    """Fencing stops the copies it lists; a pass already past the framework's filter (a
    long pull) must not start one after it."""
    rig.controller.runs_here = lambda cell: False
    cell = await rig.reconcile(make_cell(app()))
    assert ("start", CID) not in rig.world.calls
    assert CID not in rig.world.tasks
    assert str(cell.status.state) != "Ready"


async def test_a_task_created_before_the_node_stopped_running_the_cell_is_deleted(
    rig: Rig,
) -> None:
    """The root's task was created while the cell was attached; fencing came before its
    start: it never starts, and no created task is left."""
    answers = iter([True, False])
    rig.controller.runs_here = lambda cell: next(answers)
    await rig.reconcile(make_cell(app()))
    assert ("create-task", CID) in rig.world.calls
    assert ("start", CID) not in rig.world.calls
    assert CID not in rig.world.tasks


async def test_the_cells_containers_are_listed_while_it_is_set_up(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Those dropped from the spec go at the pass's end, from a listing made at its start
    (not a containerd round trip more between the start and the Ready report)."""
    listed = FakeContainers.list

    async def noted_list(self: FakeContainers, *, labels: dict[str, str]) -> list[FakeContainer]:
        self.world.calls.append(("list", labels["kukeon.io/cell"]))
        return await listed(self, labels=labels)

    monkeypatch.setattr(FakeContainers, "list", noted_list)
    await rig.reconcile(make_cell(app()))
    calls = rig.world.calls
    assert calls.count(("list", "c")) == 1
    assert calls.index(("list", "c")) < calls.index(("start", CID))


async def test_a_cells_cgroup_and_network_namespace_are_made_at_once(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cgroup is made only once the namespace is being made: one after the other, the
    pass would never end."""
    hold_until(monkeypatch, (rig.cgroups, "ensure"), (rig.networks, "make_cell_netns"))
    async with asyncio.timeout(5):
        cell = await rig.reconcile(make_cell(app()))
    assert str(cell.status.state) == "Ready"


async def test_a_cell_set_up_elsewhere_than_expected_is_made_again_from_the_real_paths(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    make = rig.networks.make_cell_netns

    async def elsewhere(**kwargs: Any) -> Path:
        return (await make(**kwargs)).with_name("other")

    monkeypatch.setattr(rig.networks, "make_cell_netns", elsewhere)
    cell = await rig.reconcile(make_cell(app()))
    assert str(cell.status.state) == "Ready"
    assert "not the expected" in caplog.text
    spec = rig.world.containers[CID].spec
    netns = [n for n in spec["linux"]["namespaces"] if n["type"] == "network"]
    assert netns == [{"type": "network", "path": str(rig.networks.root / "other")}]
    assert [call for call in rig.world.calls if call[0] in ("create", "delete")] == [
        ("create", CID),
        ("delete", CID),
        ("create", CID),
    ]


def note_attachments(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each attachment's start and end among containerd's calls."""
    attach = rig.networks.attach_cell

    async def noted(**kwargs: Any) -> FakeAttachment:
        rig.world.calls.append(("attaching", kwargs["cell_id"]))
        attached = await attach(**kwargs)
        rig.world.calls.append(("attached", kwargs["cell_id"]))
        return attached

    monkeypatch.setattr(rig.networks, "attach_cell", noted)


async def test_the_root_task_is_created_while_the_cell_is_attached_and_started_after(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The attachment ends only once the root container's task was created (one after
    the other, the pass would never end); the task starts once the cell is attached, its
    hosts file naming its address; the files its bind mounts need are there before."""
    files = rig.controller.host.settings.state_dir / "cells/r/s/st/c"
    create = FakeTasks.create
    there: list[bool] = []

    async def creating(self: FakeTasks, cid: str, **kwargs: Any) -> int:
        there.append(all((files / name).is_file() for name in ("hosts", "hostname")))
        return await create(self, cid, **kwargs)

    monkeypatch.setattr(FakeTasks, "create", creating)
    note_attachments(rig, monkeypatch)
    hold_until(monkeypatch, (rig.networks, "attach_cell"), (FakeTasks, "create"), after=True)
    async with asyncio.timeout(5):
        cell = await rig.reconcile(make_cell(app()))
    assert str(cell.status.state) == "Ready"
    assert there == [True]
    calls = rig.world.calls
    assert calls.index(("create-task", CID)) < calls.index(("attached", "kukeon_r_s_st_c"))
    assert calls.index(("attached", "kukeon_r_s_st_c")) < calls.index(("start", CID))
    assert "10.88.0.2" in (files / "hosts").read_text()


async def test_an_attachment_failing_after_the_task_was_created_leaves_no_task(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing(**kwargs: Any) -> FakeAttachment:
        raise NetworkError("no address left in 10.88.0.0/24")

    monkeypatch.setattr(rig.networks, "attach_cell", failing)
    hold_until(monkeypatch, (rig.networks, "attach_cell"), (FakeTasks, "create"), after=True)
    cell = make_cell(app())
    with pytest.raises(TemporaryError) as failed:
        await rig.reconcile(cell)
    assert failed.value.reason == "NetworkFailed"
    assert ("create-task", CID) in rig.world.calls
    assert ("delete-task", CID) in rig.world.calls
    assert ("start", CID) not in rig.world.calls
    assert rig.world.tasks == {}
    cell = rig.latest(cell)
    assert (str(cell.status.state), cell.status.reason) == ("Failed", "NetworkFailed")
    assert "no address left" in (cell.status.message or "")
    assert rig.recorder.reasons() == ["Created", "Failed"]


async def test_a_cell_whose_network_failed_is_attached_before_its_task_is_created(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each retry of a failing attachment would make a task and delete it again."""
    note_attachments(rig, monkeypatch)
    cell = make_cell(app())
    cell = cell.model_copy(
        update={"status": CellStatus(state=CellState.FAILED, reason="NetworkFailed")}
    )
    cell = await rig.reconcile(cell)
    assert str(cell.status.state) == "Ready"
    calls = rig.world.calls
    assert calls.index(("attached", "kukeon_r_s_st_c")) < calls.index(("create-task", CID))


async def test_a_task_left_half_created_by_a_crash_is_deleted_and_created_again(
    rig: Rig,
) -> None:
    # kukeond killed during Tasks.Create: containerd shows no task, yet refuses a new one.
    rig.world.hidden_tasks.add(CID)
    cell = await rig.reconcile(make_cell(app()))
    assert str(cell.status.state) == "Ready"
    assert ("delete-task", CID) in rig.world.calls
    assert rig.world.calls.index(("delete-task", CID)) < rig.world.calls.index(("start", CID))


async def test_host_network_cells_get_no_attachment(rig: Rig) -> None:
    cell = await rig.reconcile(make_cell(app(hostNetwork=True)))
    assert rig.networks.attached == []
    assert cell.status.network.ip is None


async def test_an_exit_waits_for_the_backoff_then_restarts(rig: Rig) -> None:
    cell = await rig.reconcile(make_cell(app(restartPolicy="always", restartBackoffSeconds=5)))
    rig.world.exit(CID, 1, at=T0 + timedelta(seconds=10), status=TaskStatus.STOPPED)
    rig.at(12)
    with pytest.raises(Requeue) as waiting:  # a planned wait, not a failure
        await rig.controller.reconcile(cell, cast(HandlerContext, rig.ctx))
    assert waiting.value.delay == pytest.approx(3)
    cell = rig.latest(cell)
    # The controller writes the wait itself: the framework records nothing of a Requeue.
    assert (cell.status.reason, waiting.value.reason) == ("CrashLoopBackOff",) * 2
    assert cell.status.message == str(waiting.value)
    [status] = cell.status.containers
    assert (status.state, status.reason) == (ContainerState.WAITING, "CrashLoopBackOff")
    assert status.message == "back-off 5s restarting failed container=app, due 2026-01-01T12:00:15Z"
    assert status.restart_time == T0 + timedelta(seconds=15)  # when the restart is due
    assert status.last_state is not None
    assert (status.last_state.exit_code, status.last_state.reason) == (1, "Error")
    assert str(cell.status.state) == "Degraded"
    assert waiting.value.reason == "CrashLoopBackOff"  # the cell's (the framework writes it)
    assert rig.recorder.reasons()[-2:] == ["Exited", "BackOff"]
    rig.at(15)
    cell = await rig.reconcile(cell)
    [status] = cell.status.containers
    assert status.state == ContainerState.RUNNING
    assert status.restart_count == 1
    assert (status.start_time, status.restart_time) == (T0 + timedelta(seconds=15), None)
    assert status.last_state is not None
    assert status.last_state.exit_code == 1
    assert rig.recorder.reasons()[-1] == "Restarted"
    assert str(cell.status.state) == "Ready"
    assert cell.status.reason is None


async def test_an_oom_kill_is_read_from_the_cgroup(rig: Rig) -> None:
    cell = await rig.reconcile(make_cell(app()))
    rig.world.exit(CID, 137, at=T0, status=TaskStatus.STOPPED)
    rig.cgroups.oom_kills = 1
    cell = await rig.reconcile(cell)
    [status] = cell.status.containers
    assert status.reason == "OOMKilled"
    assert status.exit_signal == "SIGKILL"
    assert "OOMKilled" in rig.recorder.reasons()
    assert str(cell.status.state) == "Error"


async def test_a_lost_task_keeps_its_first_exit_time_across_failed_passes(rig: Rig) -> None:
    """Item 2: the shim died (no exit time). The exit time is written as soon as it is
    seen, so a pass that fails later (another container's image) does not lose it, and
    the restart happens once the backoff after that first sight has passed."""
    cell = await rig.reconcile(
        make_cell(
            app(restartPolicy="always", restartBackoffSeconds=5),
            {"id": "side", "image": "other"},
        )
    )
    rig.world.exit(CID, 0, at=None, status=TaskStatus.UNKNOWN)
    rig.images.missing = "other"
    for seconds in (1, 3, 5):
        rig.at(seconds)
        with pytest.raises(TemporaryError):
            await rig.controller.reconcile(cell, cast(HandlerContext, rig.ctx))
        cell = rig.latest(cell)
        last = cell.status.containers[0].last_state
        assert last is not None
        assert last.finished_at == T0 + timedelta(seconds=1)
        assert str(cell.status.reason) == "ImageUnavailable"
    rig.at(6)
    with pytest.raises(TemporaryError):  # the side container still fails, after the restart
        await rig.controller.reconcile(cell, cast(HandlerContext, rig.ctx))
    cell = rig.latest(cell)
    first = cell.status.containers[0]
    assert first.restart_count == 1
    assert first.state == ContainerState.RUNNING
    assert first.last_state is not None
    assert first.last_state.finished_at == T0 + timedelta(seconds=1)
    rig.images.missing = None
    rig.at(7)
    cell = await rig.reconcile(cell)
    assert cell.status.containers[0].restart_count == 1
    assert str(cell.status.state) == "Ready"


async def test_an_update_to_an_image_not_there_keeps_the_old_container_and_says_so(
    rig: Rig,
) -> None:
    """A typo in an in-place image update: the old container runs on and serves, so the
    cell is Degraded (ImagePullBackOff), not Failed beside READY 2/2; the container says
    which image it still runs and why; the Event says the same."""
    cell = await rig.reconcile(make_cell(app(), {"id": "side", "image": "busybox"}))
    pid = cell.status.containers[1].pid
    rig.images.missing = "busybx"
    containers = [
        cell.spec.containers[0],
        cell.spec.containers[1].model_copy(update={"image": "busybx"}),
    ]
    cell = cell.model_copy(update={"spec": cell.spec.model_copy(update={"containers": containers})})
    for seconds in (1, 3):
        rig.at(seconds)
        with pytest.raises(TemporaryError) as failed:
            await rig.controller.reconcile(cell, cast(HandlerContext, rig.ctx))
        assert failed.value.reason == "ImagePullBackOff"
        cell = rig.latest(cell)
        assert str(cell.status.state) == "Degraded"
        assert cell.status.reason == "ImagePullBackOff"
        assert "container side keeps running image 'busybox'" in (cell.status.message or "")
        assert "image 'busybx': not found anywhere" in (cell.status.message or "")
        side = cell.status.containers[1]
        assert (side.state, side.ready, side.pid, side.image) == (
            ContainerState.RUNNING,
            True,
            pid,
            "busybox",
        )
        assert side.reason == "ImagePullBackOff"
        assert "keeps running image 'busybox'" in (side.message or "")
        assert [c.ready for c in cell.status.containers] == [True, True]  # READY 2/2
    assert rig.recorder.events[-1] == ("Failed", f"ImagePullBackOff: {cell.status.message}")
    rig.images.missing = None
    rig.at(5)
    cell = await rig.reconcile(cell)
    side = cell.status.containers[1]
    assert str(cell.status.state) == "Ready"
    assert (cell.status.reason, side.reason, side.message) == (None, None, None)
    assert side.image == "busybx"
    assert side.pid != pid


async def test_a_new_container_whose_image_is_not_there_fails_the_cell(rig: Rig) -> None:
    cell = await rig.reconcile(make_cell(app()))
    rig.images.missing = "busybx"
    cell = cell.model_copy(
        update={
            "spec": cell.spec.model_copy(
                update={
                    "containers": [
                        *cell.spec.containers,
                        cell.spec.containers[0].model_copy(
                            update={"id": "side", "image": "busybx"}
                        ),
                    ]
                }
            )
        }
    )
    with pytest.raises(TemporaryError) as failed:
        await rig.controller.reconcile(cell, cast(HandlerContext, rig.ctx))
    assert failed.value.reason == "ImageUnavailable"
    assert str(rig.latest(cell).status.state) == "Failed"


async def test_a_container_whose_image_is_not_there_holds_back_no_sibling(rig: Rig) -> None:
    """The containers after one that fails are converged all the same (they were not
    even started until its image came): the cell is Failed, naming the one that failed."""
    rig.images.missing = "busybx"
    cell = make_cell(app(), {"id": "side", "image": "busybx"}, {"id": "late", "image": "busybox"})
    with pytest.raises(TemporaryError) as failed:
        await rig.controller.reconcile(cell, cast(HandlerContext, rig.ctx))
    assert failed.value.reason == "ImageUnavailable"
    cell = rig.latest(cell)
    assert str(cell.status.state) == "Failed"
    states = {c.id: (c.state, c.reason) for c in cell.status.containers}
    assert states == {
        "app": (ContainerState.RUNNING, None),
        "side": (ContainerState.FAILED, "ImageUnavailable"),
        "late": (ContainerState.RUNNING, None),
    }
    assert rig.recorder.events[-1] == ("Failed", f"ImageUnavailable: {cell.status.message}")
    rig.images.missing = None
    rig.at(1)
    cell = await rig.reconcile(cell)
    assert str(cell.status.state) == "Ready"
    assert [c.state for c in cell.status.containers] == [ContainerState.RUNNING] * 3


async def test_a_task_gone_with_its_shim_is_task_lost(rig: Rig) -> None:
    cell = await rig.reconcile(make_cell(app(restartPolicy="on-failure", restartBackoffSeconds=2)))
    del rig.world.tasks[CID]
    rig.at(1)
    with pytest.raises(Requeue):
        await rig.controller.reconcile(cell, cast(HandlerContext, rig.ctx))
    cell = rig.latest(cell)
    [status] = cell.status.containers
    assert status.last_state is not None
    assert (status.last_state.reason, status.last_state.exit_code) == ("TaskLost", 137)
    rig.at(3)
    cell = await rig.reconcile(cell)
    assert cell.status.containers[0].restart_count == 1


async def test_a_changed_spec_recreates_and_a_dropped_container_goes(rig: Rig) -> None:
    cell = await rig.reconcile(make_cell(app(), {"id": "side", "image": "busybox"}))
    changed = make_cell(app(env=["A=1"])).model_copy(update={"status": cell.status})
    rig.world.calls.clear()
    await rig.reconcile(changed)
    assert ("kill", CID) in rig.world.calls  # its old task stopped as a stop's (stopgraces)
    assert ("kill", "s_st_c_side") in rig.world.calls  # dropped: stopped as a stop's too
    assert ("stop", "s_st_c_side") not in rig.world.calls
    assert ("delete", "s_st_c_side") in rig.world.calls
    assert set(rig.world.containers) == {CID}


async def test_a_restart_request_recreates_the_containers(rig: Rig) -> None:
    cell = await rig.reconcile(make_cell(app()))
    asked = cell.model_copy(
        update={
            "metadata": cell.metadata.model_copy(
                update={"annotations": {"kukeon.io/restartedAt": "now"}}
            )
        }
    )
    await rig.reconcile(asked)
    assert rig.world.containers[CID].labels["kukeon.io/restarted-at"] == "now"
    assert rig.recorder.reasons()[-2:] == ["Created", "Started"]


async def test_a_created_task_is_started_afresh(rig: Rig) -> None:
    cell = await rig.reconcile(make_cell(app()))
    rig.world.tasks[CID] = TaskInfo(CID, CID, 0, TaskStatus.CREATED, 0, None, "", "", False)
    cell = await rig.reconcile(cell)
    assert ("delete-task", CID) in rig.world.calls
    assert cell.status.containers[0].state == ContainerState.RUNNING


async def test_a_concurrent_create_is_left_to_the_next_pass(rig: Rig) -> None:
    rig.world.create_exists = True
    await rig.reconcile(make_cell(app()))
    assert "Created" not in rig.recorder.reasons()


async def test_a_pull_is_announced_then_cleared(rig: Rig) -> None:
    rig.images.pull = True
    cell = await rig.reconcile(make_cell(app()))
    assert cell.status.reason is None
    assert rig.recorder.reasons()[:2] == ["Pulling", "Pulled"]


async def test_a_pull_beside_the_pass_ends_it_pulling_and_the_next_pass_says_pulled(
    rig: Rig,
) -> None:
    """The pull runs beside (`imagepulls`): the pass says Pending Pulling and ends (a
    Requeue, not a failure); the pass its end wakes runs the cell and says Pulled."""
    rig.images.pull = rig.images.beside = True
    cell = make_cell(app())
    with pytest.raises(ImagePullingError):
        await rig.controller.reconcile(cell, cast(HandlerContext, rig.ctx))
    pulling = rig.latest(cell)
    assert (str(pulling.status.state), pulling.status.reason) == ("Pending", "Pulling")
    assert rig.recorder.reasons() == ["Pulling"]
    ready = await rig.reconcile(pulling)
    assert str(ready.status.state) == "Ready"
    assert ready.status.reason is None
    assert rig.recorder.reasons()[:2] == ["Pulling", "Pulled"]


async def test_a_pull_says_the_realms_credential_without_a_server_address_is_not_sent(
    rig: Rig,
) -> None:
    """A realm stored with a credential without serverAddress (before it was required):
    each pull warns that it is sent to no registry; a cell whose image is there says
    nothing (no pull)."""
    rig.ctx.store.objects[(Kind.REALM, ("r",))] = Realm.model_validate(
        {
            "metadata": {"name": "r"},
            "spec": {"registryCredentials": [{"username": "robot", "password": "p"}]},
        }
    )
    cell = await rig.reconcile(make_cell(app()))
    assert "RegistryCredentialIgnored" not in rig.recorder.reasons()
    rig.images.pull = True
    await rig.reconcile(cell)
    assert rig.recorder.reasons()[-3:-1] == ["Pulling", "RegistryCredentialIgnored"]
    [warning] = [m for reason, m in rig.recorder.events if reason == "RegistryCredentialIgnored"]
    assert warning.startswith("realm r: registryCredentials[0] (user 'robot') has no serverAddress")


async def test_a_pull_retried_after_a_failure_keeps_the_failure_said(rig: Rig) -> None:
    failed = make_cell(app()).model_copy(
        update={
            "status": CellStatus(state=CellState.FAILED, reason="ImageUnavailable", message="x")
        }
    )
    rig.images.pull = True
    await rig.controller.reconcile(failed, cast(HandlerContext, rig.ctx))
    # Failed with reason "Pulling" said neither; the Event tells of the pull.
    assert all(write.get("reason") != "Pulling" for write in rig.ctx.writes)
    assert rig.recorder.reasons()[:2] == ["Pulling", "Pulled"]
    assert str(rig.latest(failed).status.state) == "Ready"


async def test_stopping_a_cell(rig: Rig) -> None:
    cell = await rig.reconcile(make_cell(app()))
    stopped = make_cell(app(), desiredState="Stopped").model_copy(update={"status": cell.status})
    rig.at(4)
    cell = await rig.reconcile(stopped)
    assert str(cell.status.state) == "Stopped"
    assert cell.status.reason == "StoppedByUser"
    [status] = cell.status.containers
    assert status.state == ContainerState.STOPPED
    assert status.finish_time == T0 + timedelta(seconds=4)
    assert ("kill", CID) in rig.world.calls
    assert CID in rig.world.containers  # kept
    assert rig.recorder.reasons()[-2:] == ["Killing", "Stopped"]


async def test_auto_delete_after_every_workload_exited(rig: Rig) -> None:
    cell = await rig.reconcile(make_cell(app(), autoDelete=True))
    rig.world.exit(CID, 0, at=T0, status=TaskStatus.STOPPED)
    cell = await rig.reconcile(cell)
    assert str(cell.status.state) == "Exited"
    assert rig.registry.deleted == [("r", "s", "st", "c")]


async def test_a_missing_image_fails_the_cell_for_now(rig: Rig) -> None:
    rig.images.missing = "busybox"
    with pytest.raises(TemporaryError) as failed:
        await rig.reconcile(make_cell(app()))
    assert failed.value.reason == "ImageUnavailable"
    assert rig.recorder.reasons() == ["Failed"]


async def test_a_cell_waiting_for_its_image_is_requeued_when_it_arrives(rig: Rig) -> None:
    woken: list[tuple[str, ...]] = []

    def trigger(kind: Kind, key: tuple[str, ...]) -> bool:
        woken.append(key)
        return True

    rig.controller.image_waits.trigger = trigger
    rig.images.missing = "busybox"
    with pytest.raises(TemporaryError):
        await rig.reconcile(make_cell(app()))
    assert rig.controller.image_waits.arrived(["docker.io/library/alpine:latest"]) == 0
    assert rig.controller.image_waits.arrived(["docker.io/library/busybox:latest"]) == 1
    assert woken == [("r", "s", "st", "c")]


async def test_a_command_runc_cannot_run_fails_for_good(rig: Rig) -> None:
    rig.world.refuse_start = "CommandNotFound"
    with pytest.raises(PermanentError) as failed:
        await rig.reconcile(make_cell(app()))
    assert failed.value.reason == "CommandNotFound"
    assert "not found in the image" in str(failed.value)
    assert "args" not in str(failed.value)


async def test_the_program_not_found_is_the_one_runc_names(rig: Rig) -> None:
    # No command, an image without an entrypoint: args[0] is the program runc looked for.
    rig.world.refuse_start = "CommandNotFound"
    rig.world.refusal_detail = 'exec: "nosuch": executable file not found in $PATH: unknown'
    with pytest.raises(PermanentError) as failed:
        await rig.reconcile(make_cell(app(command=None, args=["nosuch"])))
    assert "command 'nosuch' not found in the image" in str(failed.value)


async def test_a_command_line_not_found_says_how_to_write_it(rig: Rig) -> None:
    rig.world.refuse_start = "CommandNotFound"
    with pytest.raises(PermanentError) as failed:
        await rig.reconcile(make_cell(app(command="sh -c 'exec httpd -f'")))
    assert "command is the program alone, spaces and all" in str(failed.value)
    assert "command: sh with args: [-c, 'LINE']" in str(failed.value)


def test_classify_refuses_other_errors() -> None:
    with pytest.raises(TypeError):
        classify_build_failure(RuntimeError("x"))


async def test_env_secrets_and_privileged_devices(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kukeon.controllers import cellbuild

    monkeypatch.setattr(cellbuild, "list_host_devices", lambda: [])
    secret = {"name": "TOKEN", "fromEnv": "TOKEN"}
    await rig.reconcile(make_cell(app(secrets=[secret], privileged=True)))
    env = rig.world.containers[CID].spec["process"]["env"]
    assert "TOKEN=t0k3n" in env


async def test_an_attachable_container_gets_a_terminal(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kukeon.controllers import cellexec

    made: list[str] = []

    async def attachable(tasks: FakeTasks, cid: str, **_: Any) -> int:
        made.append(cid)
        return await tasks.create(cid)

    monkeypatch.setattr(cellexec, "create_attachable_task", attachable)
    cell = await rig.reconcile(
        make_cell(app(attachable=True, tty={"onInit": [{"script": "echo hi"}]}))
    )
    assert made == [CID]
    assert cell.status.containers[0].state == ContainerState.RUNNING


# --- finalize, removal, credentials --------------------------------------------------------


async def test_finalize_removes_everything(rig: Rig) -> None:
    cell = await rig.reconcile(make_cell(app()))
    await rig.controller.finalize(cell, cast(HandlerContext, rig.ctx))
    assert rig.world.containers == {}
    assert rig.world.tasks == {}
    assert rig.networks.detached
    assert rig.cgroups.removed == [("r", "s", "st", "c")]
    assert rig.recorder.reasons()[-1] == "Deleted"


async def test_remove_container_of_the_orphan_collector(rig: Rig) -> None:
    await rig.reconcile(make_cell(app()))
    await rig.controller.remove_container(NAMESPACE, CID)
    assert CID not in rig.world.containers
    await rig.controller.remove_container(NAMESPACE, "absent")


async def test_registry_credentials_with_inline_passwords() -> None:
    realm = Realm.model_validate(
        {
            "metadata": {"name": "r"},
            "spec": {
                "registryCredentials": [
                    {"username": "u", "password": "p", "serverAddress": "reg.example"}
                ]
            },
        }
    )
    [credential] = await registry_credentials(cast(Any, FakeRegistry()), realm)
    assert (credential.server_address, credential.username, credential.password) == (
        "reg.example",
        "u",
        "p",
    )


async def test_a_credential_without_a_server_address_is_not_given_to_pulls() -> None:
    """Stored before serverAddress was required, it went to any registry an image named:
    left out (its Secret not even read: the fake registry holds none)."""
    realm = Realm.model_validate(
        {
            "metadata": {"name": "r"},
            "spec": {
                "registryCredentials": [
                    {"username": "any", "passwordSecretRef": {"name": "s", "key": "k"}},
                    {"username": "u", "password": "p", "serverAddress": "reg.example"},
                ]
            },
        }
    )
    credentials = await registry_credentials(cast(Any, FakeRegistry()), realm)
    assert [(c.server_address, c.username) for c in credentials] == [("reg.example", "u")]
