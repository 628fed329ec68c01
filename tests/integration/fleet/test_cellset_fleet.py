"""CellSets on the fleet hack/fleet-up.sh makes (three hosts, each with its own containerd,
one etcd), issue 21's acceptance, on one fleet for the whole module:

1. 6 replicas land 2/2/2; `kukectl scale` to 9 gives 3/3/3, back to 3 leaves the three
   oldest, one per node;
   Spread by a node label: n1 and n2 labelled zone=a, n3 zone=b, 4 replicas land 1/1/2
   (2 per zone); a set spread by a label no node carries stays Pending, Unschedulable,
   `kukectl describe` saying why, until `kukectl label` gives a node that label;
2. a rolling update of a busybox httpd set with a readiness probe, under a client looping
   requests (see `LoopingClient` for what "no failed request" means), then a template
   whose image no node has: the rollout stops (`Progressing=False` at its progress
   deadline, `rollout status` exits 1), the old replicas serve on, and `rollout undo`
   removes the broken cell and keeps them;
3. a node's kukeond and containerd killed (its cells' shims live on): its replicas run
   Ready on the other nodes within nodeLeaseTtl + the time before replacement (the set's
   lostNode.replaceAfterSeconds where it has one, else --node-lost-timeout) + 10 s (and
   nodeLeaseTtl + the leader's heartbeat grace, 20 s, more when n3 was the leader);
   when it returns it stops its stale copies before it reports Ready, and no sample (one
   every SAMPLE_EVERY s of every host's containerd) counts more than replicas + maxSurge
   running copies, except the samples of the one window: the returned node's containerd
   answers (its stale copies with it) while its kukeond has not reported Ready yet. Those
   copies ran all along in their shims, unseen while that containerd was down: a node
   that cannot fence itself (kukeond dead) and held more replicas than maxSurge makes
   replicas + its replicas run until it returns; the window is checked to stay within
   that and to end before the node reports Ready (within WINDOW_MAX of its restart).

Cells of realm/space/stack `default`; a cell's address is on its node's space bridge,
inside that node's network namespace (every host allocates from the same pool, so only
there does an address name one cell): the client sends each request from a thread that
entered the network namespace of the node the cell runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import http.client
import os
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from kukeon.api import (
    CELLSET_LABEL,
    TEMPLATE_HASH_LABEL,
    Cell,
    CellSet,
    CellSetSpec,
    Kind,
    parse_resource,
)
from kukeon.client.apiclient import ApiClient, ApiRequestError
from tests.fixtures.containerd import BusyboxImage

from .conftest import SLEEPER
from .sampling import Sample, Sampler
from .test_fleet_up import kukectl, kukectl_via, started_fleet, wait_until

pytestmark = pytest.mark.integration

LEASE_TTL = 3
LOST_TIMEOUT = 3
REPLACE_AFTER = 2
"""spec.lostNode.replaceAfterSeconds, where the set has it."""
NODES = ("n1", "n2", "n3")
SAMPLE_EVERY = 0.5
STACK = ("default", "default", "default")
HTTPD = 'mkdir -p /tmp/www && echo "$V" > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www'
READINESS = {"httpGet": {"port": 8080, "path": "/"}, "periodSeconds": 1, "failureThreshold": 1}
MISSING_IMAGE = "kukeon.io/test/missing:latest"
PROGRESS_DEADLINE = 5
WINDOW_MAX = 30.0
"""Seconds from a returning node's restart to its Ready (its stale copies stopped)."""
HAS_LOST_NODE = "lost_node" in CellSetSpec.model_fields
CLONE_NEWNET = 0x40000000


# --- the fleet, once for the module --------------------------------------------------------


@pytest.fixture(scope="module")
def fleet_dir(containerd_test_image: BusyboxImage) -> Iterator[Path]:
    with started_fleet(
        KUKEON_NODE_LEASE_TTL=str(LEASE_TTL),
        KUKEON_NODE_HEARTBEAT_SECONDS="1",
        KUKEON_SCHEDULER_INTERVAL="0.5",
        # httpd as PID 1 ignores SIGTERM: a deleted old cell would hold the rollout for
        # the whole default grace (10 s), twice PROGRESS_DEADLINE.
        KUKEON_FLEET_KUKEOND_ARGS=f"--node-lost-timeout {LOST_TIMEOUT} --stop-grace-seconds 1",
    ) as directory:
        archive = str(containerd_test_image.archive)
        imports = [
            subprocess.Popen(
                [*kukectl_via(directory, "n1"), "image", "import", archive, "--node", node],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for node in NODES
        ]
        for process in imports:
            _, err = process.communicate(timeout=60)
            assert process.returncode == 0, err
        yield directory


@pytest.fixture
async def api(fleet_dir: Path) -> AsyncIterator[ApiClient]:
    client = ApiClient(server=f"unix://{fleet_dir}/n1/run/kukeond.sock")
    try:
        yield client
    finally:
        await client.close()


# --- sets and their cells ----------------------------------------------------------------


def set_doc(name: str, replicas: int, container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "CellSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [container]},
            },
            **spec,
        },
    }


def sleeper(image: str) -> dict[str, Any]:
    return {"id": "main", "image": image, "command": "sh", "args": SLEEPER}


def httpd(image: str, version: str) -> dict[str, Any]:
    return {
        "id": "main",
        "image": image,
        "command": "sh",
        "args": ["-c", HTTPD],
        "env": [f"V={version}"],
        "readinessProbe": READINESS,
    }


@contextlib.asynccontextmanager
async def running_set(api: ApiClient, document: dict[str, Any]) -> AsyncIterator[str]:
    """Create the set; delete it (its cells go with it) and wait for its cells to go."""
    name = document["metadata"]["name"]
    await api.create(parse_resource(document))
    try:
        yield name
    finally:
        try:
            await api.delete(Kind.CELL_SET, (*STACK, name))
        except ApiRequestError as error:
            if error.code != 404:
                raise

        async def gone() -> bool:
            return not await cells_of(api, name)

        await wait_until(gone, within=60, what=f"the cells of set {name} gone")


async def cells_of(api: ApiClient, name: str) -> list[Cell]:
    listed = await api.list(Kind.CELL, STACK, label_selector=f"{CELLSET_LABEL}={name}")
    return [c for c in listed.items if isinstance(c, Cell)]


async def get_set(api: ApiClient, name: str) -> CellSet:
    found = await api.get(Kind.CELL_SET, (*STACK, name))
    assert isinstance(found, CellSet)
    return found


def is_ready(cell: Cell) -> bool:
    return str(cell.status.state) == "Ready" and cell.metadata.deletion_timestamp is None


def spread(cells: list[Cell]) -> dict[str, int]:
    return dict(Counter(c.spec.node_name or "" for c in cells))


async def settled(
    api: ApiClient, name: str, replicas: int, *, within: float = 60.0, on: tuple[str, ...] = NODES
) -> list[Cell]:
    """The set's cells once there are exactly ``replicas``, all Ready from the current
    template on nodes ``on``, none being deleted, and its status says so."""
    found: list[Cell] = []

    async def check() -> bool:
        nonlocal found
        cellset = await get_set(api, name)
        found = await cells_of(api, name)
        status = cellset.status
        return (
            len(found) == replicas
            and all(is_ready(c) and c.spec.node_name in on for c in found)
            and all(
                c.metadata.labels[TEMPLATE_HASH_LABEL] == cellset.template_hash() for c in found
            )
            and status.observed_generation == cellset.metadata.generation
            and status.ready_replicas == status.updated_replicas == replicas
        )

    await wait_until(check, within=within, what=f"set {name} settled at {replicas}", client=api)
    return found


async def write_template(api: ApiClient, name: str, **spec: Any) -> None:
    await api.patch(Kind.CELL_SET, (*STACK, name), {"spec": spec})


# --- 1. spread and scaling ---------------------------------------------------------------


async def test_six_replicas_spread_and_scale_keeps_the_spread(
    fleet_dir: Path, api: ApiClient, containerd_test_image: BusyboxImage
) -> None:
    async with running_set(api, set_doc("spread", 6, sleeper(containerd_test_image.name))):
        six = await settled(api, "spread", 6)
        assert spread(six) == {"n1": 2, "n2": 2, "n3": 2}

        code, out, err = await kukectl(
            fleet_dir, "n1", "scale", "cellset/spread", "--replicas", "9"
        )
        assert code == 0, out + err
        nine = await settled(api, "spread", 9)
        assert spread(nine) == {"n1": 3, "n2": 3, "n3": 3}
        assert {c.metadata.name for c in six} < {c.metadata.name for c in nine}

        code, out, err = await kukectl(
            fleet_dir, "n1", "scale", "cellset/spread", "--replicas", "3"
        )
        assert code == 0, out + err
        three = await settled(api, "spread", 3)
        assert spread(three) == {"n1": 1, "n2": 1, "n3": 1}
        # Each node keeps one of its first cells (the scale-down counts the nodes, so it
        # holds whatever order the burst's cells were placed in; within a node the most
        # recently Ready go first, as a ReplicaSet's: the three added later were Ready
        # after the six, and between two of the six the Ready time, not the creation, ranks).
        assert {c.metadata.name for c in three} <= {c.metadata.name for c in six}


async def test_spread_by_a_node_label(
    fleet_dir: Path, api: ApiClient, containerd_test_image: BusyboxImage
) -> None:
    """spec.spread by a node label, set with kukectl label: see the module's 1 (~7 s)."""
    image = containerd_test_image.name
    zones = {"n1": "a", "n2": "a", "n3": "b"}
    try:
        labelled = await asyncio.gather(
            *(kukectl(fleet_dir, "n1", "label", "node", n, f"zone={z}") for n, z in zones.items())
        )
        assert all(code == 0 for code, _, _ in labelled), labelled
        by_zone = set_doc("zoned", 4, sleeper(image), spread={"topologyKey": "zone"})
        by_rack = set_doc("racked", 1, sleeper(image), spread={"topologyKey": "rack"})
        async with running_set(api, by_zone), running_set(api, by_rack):
            assert spread(await settled(api, "zoned", 4)) == {"n1": 1, "n2": 1, "n3": 2}

            async def unschedulable() -> bool:
                cells = await cells_of(api, "racked")
                return len(cells) == 1 and cells[0].status.reason == "Unschedulable"

            await wait_until(unschedulable, within=10, what="racked Unschedulable", client=api)
            (waiting,) = await cells_of(api, "racked")
            assert waiting.spec.node_name is None
            assert str(waiting.status.state) == "Pending"
            code, out, err = await kukectl(
                fleet_dir, "n1", "describe", "cell", waiting.metadata.name
            )
            assert code == 0, out + err
            assert "Unschedulable" in out, out
            assert "n3: no label rack (the set's spread.topologyKey)" in out, out
            code, out, err = await kukectl(fleet_dir, "n1", "label", "node", "n2", "rack=r1")
            assert code == 0, out + err
            assert spread(await settled(api, "racked", 1)) == {"n2": 1}
    finally:
        for node in zones:
            labels = {"zone": None, "rack": None}
            await api.patch(Kind.NODE, (node,), {"metadata": {"labels": labels}})


# --- 2. a rolling update under load, a broken template, back ------------------------------


def enter_netns(path: str) -> None:
    """Move the calling thread into the network namespace at ``path`` (setns(2) is per
    thread for network namespaces; Python 3.11 has no os.setns)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


def http_get(address: str) -> str:
    """GET / on a fresh connection: the body, or an exception."""
    connection = http.client.HTTPConnection(address, 8080, timeout=2)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        body = response.read().decode().strip()
        if response.status != 200:
            raise OSError(f"HTTP {response.status}")
        return body
    finally:
        connection.close()


class LoopingClient:
    """Requests GET / of the set's replicas in turn, from the network namespace of the node
    each runs on, for as long as it runs.

    What it may send to: the cells of the set that, at its latest look at the API (every
    0.2 s), are Ready and not being deleted, with an address and a node — what a load
    balancer fed from the set's status would use. A request that fails is a failed request
    unless, looked up right after the failure, its cell is gone or being deleted: the set
    had removed it from the Ready set and the client still used an address it no longer
    listed (`excused`, kept apart and checked: only cells the rollout removed). Any other
    failure — a Ready, listed cell that does not answer 200 — is in `failures`."""

    def __init__(self, api: ApiClient, fleet_dir: Path, name: str) -> None:
        self.api = api
        self.name = name
        fleet_id = (fleet_dir / "id").read_text().strip()
        self.executors = {
            node: ThreadPoolExecutor(
                1, initializer=enter_netns, initargs=(f"/run/netns/kf-{fleet_id}-{node[1:]}",)
            )
            for node in NODES
        }
        self.targets: dict[str, tuple[str, str]] = {}
        """Cell -> (node, address)."""
        self.served: Counter[str] = Counter()
        """Body (the template's V) -> answers."""
        self.by_cell: Counter[str] = Counter()
        self.failures: list[str] = []
        self.excused: list[str] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def refresh(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                self.targets = {
                    c.metadata.name: (c.spec.node_name, c.status.network.ip)
                    for c in await cells_of(self.api, self.name)
                    if is_ready(c) and c.spec.node_name and c.status.network.ip
                }
            await asyncio.sleep(0.2)

    async def send(self) -> None:
        loop = asyncio.get_running_loop()
        turn = 0
        while True:
            names = sorted(self.targets)
            if not names:
                await asyncio.sleep(0.05)
                continue
            name = names[turn % len(names)]
            turn += 1
            node, address = self.targets[name]
            try:
                body = await loop.run_in_executor(self.executors[node], http_get, address)
            except Exception as error:
                await self.judge(name, f"{name} on {node} at {address}: {error!r}")
            else:
                self.served[body] += 1
                self.by_cell[name] += 1
            await asyncio.sleep(0.02)

    async def judge(self, name: str, what: str) -> None:
        try:
            cell = await self.api.get(Kind.CELL, (*STACK, name))
        except ApiRequestError as error:
            if error.code != 404:
                raise
            self.excused.append(name)
            return
        if cell.metadata.deletion_timestamp is not None:
            self.excused.append(name)
        else:
            self.failures.append(f"{what} (cell {cell.status.state}: {cell.status.message})")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[LoopingClient]:
        self.tasks = [asyncio.create_task(self.refresh()), asyncio.create_task(self.send())]
        try:
            yield self
        finally:
            for task in self.tasks:
                task.cancel()
            for task in self.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for executor in self.executors.values():
                executor.shutdown(wait=False, cancel_futures=True)

    async def answered(self, body: str, *, times: int, within: float = 30.0) -> None:
        async def enough() -> bool:
            for task in self.tasks:
                if task.done():
                    task.result()  # the client broke: say why
                    raise AssertionError("the client stopped")
            return self.served[body] >= times

        await wait_until(enough, within=within, what=f"{times} answers {body!r}")


async def test_rolling_update_under_load_then_a_broken_template_and_back(
    fleet_dir: Path, api: ApiClient, containerd_test_image: BusyboxImage
) -> None:
    image = containerd_test_image.name
    rolling = {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    document = set_doc(
        "web", 3, httpd(image, "1"), strategy=rolling, progressDeadlineSeconds=PROGRESS_DEADLINE
    )
    async with running_set(api, document), LoopingClient(api, fleet_dir, "web").running() as client:
        first = await settled(api, "web", 3)
        await client.answered("1", times=20)

        # The rolling update: every answer is from a Ready replica the set lists.
        started = sum(client.served.values())
        await write_template(
            api, "web", template=set_doc("web", 3, httpd(image, "2"))["spec"]["template"]
        )
        second = await settled(api, "web", 3)
        assert not {c.metadata.name for c in first} & {c.metadata.name for c in second}
        await client.answered("2", times=client.served["2"] + 20)
        assert client.failures == [], client.failures
        assert set(client.excused) <= {c.metadata.name for c in first}, client.excused
        assert sum(client.served.values()) - started > 50, client.served
        good = (await get_set(api, "web")).template_hash()

        # A template no node can run: one new cell (maxSurge 1) that never gets Ready.
        broken = httpd(image, "3") | {"image": MISSING_IMAGE}
        await write_template(api, "web", template=set_doc("web", 3, broken)["spec"]["template"])
        await stopped_rollout(fleet_dir, api, "web", good)
        served = client.served["2"]
        await client.answered("2", times=served + 20)
        assert client.failures == [], client.failures
        assert {c.metadata.name for c in await cells_of(api, "web") if is_ready(c)} == {
            c.metadata.name for c in second
        }

        code, out, err = await kukectl(fleet_dir, "n1", "rollout", "undo", "cellset/web")
        assert code == 0, out + err
        back = await settled(api, "web", 3)
        assert {c.metadata.name for c in back} == {c.metadata.name for c in second}
        assert (await get_set(api, "web")).template_hash() == good
        await client.answered("2", times=client.served["2"] + 20)
        assert client.failures == [], client.failures
        assert "3" not in client.served
        print(f"answers {dict(client.served)}, excused (removed while listed) {client.excused}")


async def stopped_rollout(fleet_dir: Path, api: ApiClient, name: str, good: str) -> None:
    """The rollout to a broken template stops at its progress deadline, not before:
    `Progressing=False` (ProgressDeadlineExceeded), `rollout status` exits 1, its one new
    cell (maxSurge 1) never Ready and no other made, the old ones all Ready."""
    written = time.monotonic()

    async def stopped() -> bool:
        cellset = await get_set(api, name)
        progressing = [c for c in cellset.status.conditions if c.type == "Progressing"]
        return bool(progressing) and progressing[0].status == "False"

    await wait_until(stopped, within=PROGRESS_DEADLINE + 20, what=f"{name} stopped", client=api)
    assert time.monotonic() - written >= PROGRESS_DEADLINE - 1
    cellset = await get_set(api, name)
    progressing = next(c for c in cellset.status.conditions if c.type == "Progressing")
    assert progressing.reason == "ProgressDeadlineExceeded", progressing
    cells = await cells_of(api, name)
    new = [c for c in cells if c.metadata.labels[TEMPLATE_HASH_LABEL] != good]
    old = [c for c in cells if c.metadata.labels[TEMPLATE_HASH_LABEL] == good]
    shown = [(c.metadata.name, c.status.state) for c in cells]
    assert len(new) == 1, shown
    assert not is_ready(new[0]), shown
    assert len(old) == 3, shown
    assert all(map(is_ready, old)), shown
    code, out, err = await kukectl(
        fleet_dir, "n1", "rollout", "status", f"cellset/{name}", "--timeout", "10s"
    )
    assert code == 1, out + err
    assert "progress deadline" in err, err


# --- 3. a node lost and back --------------------------------------------------------------


def run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


async def test_a_lost_node_is_replaced_and_stops_its_stale_copies_before_ready(
    fleet_dir: Path, api: ApiClient, containerd_test_image: BusyboxImage
) -> None:
    replicas, surge = 6, 1
    rolling = {"rollingUpdate": {"maxSurge": surge, "maxUnavailable": 0}}
    extra: dict[str, Any] = (
        {"lostNode": {"replaceAfterSeconds": REPLACE_AFTER}} if HAS_LOST_NODE else {}
    )
    before = REPLACE_AFTER if HAS_LOST_NODE else LOST_TIMEOUT
    document = set_doc(
        "keep", replicas, sleeper(containerd_test_image.name), strategy=rolling, **extra
    )
    async with running_set(api, document):
        placed = await settled(api, "keep", replicas)
        assert spread(placed) == {"n1": 2, "n2": 2, "n3": 2}
        sampler = Sampler(fleet_dir, api, nodes=NODES, every=SAMPLE_EVERY)
        sampling = asyncio.create_task(sampler.run())
        try:
            restarted = await lose_and_return_n3(fleet_dir, api, sampler, replicas, before)
        finally:
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling
        stale = spread(placed)["n3"]
        print(
            check_copies(sampler, replicas=replicas, surge=surge, restarted=restarted, stale=stale)
        )


async def lose_and_return_n3(
    fleet_dir: Path, api: ApiClient, sampler: Sampler, replicas: int, before: float
) -> float:
    """Kill n3's kukeond and containerd, wait for its replicas elsewhere, bring it back:
    when it has reported Ready again, none of the set's cells runs on it. Returns when its
    containerd and kukeond were started again."""
    for pidfile in ("kukeond.pid", "containerd/pid"):
        os.kill(int((fleet_dir / "n3" / pidfile).read_text()), 9)
    killed = time.monotonic()
    # n3 may have been the scheduler's leader: then a new one is elected (its lease's TTL)
    # and waits its heartbeat grace (at least 20 s) for a node it has not heard in its term.
    within = LEASE_TTL + before + 10 + LEASE_TTL + 20
    await settled(api, "keep", replicas, within=within, on=("n1", "n2"))
    replaced_after = time.monotonic() - killed
    assert replaced_after <= within, replaced_after

    for script in ("start-containerd", "start-kukeond"):
        await asyncio.to_thread(run, str(fleet_dir / "n3" / script))
    restarted = time.monotonic()

    async def n3_ready() -> bool:
        return str((await api.get(Kind.NODE, ("n3",))).status.state) == "Ready"

    await wait_until(n3_ready, within=60, what="n3 Ready again", client=api)
    await asyncio.sleep(2 * SAMPLE_EVERY)
    assert not {n for n in await sampler.running_on("n3") or () if n.startswith("keep-")}
    await settled(api, "keep", replicas, on=("n1", "n2"))
    print(f"n3's replicas Ready on n1 and n2 {replaced_after:.1f}s after the kill")
    return restarted


def check_copies(
    sampler: Sampler, *, replicas: int, surge: int, restarted: float, stale: int
) -> str:
    """No sample counts more than ``replicas + surge`` running copies of the set's cells,
    but for the window (n3's containerd answers again while n3 is not Ready yet: its stale
    copies may still run, it stops them before it reports Ready); once n3 is Ready again
    none of the set's cells runs twice. Returns what the window was (for the log)."""

    def of_set(name: str) -> bool:
        return name.startswith("keep-")

    def in_window(sample: Sample) -> bool:
        return sample.running.get("n3") is not None and not sample.ready.get("n3", False)

    bound = replicas + surge
    assert any(s.running["n3"] is None for s in sampler.samples), "n3's loss not sampled"
    over = [
        (round(s.at, 1), s.copies(of_set), s.running)
        for s in sampler.samples
        if not in_window(s) and s.copies(of_set) > bound
    ]
    assert over == [], over
    ready_again = [
        s
        for s in sampler.samples
        if s.at >= restarted and s.ready.get("n3") and s.running["n3"] is not None
    ]
    assert ready_again, "n3 not sampled Ready after its return"
    assert not {n for n in ready_again[0].running["n3"] or () if of_set(n)}
    doubles = [d for d in sampler.doubles(ready_again[0].at) if of_set(d[1])]
    assert doubles == [], doubles
    # The window: bounded by n3's own copies, and over before n3 reports Ready (above).
    window = [s for s in sampler.samples if in_window(s)]
    most = max((s.copies(of_set) for s in window), default=0)
    assert most <= replicas + stale, [(round(s.at, 1), s.running) for s in window]
    length = ready_again[0].at - restarted
    assert length <= WINDOW_MAX, length
    return f"window: {len(window)} samples, {length:.1f}s after restart, at most {most} copies"
