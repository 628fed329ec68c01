"""Ephemeral-storage limits: the eviction decision (`StorageLimits` over a fake containerd:
what is measured, when a container is stopped, with what reason and Event) and what the
cell's plan makes of an eviction (reported `Evicted`, never restarted, the reason kept)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import grpc
import pytest

from kukeon.api import Cell, ContainerSpec, ContainerState, EventReason, EventType, Kind
from kukeon.controllers.cellfiles import CellFiles
from kukeon.controllers.cellplan import (
    ContainerInputs,
    ContainerPlan,
    ObservedTask,
    ProbeKill,
    StartTask,
    plan_container,
)
from kukeon.controllers.ephemeralstorage import (
    StorageLimits,
    eviction_message,
    inode_eviction_message,
    inode_limit,
    over_bound,
    over_limit,
    verdict,
)
from kukeon.controllers.probing import ProbeManager, RunningContainer
from kukeon.framework import EventRecorder
from kukeon.runtime.containerd import ContainerdClient
from kukeon.runtime.containerd.errors import ContainerdCallError, SnapshotNotFoundError
from kukeon.runtime.containerd.snapshots import Mount, SnapshotUsage
from kukeon.runtime.dirusage import MAX_DEPTH, Usage

from .test_cellplan import NAME, T0, kept, ran, stopped_task
from .test_probing import FakeTasks

KEY = ("r", "s", "st", "c")
MIB = 1024 * 1024


@dataclass
class FakeSnapshots:
    sizes: dict[str, int] = field(default_factory=dict)
    inodes: dict[str, int] = field(default_factory=dict)
    """Inodes of a snapshot (1, its root, unless given)."""
    asked: list[str] = field(default_factory=list)
    unmeasured: dict[str, Path] = field(default_factory=dict)
    """Snapshots containerd fails to measure (its walk: 'file name too long'), and their
    upper directories."""

    async def usage(self, key: str) -> SnapshotUsage:
        self.asked.append(key)
        if key in self.unmeasured:
            raise ContainerdCallError(
                operation="usage", code=grpc.StatusCode.UNKNOWN, detail="file name too long"
            )
        if key not in self.sizes:
            raise SnapshotNotFoundError(key, namespace="ns")
        return SnapshotUsage(size_bytes=self.sizes[key], inodes=self.inodes.get(key, 1))

    async def mounts(self, key: str) -> list[Mount]:
        upper = self.unmeasured[key]
        options = (f"lowerdir={upper.parent}", f"upperdir={upper}", f"workdir={upper.parent}")
        return [Mount(type="overlay", source="overlay", options=options)]


@dataclass
class FakeContainers:
    async def get(self, cid: str) -> Any:
        return type("Container", (), {"labels": {}, "snapshot_key": f"snap-{cid}"})()


@dataclass
class FakeContainerd:
    tasks_: FakeTasks = field(default_factory=FakeTasks)
    snapshots_: FakeSnapshots = field(default_factory=FakeSnapshots)

    def tasks(self, namespace: str) -> FakeTasks:
        return self.tasks_

    def containers(self, namespace: str) -> FakeContainers:
        return FakeContainers()

    def snapshots(self, namespace: str) -> FakeSnapshots:
        return self.snapshots_


@dataclass
class FakeRecorder:
    said: list[tuple[str, str, str]] = field(default_factory=list)

    def event(self, obj: Any, reason: str, message: str, *, type: str) -> None:
        self.said.append((str(reason), message, str(type)))


def the_cell(grace: int | None = None) -> Cell:
    spec: dict[str, Any] = {
        "realmId": "r",
        "spaceId": "s",
        "stackId": "st",
        "containers": [{"id": "app", "image": "busybox"}],
    }
    if grace is not None:
        spec["terminationGracePeriodSeconds"] = grace
    return Cell.model_validate({"metadata": {"name": "c"}, "spec": spec})


def limited(limit: int | None, cid: str = "app", **more: Any) -> ContainerSpec:
    resources = {} if limit is None else {"ephemeralStorageLimitBytes": limit}
    return ContainerSpec.model_validate(
        {"id": cid, "image": "busybox", "resources": resources, **more}
    )


def watcher(
    state_dir: Path | None = None,
) -> tuple[StorageLimits, FakeContainerd, FakeRecorder, list[tuple[Kind, Any]]]:
    fake, recorder = FakeContainerd(), FakeRecorder()
    triggered: list[tuple[Kind, Any]] = []

    def trigger(kind: Kind, key: tuple[str, ...]) -> bool:
        triggered.append((kind, key))
        return True

    limits = StorageLimits(
        containerd=lambda: cast(ContainerdClient, fake),
        trigger=trigger,
        stop_grace_seconds=7.0,
        recorder=cast(EventRecorder, recorder),
        state_dir=state_dir,
    )
    return limits, fake, recorder, triggered


def test_at_the_limit_is_within_it() -> None:
    assert not over_limit(4 * MIB, 4 * MIB)
    assert over_limit(4 * MIB + 1, 4 * MIB)


async def test_only_containers_with_a_limit_are_measured_and_under_it_nothing_happens() -> None:
    limits, fake, recorder, triggered = watcher()
    fake.snapshots_.sizes = {"snap-c_app": 3 * MIB, "snap-c_free": 900 * MIB}
    running = [
        RunningContainer(spec=limited(4 * MIB), pid=100, containerd_id="c_app"),
        RunningContainer(spec=limited(None, "free"), pid=101, containerd_id="c_free"),
    ]
    limits.sync(the_cell(), KEY, namespace="ns", running=running)
    assert await limits.measure() == []
    assert fake.snapshots_.asked == ["snap-c_app"]
    assert limits.kill(KEY, "app") is None
    assert (fake.tasks_.stopped, recorder.said, triggered) == ([], [], [])


async def test_over_its_limit_a_container_is_evicted_once() -> None:
    limits, fake, recorder, triggered = watcher()
    fake.snapshots_.sizes = {"snap-c_app": 5 * MIB}
    running = [RunningContainer(spec=limited(4 * MIB), pid=100, containerd_id="c_app")]
    limits.sync(the_cell(grace=3), KEY, namespace="ns", running=running)
    assert await limits.measure() == ["c_app"]
    await limits.settle()
    message = eviction_message("app", 5 * MIB, 4 * MIB)
    assert limits.kill(KEY, "app") == ProbeKill(100, "Evicted", message)
    assert "app" in message
    assert str(5 * MIB) in message
    assert str(4 * MIB) in message
    assert fake.tasks_.stopped == [("c_app", 3.0)]  # the cell's grace, then SIGKILL
    assert recorder.said == [(EventReason.EVICTED, message, EventType.WARNING)]
    assert triggered == [(Kind.CELL, KEY)]
    # Stopped: measured no more, even while the pass has not seen the exit yet.
    limits.sync(the_cell(grace=3), KEY, namespace="ns", running=running)
    assert await limits.measure() == []
    assert len(recorder.said) == 1
    # A new task of the container (`kukectl restart`): its own measurements, the old
    # eviction forgotten.
    fresh = [RunningContainer(spec=limited(4 * MIB), pid=200, containerd_id="c_app")]
    fake.snapshots_.sizes = {"snap-c_app": 0}
    limits.sync(the_cell(grace=3), KEY, namespace="ns", running=fresh)
    assert limits.kill(KEY, "app") is None
    assert await limits.measure() == []


async def only_app_evicted(limits: StorageLimits, running: list[RunningContainer]) -> str:
    """One measuring pass over ``running`` evicts container ``app`` alone: its message."""
    limits.sync(the_cell(), KEY, namespace="ns", running=running)
    assert await limits.measure() == ["c_app"]
    kill = limits.kill(KEY, "app")
    assert kill is not None
    return kill.message


WRAPPED: dict[str, Any] = {"attachable": True, "tty": {"onInit": [{"script": "true"}]}}


async def test_what_a_container_writes_into_its_tty_state_directory_counts(
    tmp_path: Path,
) -> None:
    """/run/kukeon/tty is a directory of the host's (kukeond's state): uncounted, a
    container held to 4 MiB wrote as much as it liked there."""
    limits, fake, recorder, _ = watcher(state_dir=tmp_path)
    fake.snapshots_.sizes = {"snap-c_app": MIB, "snap-c_plain": MIB}
    for name in ("app", "plain"):
        state = CellFiles(tmp_path, KEY).tty_state(name)
        state.mkdir(parents=True)
        (state / "fill").write_bytes(b"x" * (5 * MIB))
    running = [
        RunningContainer(spec=limited(4 * MIB, **WRAPPED), pid=100, containerd_id="c_app"),
        # No wrapper, no state directory of its own: that one is not its.
        RunningContainer(spec=limited(4 * MIB, "plain"), pid=100, containerd_id="c_plain"),
    ]
    message = await only_app_evicted(limits, running)
    assert "(its writable layer and its tty state directory /run/kukeon/tty)" in message
    used = int(message.split(" used ")[1].split(" bytes")[0])
    assert used > 5 * MIB
    assert [reason for reason, _, _ in recorder.said] == ["Evicted"]


def test_a_limit_allows_an_inode_per_4_kib_and_bytes_are_said_first() -> None:
    assert inode_limit(MIB) == 256
    assert inode_limit(4 * MIB + 4095) == 1024
    assert not over_bound(Usage(MIB, 256), MIB)
    assert over_bound(Usage(0, 257), MIB)
    assert over_bound(Usage(MIB + 1, 1), MIB)
    assert verdict("app", Usage(MIB, 256), MIB) is None
    assert verdict("app", Usage(2 * MIB, 300), MIB) == eviction_message("app", 2 * MIB, MIB)
    message = verdict("app", Usage(0, 300), MIB)
    assert message == inode_eviction_message("app", 300, MIB)
    assert "container app held 300 inodes (files, directories, links) in its writable layer" in (
        message or ""
    )
    assert f"over the 256 its ephemeral-storage limit of {MIB} bytes allows" in (message or "")


async def test_empty_files_past_the_inodes_a_limit_allows_are_evicted() -> None:
    """An empty file takes no byte of the limit: a container held to 1 MiB made millions
    and exhausted the node's inodes."""
    limits, fake, recorder, _ = watcher()
    fake.snapshots_.sizes = {"snap-c_app": 0, "snap-c_full": 0}
    fake.snapshots_.inodes = {"snap-c_app": 5001, "snap-c_full": 256}
    running = [
        RunningContainer(spec=limited(MIB), pid=100, containerd_id="c_app"),
        RunningContainer(spec=limited(MIB, "full"), pid=101, containerd_id="c_full"),
    ]
    message = await only_app_evicted(limits, running)
    assert message == inode_eviction_message("app", 5001, MIB)
    assert recorder.said == [(EventReason.EVICTED, message, EventType.WARNING)]


async def test_empty_files_in_the_tty_state_directory_count_with_the_layers(
    tmp_path: Path,
) -> None:
    limits, fake, _, _ = watcher(state_dir=tmp_path)
    fake.snapshots_.sizes = {"snap-c_app": 0}
    fake.snapshots_.inodes = {"snap-c_app": 200}  # under 256 alone
    state = CellFiles(tmp_path, KEY).tty_state("app")
    state.mkdir(parents=True)
    for index in range(100):
        (state / f"f{index}").touch()
    running = [RunningContainer(spec=limited(MIB, **WRAPPED), pid=100, containerd_id="c_app")]
    message = await only_app_evicted(limits, running)
    assert "in its writable layer and its tty state directory /run/kukeon/tty" in message
    assert int(message.split(" held ")[1].split(" inodes")[0]) > 256


async def test_a_layer_containerd_cannot_measure_is_walked_by_kukeond(tmp_path: Path) -> None:
    """containerd's walk fails on a layer nested past PATH_MAX, every time: it measured
    nothing, so such a container was never evicted."""
    limits, fake, _, _ = watcher()
    upper = tmp_path / "upper"
    upper.mkdir()
    (upper / "fill").write_bytes(b"x" * (5 * MIB))
    fake.snapshots_.unmeasured = {"snap-c_app": upper, "snap-c_small": tmp_path / "none"}
    running = [
        RunningContainer(spec=limited(4 * MIB), pid=100, containerd_id="c_app"),
        RunningContainer(spec=limited(4 * MIB, "small"), pid=100, containerd_id="c_small"),
    ]
    assert "over its limit of 4194304 bytes" in await only_app_evicted(limits, running)


async def test_kukeonds_walk_of_a_layer_counts_its_inodes(tmp_path: Path) -> None:
    limits, fake, _, _ = watcher()
    upper = tmp_path / "upper"
    upper.mkdir()
    for index in range(300):
        (upper / f"f{index}").touch()
    fake.snapshots_.unmeasured = {"snap-c_app": upper}
    running = [RunningContainer(spec=limited(MIB), pid=100, containerd_id="c_app")]
    message = await only_app_evicted(limits, running)
    assert f"over the 256 its ephemeral-storage limit of {MIB} bytes allows" in message


async def test_a_tree_too_deep_to_walk_is_evicted_saying_so(tmp_path: Path) -> None:
    limits, fake, _, _ = watcher()
    upper = tmp_path / "upper"
    deep = upper.joinpath(*["a"] * (MAX_DEPTH + 1))
    deep.mkdir(parents=True)
    fake.snapshots_.unmeasured = {"snap-c_app": upper}
    running = [RunningContainer(spec=limited(4 * MIB), pid=100, containerd_id="c_app")]
    message = await only_app_evicted(limits, running)
    assert f"nests directories more than {MAX_DEPTH} levels deep" in message
    assert "cannot be held to its limit of 4194304 bytes" in message


async def test_without_a_grace_of_its_own_kukeonds_is_used_and_a_gone_snapshot_is_skipped() -> None:
    limits, fake, _, _ = watcher()
    fake.snapshots_.sizes = {"snap-c_b": 2 * MIB}
    fake.tasks_.pid = 101
    running = [
        RunningContainer(spec=limited(MIB, "a"), pid=100, containerd_id="c_a"),  # gone
        RunningContainer(spec=limited(MIB, "b"), pid=101, containerd_id="c_b"),
    ]
    limits.sync(the_cell(), KEY, namespace="ns", running=running)
    assert await limits.measure() == ["c_b"]
    await limits.settle()
    assert fake.tasks_.stopped == [("c_b", 7.0)]


async def test_a_task_that_is_no_longer_the_evicted_one_is_not_stopped() -> None:
    limits, fake, _, triggered = watcher()
    fake.snapshots_.sizes = {"snap-c_app": 2 * MIB}
    fake.tasks_.pid = 555  # restarted meanwhile
    running = [RunningContainer(spec=limited(MIB), pid=100, containerd_id="c_app")]
    limits.sync(the_cell(), KEY, namespace="ns", running=running)
    await limits.measure()
    await limits.settle()
    assert fake.tasks_.stopped == []
    assert triggered == [(Kind.CELL, KEY)]


async def test_the_probe_manager_hands_over_and_asks_back() -> None:
    limits, fake, _, _ = watcher()
    fake.snapshots_.sizes = {"snap-c_app": 2 * MIB}
    probes = ProbeManager(
        containerd=lambda: cast(ContainerdClient, fake),
        trigger=lambda kind, key: True,
        fifo_root=__import__("pathlib").Path("/nonexistent"),
        stop_grace_seconds=1.0,
    )
    probes.storage = limits
    running = (RunningContainer(spec=limited(MIB), pid=100, containerd_id="c_app") for _ in [0])
    probes.sync(the_cell(), KEY, namespace="ns", address=None, running=running)
    assert await limits.measure() == ["c_app"]
    await limits.settle()
    kill = probes.kill(KEY, "app")
    assert kill is not None
    assert kill.reason == "Evicted"
    probes.forget(KEY)
    assert probes.kill(KEY, "app") is None
    await probes.close()


# --- the plan -------------------------------------------------------------------------------


def planned(
    spec: ContainerSpec, *, task: ObservedTask, kill: ProbeKill | None, previous: Any = None
) -> ContainerPlan:
    return plan_container(
        ContainerInputs(
            spec=spec,
            name=NAME,
            root=True,
            digest="d1",
            restarted_at="",
            previous=previous or ran(),
            container=kept(),
            task=task,
            now=T0,
            probe_kill=kill,
        )
    )


@pytest.mark.parametrize("policy", ["always", "on-failure", "never"])
@pytest.mark.parametrize("code", [137, 143, 0])
def test_an_evicted_container_is_failed_and_not_restarted(policy: str, code: int) -> None:
    spec = limited(MIB, restartPolicy=policy)
    message = eviction_message("app", 2 * MIB, MIB)
    exited = stopped_task(code, at=T0 - timedelta(seconds=1))
    result = planned(spec, task=exited, kill=ProbeKill(100, "Evicted", message))
    assert result.status.state == ContainerState.FAILED
    assert result.status.reason == "Evicted"
    assert result.status.message == message
    assert not any(isinstance(action, StartTask) for action in result.actions)
    assert result.restart_at is None
    assert not result.observation.restart_owed
    assert result.observation.exit_code != 0  # a failure even when it exited 0 on SIGTERM


def test_the_eviction_stays_reported_without_the_kill_remembered() -> None:
    """kukeond restarted after writing the eviction: the task's exit (SIGKILL, 137) is read
    again, and stays an eviction rather than an `Error` that `always` would restart."""
    spec = limited(MIB, restartPolicy="always")
    message = eviction_message("app", 2 * MIB, MIB)
    exited = stopped_task(137, at=T0 - timedelta(seconds=1))
    first = planned(spec, task=exited, kill=ProbeKill(100, "Evicted", message))
    again = planned(spec, task=exited, kill=None, previous=first.status)
    assert again.status.reason == "Evicted"
    assert again.status.message == message
    assert again.status.state == ContainerState.FAILED
    assert not any(isinstance(action, StartTask) for action in again.actions)
    # Without an eviction the same exit is an error, restarted under `always`.
    plain = planned(spec, task=exited, kill=None)
    assert any(isinstance(action, StartTask) for action in plain.actions)
    assert plain.status.last_state is not None
    assert plain.status.last_state.reason == "Error"


def test_the_plan_carries_the_effective_spec() -> None:
    """The watcher is handed the spec planned from (space defaults applied), not the cell's."""
    spec = limited(MIB)
    result = planned(
        spec, task=ObservedTask(status=stopped_task(0, at=T0).status, pid=1), kill=None
    )
    assert result.spec is spec


def test_the_exit_of_an_evicted_container_is_a_warning_even_with_code_0() -> None:
    spec = limited(MIB, restartPolicy="never")
    kill = ProbeKill(100, "Evicted", eviction_message("app", 2 * MIB, MIB))
    result = planned(spec, task=stopped_task(0, at=T0 - timedelta(seconds=1)), kill=kill)
    (note,) = result.notes
    assert note.reason == EventReason.EXITED
    assert note.warning
    assert "(Evicted)" in note.message
