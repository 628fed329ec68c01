"""Benchmark of the fleet scheduler against a real etcd: placement rate and reschedule time.

Three nodes register (the real ``NodeAgent``: Node document, heartbeat lease) and one
``Scheduler`` leads; no containerd is involved, so what is measured is the control plane
only (cells are placed, not run):

1. throughput: N cells without ``nodeName`` are created (64 writes in flight) while the
   scheduler runs; cells placed per second, from the first create to the last placement,
   and the spread over the nodes;
2. node loss: one node's heartbeat lease is revoked (a clean kukeond exit; a crash adds
   the lease TTL) with ``node_lost_timeout=0``; time until the node is NotReady and until
   every one of its cells has been placed on another node.

Runs its own etcd (data under /dev/shm) unless ``--endpoint`` is given:

    .venv/bin/python bench/fleet_bench.py --cells 1000

With ``--cellset N`` it measures instead a real fleet (hack/fleet-up.sh, three hosts with
their own containerd and kukeond): one CellSet of N replicas created until all are placed
and Ready, the per-node spread, and its scale to 0 until every host's containerd is
empty, against the same containers started with containerd alone on the same hosts (see
bench/fleet_cellset.py; as root):

    .venv/bin/python bench/fleet_bench.py --cellset 300 --output docs/benchmarks/fleet-cellset.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from kukeon.api import Cell, Kind, Node, NodeState, parse_resource
from kukeon.controllers.scheduler import Scheduler
from kukeon.daemon.config import DaemonConfig
from kukeon.daemon.node import NodeAgent
from kukeon.store import EmbeddedEtcd, EtcdConfig, Registry


def _doc(kind: str, name: str, **spec: object) -> dict[str, object]:
    return {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


async def _cells(registry: Registry) -> list[Cell]:
    return [c for c in (await registry.list(Kind.CELL)).items if isinstance(c, Cell)]


async def _wait(predicate: object, *, poll: float = 0.05, within: float = 300.0) -> float:
    start = time.perf_counter()
    assert callable(predicate)
    while not await predicate():
        if time.perf_counter() - start > within:
            raise TimeoutError("benchmark condition not reached")
        await asyncio.sleep(poll)
    return time.perf_counter()


async def bench(etcd: EtcdConfig, cells: int) -> None:
    prefix = f"/kukeon-bench-{uuid.uuid4().hex[:8]}"
    registry = await Registry.connect(dataclasses.replace(etcd, key_prefix=prefix))
    agents = []
    for index in range(3):
        config = DaemonConfig(
            etcd_endpoints=tuple(etcd.endpoints),
            etcd_ca_file=etcd.ca_file,
            etcd_cert_file=etcd.cert_file,
            etcd_key_file=etcd.key_file,
            etcd_prefix=prefix,
            # --endpoint may name a plaintext etcd of the bench's user: their choice.
            etcd_allow_insecure=True,
            node_name=f"bench-n{index}",
            node_lease_ttl=5,
            node_heartbeat_seconds=1.0,
        )
        agent = NodeAgent(registry=registry, config=config, containerd=None)
        await agent.start()
        agents.append(agent)
    scheduler = Scheduler(
        registry=registry, node_name="bench-n0", node_lost_timeout=0.0, interval=0.5
    )
    for document in (
        _doc("Realm", "r"),
        _doc("Space", "s", realmId="r"),
        _doc("Stack", "st", realmId="r", spaceId="s"),
    ):
        await registry.create(parse_resource(document))
    leader = asyncio.create_task(scheduler.lead())
    await asyncio.sleep(0.5)

    gate = asyncio.Semaphore(64)

    async def create(index: int) -> None:
        async with gate:
            await registry.create(
                parse_resource(
                    _doc(
                        "Cell",
                        f"c{index:05d}",
                        realmId="r",
                        spaceId="s",
                        stackId="st",
                        containers=[{"id": "main", "image": "busybox"}],
                    )
                )
            )

    try:
        started = time.perf_counter()
        await asyncio.gather(*(create(i) for i in range(cells)))
        created = time.perf_counter()

        async def all_placed() -> bool:
            return all(c.spec.node_name for c in await _cells(registry))

        placed = await _wait(all_placed)
        spread = Counter(c.spec.node_name for c in await _cells(registry))
        print(f"created {cells} cells in {created - started:.2f}s")
        print(
            f"placed {cells} cells in {placed - started:.2f}s: "
            f"{cells / (placed - started):.0f} cells/s (spread {dict(sorted(spread.items()))})"
        )

        lost = agents[1]
        on_lost = {
            c.metadata.name for c in await _cells(registry) if c.spec.node_name == lost.node_name
        }
        loss = time.perf_counter()
        await lost.stop()

        async def not_ready() -> bool:
            node = await registry.get(Kind.NODE, (lost.node_name,))
            return isinstance(node, Node) and node.status.state == NodeState.NOT_READY

        async def moved() -> bool:
            return all(
                c.spec.node_name != lost.node_name
                for c in await _cells(registry)
                if c.metadata.name in on_lost
            )

        notready_at = await _wait(not_ready)
        moved_at = await _wait(moved)
        print(
            f"node loss ({len(on_lost)} cells): NotReady after {notready_at - loss:.2f}s, "
            f"all rescheduled after {moved_at - loss:.2f}s (lost-timeout 0)"
        )
    finally:
        leader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await leader
        for agent in agents:
            await agent.stop()
        with contextlib.suppress(Exception):
            await registry.delete(Kind.REALM, ("r",), cascade=True)
        for agent in agents:
            with contextlib.suppress(Exception):
                await registry.delete(Kind.NODE, (agent.node_name,))
        await registry.close()


async def cellset_mode(replicas: int, output: Path | None) -> None:
    if os.geteuid() != 0:
        raise SystemExit("--cellset runs as root: fleet-up makes namespaces, cgroups, containerds")
    import fleet_cellset  # the fleet mode's own helpers (harness, containerd)

    result = await fleet_cellset.run(replicas)
    command = ".venv/bin/python bench/fleet_bench.py " + " ".join(sys.argv[1:])
    text = fleet_cellset.report(result, command=command.strip())
    print(text)
    if output is not None:
        await asyncio.to_thread(output.write_text, text)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--endpoint", help="an etcd to use instead of a private one")
    parser.add_argument(
        "--cellset",
        type=int,
        metavar="N",
        help="instead: a CellSet of N replicas on a real 3-node fleet (hack/fleet-up.sh)",
    )
    parser.add_argument("--output", type=Path, help="with --cellset: also write the report here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.cellset is not None:
        await cellset_mode(args.cellset, args.output)
        return
    if args.endpoint:
        await bench(EtcdConfig(endpoints=(args.endpoint,)), args.cells)
        return
    data = Path(tempfile.mkdtemp(prefix="kukeon-fleet-bench-", dir="/dev/shm"))
    etcd = EmbeddedEtcd(data_dir=data / "etcd")
    await etcd.start()
    try:
        await bench(etcd.config(), args.cells)
    finally:
        await etcd.stop()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
