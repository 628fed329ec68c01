"""A sampler of the fleet hack/fleet-up.sh makes: which cells have a running task in each
host's containerd, and which nodes report Ready, every ``every`` seconds.

Shared by test_never_two_copies.py (no cell runs on two hosts) and test_cellset_fleet.py
(no more than ``replicas + maxSurge`` copies of a set run). Each sample reads the nodes'
readiness *before* the containerds: a node that reports Ready in a sample had reported
it before its containerd was read, so what that containerd shows was running while the
node was Ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kukeon.api import Kind, Node
from kukeon.client.apiclient import ApiClient
from kukeon.runtime.containerd import ContainerdClient
from kukeon.runtime.containerd.tasks import TaskStatus

NODES = ("n1", "n2", "n3")


@dataclass
class Sample:
    at: float
    running: dict[str, set[str] | None]
    """Node -> the cells with a running task in its containerd (None: containerd down)."""
    ready: dict[str, bool] = field(default_factory=dict)

    def copies(self, wanted: Callable[[str], bool]) -> int:
        """Running copies of the cells ``wanted`` picks, over the hosts that answered."""
        return sum(1 for found in self.running.values() for n in found or () if wanted(n))


class Sampler:
    """Counts the running copies of every cell on every host, every ``every`` seconds."""

    def __init__(
        self,
        fleet_dir: Path,
        api: ApiClient,
        *,
        nodes: Sequence[str] = NODES,
        every: float = 0.5,
    ) -> None:
        self.fleet_dir = fleet_dir
        self.api = api
        self.nodes = tuple(nodes)
        self.every = every
        self.samples: list[Sample] = []

    async def running_on(self, node: str) -> set[str] | None:
        socket = self.fleet_dir / node / "containerd" / "containerd.sock"
        client = ContainerdClient(str(socket))
        try:
            async with asyncio.timeout(2):
                found: set[str] = set()
                for namespace in await client.namespaces.list():
                    name = namespace.name
                    if not (name.startswith("default.") and name.endswith(".kukeon.io")):
                        continue
                    for task in await client.tasks(name).list():
                        if task.status == TaskStatus.RUNNING:
                            # default_default_<cell>_<container>
                            found.add(task.id.removeprefix("default_default_").rsplit("_", 1)[0])
                return found
        except Exception:
            return None
        finally:
            await client.close()

    async def readiness(self) -> dict[str, bool]:
        with contextlib.suppress(Exception):
            listed = await self.api.list(Kind.NODE)
            return {
                n.metadata.name: str(n.status.state) == "Ready"
                for n in listed.items
                if isinstance(n, Node)
            }
        return {}

    async def run(self) -> None:
        while True:
            ready = await self.readiness()
            found = await asyncio.gather(*(self.running_on(n) for n in self.nodes))
            self.samples.append(
                Sample(time.monotonic(), dict(zip(self.nodes, found, strict=True)), ready)
            )
            await asyncio.sleep(self.every)

    def doubles(
        self, since: float, *, unless: str | None = None
    ) -> list[tuple[float, str, list[str]]]:
        """(when, cell, nodes) for each cell seen running on two hosts since ``since``;
        samples where node ``unless`` was not Ready yet are left out."""
        found = []
        for sample in self.samples:
            if sample.at < since or (unless and not sample.ready.get(unless, False)):
                continue
            where: dict[str, list[str]] = {}
            for node, running in sample.running.items():
                for name in running or ():
                    where.setdefault(name, []).append(node)
            found += [(sample.at, n, hosts) for n, hosts in where.items() if len(hosts) > 1]
        return found
