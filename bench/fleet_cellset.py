"""`fleet_bench.py --cellset N`: one CellSet of N replicas on a real three-node fleet, against
the same containers started with containerd alone on the same three hosts, in one run.

hack/fleet-up.sh starts three hosts (network namespaces sharing one 3-member etcd, each
with its own containerd and kukeond, default settings); the busybox test image
(hack/make-test-image.sh) is imported on every node with `kukectl image import --node`
and, for the baseline, into a namespace of its own in every containerd. Then, in order:

1. baseline: N containers, N/3 per host, created and started with containerd alone
   (Containers.Create + Tasks.Create + Tasks.Start, kukeon's OCI spec builder, each task in
   a new network namespace of its own, no CNI) with as many in flight per host as kukeond
   runs handlers (16); timed from the batch's start to the last Tasks.Start answer; then
   stopped and deleted the same way (SIGTERM, wait, Tasks.Delete, Containers.Delete),
   timed until no host's containerd holds a task of them;
2. kukeon: one CellSet (realm, space and stack `default`) of N replicas of the same
   container (`sh` looping on `sleep 1`, trapping SIGTERM) is created through n1's API
   (what `kukectl apply` sends); a watch of the set's cells through the same API times,
   from the create, each cell's creation by the set controller, its placement (nodeName
   set by the scheduler) and its `Ready`; then the set's status is polled until
   `readyReplicas == N`, and every host's containerd is read: each cell must run exactly
   on the node it is placed on. The set is then scaled to 0 (a merge patch of
   `spec.replicas`, as `kukectl scale`) and timed until no host's containerd holds a
   task of it and its cells are gone from the API; the set is deleted;
3. the baseline again (the machine's load drifts: the ratio is against the mean of the
   two).

Cells are on space `default`'s bridge network of each node: every node allocates from
the pool 10.88.0.0/16 a /24 per space (253 addresses), so N/3 per node fits up to ~750.
The fleet is removed (hack/fleet-down.sh) whatever happened; the kukeonds' logs are
kept in /tmp/kukeon-fleet-bench-logs-<fleet id>/.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cell_bench import LoopLag, read_loop_lag
from harness import IMAGE, REPO_ROOT, SLEEPER, make_test_image

from kukeon.api import (
    CELLSET_LABEL,
    Cell,
    CellSet,
    CellState,
    ContainerSpec,
    Kind,
    parse_resource,
)
from kukeon.client.apiclient import ApiClient
from kukeon.daemon.config import GENERATED_METRICS_TOKEN
from kukeon.framework.settings import Settings
from kukeon.runtime.containerd import ContainerdClient, TaskIO
from kukeon.runtime.containerd.spec import SpecContext, build_runtime_spec, current_hard_rlimits

NODES = ("n1", "n2", "n3")
STACK = ("default", "default", "default")
SET_NAME = "bench"
DIRECT_NAMESPACE = "kukeon-fleet-bench-direct"
HANDLERS_IN_FLIGHT = Settings().max_workers
"""kukeond's handlers running at once per node: the baseline's parallelism per host."""
KUKECTL = REPO_ROOT / ".venv" / "bin" / "kukectl"
POLL = 0.25
TIMES = "\N{MULTIPLICATION SIGN}"
TASK_PREFIX = "default_default_"
"""A cell's task id in its realm's namespace: <space>_<stack>_<cell>_<container>."""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))]


async def until(check: Callable[[], Awaitable[bool]], *, within: float, what: str) -> float:
    """Poll ``check`` every POLL s; the moment (perf_counter) it first held."""
    deadline = time.perf_counter() + within
    while not await check():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{what}: not within {within:.0f} s")
        await asyncio.sleep(POLL)
    return time.perf_counter()


# --- the fleet -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fleet:
    directory: Path

    @property
    def id(self) -> str:
        return (self.directory / "id").read_text().strip()

    def containerd_socket(self, node: str) -> str:
        return str(self.directory / node / "containerd" / "containerd.sock")

    def api_server(self, node: str) -> str:
        return f"unix://{self.directory / node / 'run' / 'kukeond.sock'}"

    def metrics_address(self, node: str) -> str:
        """kukeond's /metrics, on the host's address (fleet-up's --metrics-address)."""
        return f"{(self.directory / node / 'address').read_text().strip()}:9464"

    def metrics_token(self, node: str) -> Path:
        """The token kukeond's /metrics asks for: the one it generated in its state
        directory (fleet-up's --state-dir, no metrics token setting)."""
        return self.directory / node / "state" / GENERATED_METRICS_TOKEN

    def leader_of_sets(self) -> str:
        """The node whose kukeond logged the set controller's decisions."""
        mark = f"cell set {'/'.join(STACK)}/{SET_NAME}: creating"
        found = [n for n in NODES if mark in (self.directory / n / "kukeond.log").read_text()]
        return ",".join(found) or "?"

    def pid(self, relative: str) -> int:
        return int((self.directory / relative).read_text().strip())

    def processes(self) -> dict[str, int]:
        """kukeond, containerd and etcd members by name → pid."""
        found = {f"kukeond {n}": self.pid(f"{n}/kukeond.pid") for n in NODES}
        found |= {f"containerd {n}": self.pid(f"{n}/containerd/pid") for n in NODES}
        return found | {f"etcd m{m}": self.pid(f"etcd/m{m}/pid") for m in range(3)}


@contextlib.contextmanager
def fleet_up() -> Iterator[Fleet]:
    """hack/fleet-up.sh with three nodes; hack/fleet-down.sh after, whatever happened."""
    # Short: unix socket paths below it must stay under 108 bytes.
    directory = Path(tempfile.mkdtemp(prefix="kfb-", dir="/tmp")) / "fleet"
    try:
        up = subprocess.run(
            [str(REPO_ROOT / "hack" / "fleet-up.sh"), str(directory), "--nodes", str(len(NODES))],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if up.returncode != 0:
            raise RuntimeError(f"fleet-up failed: {up.stderr}")
        yield Fleet(directory)
    finally:
        if (directory / "id").exists():
            keep = Path(f"/tmp/kukeon-fleet-bench-logs-{(directory / 'id').read_text().strip()}")
            keep.mkdir(exist_ok=True)
            for node in NODES:
                with contextlib.suppress(OSError):
                    shutil.copy(directory / node / "kukeond.log", keep / f"{node}-kukeond.log")
            print(f"kukeond logs kept in {keep}", file=sys.stderr)
        subprocess.run(
            [str(REPO_ROOT / "hack" / "fleet-down.sh"), str(directory)],
            capture_output=True,
            timeout=300,
            check=False,
        )
        shutil.rmtree(directory.parent, ignore_errors=True)


def import_image(fleet: Fleet, archive: Path) -> None:
    """`kukectl image import --node` of the test image, every node at once, through n1."""
    imports = [
        subprocess.Popen(
            [
                str(KUKECTL),
                "--server",
                fleet.api_server("n1"),
                "image",
                "import",
                str(archive),
                "--node",
                node,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for node in NODES
    ]
    for process in imports:
        _, err = process.communicate(timeout=120)
        if process.returncode != 0:
            raise RuntimeError(f"kukectl image import failed: {err.decode()}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_of(processes: dict[str, int]) -> dict[str, float]:
    found = {}
    for name, pid in processes.items():
        with contextlib.suppress(OSError):
            found[name] = cpu_seconds(pid)
    return found


# --- what the hosts run ------------------------------------------------------------------


async def tasks_by_node(
    clients: dict[str, ContainerdClient], *, namespace: str | None = None
) -> dict[str, list[str]]:
    """Node → the ids of the tasks (any status) in its containerd: in ``namespace``, or in
    every namespace but the baseline's."""

    async def on(client: ContainerdClient) -> list[str]:
        names = [namespace] if namespace else [n.name for n in await client.namespaces.list()]
        found: list[str] = []
        for name in names:
            if namespace is None and name == DIRECT_NAMESPACE:
                continue
            found += [task.id for task in await client.tasks(name).list()]
        return found

    listed = await asyncio.gather(*(on(clients[node]) for node in NODES))
    return dict(zip(NODES, listed, strict=True))


def cells_running(tasks: dict[str, list[str]]) -> dict[str, set[str]]:
    """Node → the set's cells with a task there."""
    return {
        node: {
            task.removeprefix(TASK_PREFIX).rsplit("_", 1)[0]
            for task in ids
            if task.startswith(f"{TASK_PREFIX}{SET_NAME}-")
        }
        for node, ids in tasks.items()
    }


# --- baseline: containerd alone -------------------------------------------------------------


@dataclass
class DirectResult:
    started: list[float] = field(default_factory=list)
    """Seconds from the batch's start to each Tasks.Start answer."""
    removed: float = 0.0
    """Seconds from the removal's start until no host holds a task of the batch."""
    cpu: dict[str, float] = field(default_factory=dict)


async def direct_round(
    fleet: Fleet, clients: dict[str, ContainerdClient], per_node: int, label: str, cgroups: str
) -> DirectResult:
    """``cgroups``: the tasks' cgroup parent, outside the nodes' cgroup roots (a kukeond
    removes what it does not own under its root, killing what runs there)."""
    image_config = await clients[NODES[0]].images(DIRECT_NAMESPACE).config(IMAGE)
    rlimits = current_hard_rlimits()
    template = ContainerSpec.model_validate(
        {"id": "main", "image": IMAGE, "command": SLEEPER[0], "args": SLEEPER[1:]}
    )
    gates = {node: asyncio.Semaphore(HANDLERS_IN_FLIGHT) for node in NODES}
    ids = [(node, f"{label}-{node}-{i:04d}") for node in NODES for i in range(per_node)]
    result = DirectResult()

    async def start(node: str, container_id: str, since: float) -> None:
        async with gates[node]:
            context = SpecContext(
                image_config=image_config,
                container_id=container_id,
                hostname=container_id,
                cgroups_path=f"{cgroups}/{node}/{container_id}",
                host_hard_rlimits=rlimits,
            )
            spec = build_runtime_spec(template, context=context)
            await (
                clients[node]
                .containers(DIRECT_NAMESPACE)
                .create(container_id, image=IMAGE, spec=spec)
            )
            log = fleet.directory / node / "bench-direct" / f"{container_id}.log"
            tasks = clients[node].tasks(DIRECT_NAMESPACE)
            await tasks.create(container_id, io=TaskIO.log_file(log))
            await tasks.start(container_id)
            result.started.append(time.perf_counter() - since)

    async def remove(node: str, container_id: str) -> None:
        async with gates[node]:
            tasks = clients[node].tasks(DIRECT_NAMESPACE)
            await tasks.stop(container_id, grace_period=10.0)
            await tasks.delete(container_id)
            await clients[node].containers(DIRECT_NAMESPACE).delete(container_id)

    before = cpu_of(fleet.processes())
    since = time.perf_counter()
    await asyncio.gather(*(start(node, container_id, since) for node, container_id in ids))
    result.cpu = {k: v - before.get(k, v) for k, v in cpu_of(fleet.processes()).items()}
    since = time.perf_counter()
    await asyncio.gather(*(remove(node, container_id) for node, container_id in ids))

    async def empty() -> bool:
        found = await tasks_by_node(clients, namespace=DIRECT_NAMESPACE)
        return not any(found.values())

    result.removed = await until(empty, within=300, what="baseline tasks gone") - since
    return result


# --- kukeon: one CellSet ------------------------------------------------------------------


@dataclass
class SetResult:
    replicas: int
    created: dict[str, float] = field(default_factory=dict)
    placed: dict[str, float] = field(default_factory=dict)
    ready: dict[str, float] = field(default_factory=dict)
    node_of: dict[str, str] = field(default_factory=dict)
    """Seconds from the set's create (per cell: first seen, first with nodeName, first Ready)."""
    status_ready: float = 0.0
    """Seconds from the create until the set's status said readyReplicas == replicas."""
    running: dict[str, int] = field(default_factory=dict)
    """Node → the set's cells with a task in its containerd once all were Ready."""
    misplaced: list[str] = field(default_factory=list)
    """Cells running on a node other than their nodeName (or on none)."""
    tasks_gone: float = 0.0
    cells_gone: float = 0.0
    """Seconds from the scale to 0 until no host holds a task of the set / no cell is left."""
    cpu: dict[str, float] = field(default_factory=dict)
    draining: list[tuple[float, int]] = field(default_factory=list)
    """(seconds from the scale to 0, tasks of the set left on the hosts), every POLL s."""
    loop_lag: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    """Node → kukeond's event-loop lag samples until all were Ready: (samples, over 100 ms,
    over 500 ms) of ``kukeon_event_loop_lag_seconds`` (a 100 ms timer)."""
    set_leader: str = ""

    @property
    def spread(self) -> dict[str, int]:
        return dict(sorted(Counter(self.node_of.values()).items()))


def set_document(replicas: int) -> Any:
    container = {"id": "main", "image": IMAGE, "command": SLEEPER[0], "args": SLEEPER[1:]}
    realm, space, stack = STACK
    return parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "CellSet",
            "metadata": {"name": SET_NAME},
            "spec": {
                "realmId": realm,
                "spaceId": space,
                "stackId": stack,
                "replicas": replicas,
                "selector": {"matchLabels": {"app": SET_NAME}},
                "template": {
                    "metadata": {"labels": {"app": SET_NAME}},
                    "spec": {"containers": [container]},
                },
            },
        }
    )


async def follow(api: ApiClient, revision: int, result: SetResult, since: float) -> None:
    """Record when each of the set's cells is first seen, placed and Ready."""
    selector = f"{CELLSET_LABEL}={SET_NAME}"
    async for event in api.watch(
        Kind.CELL, STACK, resource_version=revision, label_selector=selector
    ):
        cell = event.object
        if not isinstance(cell, Cell) or event.type == "DELETED":
            continue
        now = time.perf_counter() - since
        name = cell.metadata.name
        result.created.setdefault(name, now)
        if cell.spec.node_name:
            result.placed.setdefault(name, now)
            result.node_of[name] = cell.spec.node_name
        if cell.status.state == CellState.READY:
            result.ready.setdefault(name, now)


async def ready_replicas(api: ApiClient) -> int:
    found = await api.get(Kind.CELL_SET, (*STACK, SET_NAME))
    assert isinstance(found, CellSet)
    return found.status.ready_replicas


async def check_hosts(clients: dict[str, ContainerdClient], result: SetResult) -> None:
    """Each cell runs on its node, and only there."""
    running = cells_running(await tasks_by_node(clients))
    result.running = {node: len(cells) for node, cells in running.items()}
    for name, node in result.node_of.items():
        where = sorted(n for n, cells in running.items() if name in cells)
        if where != [node]:
            result.misplaced.append(f"{name}: placed on {node}, running on {where}")


async def set_round(fleet: Fleet, clients: dict[str, ContainerdClient], replicas: int) -> SetResult:
    result = SetResult(replicas)
    async with ApiClient(server=fleet.api_server("n1")) as api:
        revision = (await api.list(Kind.CELL, STACK)).resource_version
        lag_before = await loop_lags(fleet)
        before = cpu_of(fleet.processes())
        since = time.perf_counter()
        watcher = asyncio.create_task(follow(api, revision, result, since))
        try:
            await api.create(set_document(replicas))

            async def all_ready() -> bool:
                if watcher.done():
                    watcher.result()  # a broken watch fails the run
                return len(result.ready) >= replicas

            await until(all_ready, within=1800, what=f"{replicas} cells Ready")

            async def status_says_so() -> bool:
                return await ready_replicas(api) == replicas

            result.status_ready = (
                await until(status_says_so, within=120, what="readyReplicas") - since
            )
            result.cpu = {k: v - before.get(k, v) for k, v in cpu_of(fleet.processes()).items()}
            lag_after = await loop_lags(fleet)
            result.loop_lag = {
                node: (
                    lag_after[node].count - lag_before[node].count,
                    lag_after[node].over(0.1, since=lag_before[node]),
                    lag_after[node].over(0.5, since=lag_before[node]),
                )
                for node in NODES
            }
            result.set_leader = await asyncio.to_thread(fleet.leader_of_sets)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await check_hosts(clients, result)
        await scale_to_zero(api, clients, result)
    return result


async def loop_lags(fleet: Fleet) -> dict[str, LoopLag]:
    found = await asyncio.gather(
        *(
            asyncio.to_thread(read_loop_lag, fleet.metrics_address(node), fleet.metrics_token(node))
            for node in NODES
        )
    )
    return dict(zip(NODES, found, strict=True))


async def scale_to_zero(
    api: ApiClient, clients: dict[str, ContainerdClient], result: SetResult
) -> None:
    since = time.perf_counter()
    await api.patch(Kind.CELL_SET, (*STACK, SET_NAME), {"spec": {"replicas": 0}})

    async def no_tasks() -> bool:
        running = cells_running(await tasks_by_node(clients))
        result.draining.append((time.perf_counter() - since, sum(map(len, running.values()))))
        return not any(running.values())

    async def no_cells() -> bool:
        selector = f"{CELLSET_LABEL}={SET_NAME}"
        return not (await api.list(Kind.CELL, STACK, label_selector=selector)).items

    result.tasks_gone = await until(no_tasks, within=1800, what="the set's tasks gone") - since
    result.cells_gone = await until(no_cells, within=600, what="the set's cells gone") - since
    await api.delete(Kind.CELL_SET, (*STACK, SET_NAME))


# --- the run ---------------------------------------------------------------------------


@dataclass
class Run:
    replicas: int
    first: DirectResult
    kukeon: SetResult
    second: DirectResult
    containerd_version: str
    load: tuple[float, float, float]


async def run(replicas: int) -> Run:
    if replicas % len(NODES):
        raise SystemExit(f"--cellset must be a multiple of {len(NODES)} (the baseline's split)")
    per_node = replicas // len(NODES)
    cgroups = f"/kukeon-fleet-bench-{secrets.token_hex(3)}"
    with tempfile.TemporaryDirectory(prefix="kukeon-fleet-bench-") as scratch:
        archive = await make_test_image(Path(scratch) / "busybox.tar")
        try:
            with fleet_up() as fleet:
                clients = {n: ContainerdClient(fleet.containerd_socket(n)) for n in NODES}
                try:
                    version = (await clients[NODES[0]].wait_ready(within=30)).version
                    await asyncio.to_thread(import_image, fleet, archive)
                    for client in clients.values():
                        await client.namespaces.ensure(DIRECT_NAMESPACE)
                        await client.images(DIRECT_NAMESPACE).import_archive(archive)
                    print("baseline 1", file=sys.stderr)
                    first = await direct_round(fleet, clients, per_node, "a", cgroups)
                    print(f"CellSet of {replicas}", file=sys.stderr)
                    kukeon = await set_round(fleet, clients, replicas)
                    print(summary(kukeon), file=sys.stderr)
                    print("baseline 2", file=sys.stderr)
                    second = await direct_round(fleet, clients, per_node, "b", cgroups)
                finally:
                    for client in clients.values():
                        await client.close()
        finally:  # fleet-down deleted the tasks (runc their leaves): the parents are left
            remove_cgroups(cgroups)
    return Run(replicas, first, kukeon, second, version, os.getloadavg())


def remove_cgroups(parent: str) -> None:
    """rmdir ``parent`` and what is below it, deepest first, in every hierarchy."""
    for hierarchy in [Path("/sys/fs/cgroup"), *Path("/sys/fs/cgroup").iterdir()]:
        top = hierarchy / parent.lstrip("/")
        if not top.is_dir():
            continue
        for directory, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
            with contextlib.suppress(OSError):
                os.rmdir(directory)


def summary(k: SetResult) -> str:
    """The CellSet round in one line, printed as soon as it is measured."""
    return (
        f"placed {max(k.placed.values()):.1f} s, Ready {max(k.ready.values()):.1f} s, "
        f"status {k.status_ready:.1f} s, spread {k.spread}, running {k.running}, "
        f"misplaced {len(k.misplaced)}, scale to 0: tasks gone {k.tasks_gone:.1f} s, "
        f"cells gone {k.cells_gone:.1f} s"
    )


# --- the report ------------------------------------------------------------------------


def milestones(times: dict[str, float] | list[float], total: int) -> str:
    """When the 1st, 25 %, 50 %, 75 % and last of ``total`` got there."""
    ordered = sorted(times.values() if isinstance(times, dict) else times)
    marks = sorted({0, total // 4 - 1, total // 2 - 1, 3 * total // 4 - 1, total - 1})
    return ", ".join(f"#{m + 1} {ordered[m]:.1f} s" for m in marks if 0 <= m < len(ordered))


def cpu_line(cpu: dict[str, float]) -> str:
    groups: dict[str, float] = {}
    for name, seconds in cpu.items():
        group = name.split()[0]
        groups[group] = groups.get(group, 0.0) + seconds
    shown = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in sorted(groups.items()))
    per_node = ", ".join(f"{n} {cpu.get(f'kukeond {n}', 0.0):.1f} s" for n in NODES)
    return f"{shown} (kukeond per node: {per_node})"


def report(result: Run, *, command: str) -> str:
    n, k = result.replicas, result.kukeon
    direct_all = [max(r.started) for r in (result.first, result.second)]
    direct_removed = [r.removed for r in (result.first, result.second)]
    ready_all = max(k.ready.values())
    base_start = sum(direct_all) / 2
    base_remove = sum(direct_removed) / 2
    load = ", ".join(f"{value:.2f}" for value in result.load)
    per_ready = [k.ready[c] - k.placed[c] for c in k.ready if c in k.placed]
    return "\n".join(
        [
            f"## A CellSet of {n} replicas over 3 nodes (`bench/fleet_bench.py --cellset`)",
            "",
            "Command (from the repository root, as root; the script starts and removes its own",
            "fleet with hack/fleet-up.sh and hack/fleet-down.sh):",
            "",
            "```",
            command,
            "```",
            "",
            *(line.strip() for line in _METHOD.strip().splitlines()),
            "",
            f"Run of {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
            f"containerd {result.containerd_version}, "
            f"{platform.machine()}, {os.cpu_count()} cores, load average {load} at the end:",
            "",
            "| measurement | kukeon (CellSet) | baseline (containerd alone), runs 1 / 2 | ratio |",
            "|---|---|---|---|",
            f"| create → all {n} placed (nodeName set) | {max(k.placed.values()):.1f} s | | |",
            f"| create → all {n} cells Ready / all {n} tasks started | {ready_all:.1f} s | "
            f"{direct_all[0]:.1f} / {direct_all[1]:.1f} s "
            f"| **{ready_all / base_start:.1f}{TIMES}** |",
            f"| create → set status `readyReplicas: {n}` | {k.status_ready:.1f} s | | |",
            f"| scale to 0 → no task left on any host / all removed | {k.tasks_gone:.1f} s | "
            f"{direct_removed[0]:.1f} / {direct_removed[1]:.1f} s | "
            f"**{k.tasks_gone / base_remove:.1f}{TIMES}** |",
            f"| scale to 0 → no cell of the set left in the API | {k.cells_gone:.1f} s | | |",
            "",
            f"Spread (nodeName): {spread_line(k.spread)}; running tasks of the set per host "
            f"once all were Ready: {spread_line(k.running)}; cells not running exactly on "
            f"their node: {len(k.misplaced)}"
            + (f" ({'; '.join(k.misplaced[:5])})" if k.misplaced else "")
            + ".",
            "",
            f"Progress (seconds from the create): created by the set controller "
            f"{milestones(k.created, n)}; placed {milestones(k.placed, n)}; "
            f"Ready {milestones(k.ready, n)}. Baseline run 1, started: "
            f"{milestones(result.first.started, n)}.",
            "",
            f"Scale to 0, tasks of the set left on the hosts: {draining_line(k.draining)}.",
            "",
            f"A cell's placement → Ready: p50 {percentile(per_ready, 0.5):.1f} s, "
            f"p95 {percentile(per_ready, 0.95):.1f} s, max {max(per_ready):.1f} s.",
            "",
            f"CPU time used until all were Ready: {cpu_line(k.cpu)}; the baseline's start "
            f"(run 1): {cpu_line(result.first.cpu)}.",
            "",
            f"kukeond's event loop until all were Ready (`kukeon_event_loop_lag_seconds`, a 100 ms "
            f"timer; samples, late > 100 ms, late > 500 ms): {lag_line(k.loop_lag)}; the set "
            f"controller ran on {k.set_leader}.",
            "",
        ]
    )


def draining_line(draining: list[tuple[float, int]]) -> str:
    """When the tasks left first fell to 75 %, 50 %, 25 % and none of the first count."""
    if not draining:
        return "-"
    first = draining[0][1]
    marks = []
    for share in (0.75, 0.5, 0.25, 0.0):
        at = next((t for t, left in draining if left <= first * share), None)
        if at is not None:
            marks.append(f"{int(first * share)} left at {at:.1f} s")
    return f"{first} at first; " + ", ".join(marks)


def lag_line(lags: dict[str, tuple[float, float, float]]) -> str:
    return ", ".join(
        f"{node} {total:.0f} / {late:.0f} / {very:.0f}"
        for node, (total, late, very) in lags.items()
    )


def spread_line(counts: dict[str, int]) -> str:
    return " / ".join(f"{node} {counts.get(node, 0)}" for node in NODES)


_METHOD = """
kukeon: one CellSet of busybox cells (`sh` looping on `sleep 1`, trapping SIGTERM) in
realm/space/stack `default`, on each node's bridge of space `default` (a /24 per node
from 10.88.0.0/16), created through n1's API; a watch of its cells through the same
API times each cell's placement and Ready from the create; the set's status is polled
for `readyReplicas`, and every host's containerd is read to check that each cell runs on
its node and only there. Then `spec.replicas: 0`, timed until no host's containerd holds
a task of the set. Baseline, before and after on the same three containerds: the same
containers, a third per host, created and started with containerd alone (kukeon's OCI
spec builder, a new netns each, no CNI, 16 in flight per host as kukeond's handlers),
then stopped (SIGTERM) and deleted. The ratio is against the mean of the two baselines.
Fleet: hack/fleet-up.sh, three hosts in network namespaces on one 3-member etcd, kukeond
with its default settings.
"""
