"""A stack of N cells deleted with ``kukectl delete --cascade --wait``, against the time the
same cells took to come up (issue 18: the delete takes at most 1.5x the create).

Everything runs on private resources (bench/harness.py: its own containerd, etcd and
kukeond). Each round creates a stack, waits until it is Ready, creates ``--cells`` cells in
it at once through the registry and follows them with a watch until all are Ready (the
create time: the first create's write to the last cell Ready), then runs ``kukectl delete
stack NAME --cascade --wait`` as a user would, against kukeond's unix socket (the delete
time: that whole process, until it exits once every cell and the stack are gone). The
cells' shell waits on a background sleep and exits at SIGTERM's arrival: the delete is
kukeon's work, not a stop grace running out. (The harness's sleeper, ``while :; do sleep
1; done``, runs its TERM trap only once the foreground ``sleep 1`` ends: up to a second of
each delete, half a second on average, was the cells' own.)

    flock /tmp/kukeon-bench.lock nice -n 10 .venv/bin/python bench/cascade_bench.py \\
        [--cells 50] [--rounds 3] [--output FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "operator"))
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "bench"))

from harness import IMAGE, REALM, SPACE, control_plane, wait_ready  # noqa: E402

from kukeon.api import Kind, parse_resource  # noqa: E402
from kukeon.store import Registry  # noqa: E402

KUKECTL = Path(sys.executable).parent / "kukectl"
PROMPT_SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; sleep 2147483647 & wait"]
"""Ends as SIGTERM arrives: ``wait`` is interrupted by the signal, the trap runs at once."""


@dataclass
class Round:
    cells: int
    create_seconds: float
    delete_seconds: float
    load: float

    @property
    def ratio(self) -> float:
        return self.delete_seconds / self.create_seconds


def _document(kind: str, name: str, stack: str, **spec: Any) -> Any:
    parents = {"realmId": REALM, "spaceId": SPACE}
    if kind == "Cell":
        parents["stackId"] = stack
    return parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": kind,
            "metadata": {"name": name},
            "spec": {**parents, **spec},
        }
    )


async def _create_all_ready(registry: Registry, stack: str, names: list[str]) -> float:
    """Create the cells at once; seconds from the first write to the last one Ready."""
    since = await registry.current_revision()
    ready: set[str] = set()
    all_ready = asyncio.Event()

    async def follow() -> None:
        scope = (REALM, SPACE, stack)
        async for event in registry.watch(Kind.CELL, scope, resource_version=since):
            name = event.object.metadata.name
            if event.object.status.state == "Ready" and name not in ready:
                ready.add(name)
                if len(ready) == len(names):
                    all_ready.set()

    command, *args = PROMPT_SLEEPER
    container = {"id": "main", "image": IMAGE, "command": command, "args": args}
    watcher = asyncio.create_task(follow())
    try:
        started = time.perf_counter()
        await asyncio.gather(
            *(
                registry.create(_document("Cell", name, stack, containers=[container]))
                for name in names
            )
        )
        await asyncio.wait_for(all_ready.wait(), 600)
        return time.perf_counter() - started
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def _delete_with_kukectl(socket: Path, stack: str) -> float:
    """``kukectl delete stack STACK --cascade --wait``: the whole process's wall time."""
    argv = [str(KUKECTL), "--server", f"unix://{socket}", "delete", "stack", stack]
    argv += ["--realm", REALM, "--space", SPACE, "--cascade", "--wait", "--timeout", "600s"]
    started = time.perf_counter()
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"kukectl delete failed ({done.returncode}): {done.stderr}")
    return elapsed


async def _round(registry: Registry, socket: Path, number: int, cells: int) -> Round:
    stack = f"del{number}"
    await registry.create(_document("Stack", stack, stack))
    await wait_ready(registry, Kind.STACK, (REALM, SPACE, stack), within=120)
    names = [f"d{number}-{index}" for index in range(cells)]
    load = os.getloadavg()[0]
    create_seconds = await _create_all_ready(registry, stack, names)
    await asyncio.sleep(2)  # the last status writes settle, as a user's next command would
    delete_seconds = await _delete_with_kukectl(socket, stack)
    left = (await registry.list(Kind.CELL, (REALM, SPACE, stack))).items
    if left:
        raise RuntimeError(f"{len(left)} cells still stored after the delete")
    return Round(cells, create_seconds, delete_seconds, load)


def report(rounds: list[Round]) -> str:
    lines = [
        "| round | cells | create → all Ready | `delete --cascade --wait` | ratio | load (1 min) |",
        "|---|---|---|---|---|---|",
    ]
    for index, done in enumerate(rounds, 1):
        lines.append(
            f"| {index} | {done.cells} | {done.create_seconds:.1f} s | "
            f"{done.delete_seconds:.1f} s | {done.ratio:.2f} | {done.load:.1f} |"
        )
    median = statistics.median(done.ratio for done in rounds)
    lines.append("")
    lines.append(f"Median ratio delete / create: **{median:.2f}** (issue 18's goal: ≤ 1.5).")
    return "\n".join(lines) + "\n"


async def main(cells: int, rounds: int) -> list[Round]:
    done: list[Round] = []
    async with control_plane("cascade") as plane:
        socket = plane.config.run_dir / "kukeond.sock"
        for number in range(rounds):
            done.append(await _round(plane.registry, socket, number, cells))
            print(f"round {number + 1}: {done[-1]}", flush=True)
            await asyncio.sleep(5)  # the next burst starts on a settled machine
    return done


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--output", type=Path, help="also write the markdown table here")
    arguments = parser.parse_args()
    results = asyncio.run(main(arguments.cells, arguments.rounds))
    text = report(results)
    print(text)
    if arguments.output is not None:
        arguments.output.write_text(text)
