"""Benchmark of the ephemeral-storage measurement: what one pass over N containers costs.

kukeond measures each running container with `resources.ephemeralStorageLimitBytes` every
10 s (``controllers/ephemeralstorage.py``): one ``Containers.Get`` per task (once) and one
``Snapshots.Usage`` per container per pass, in which containerd walks the container's
overlay upper directory. This script starts a containerd of its own (own root, state and
socket, under a temporary directory), imports the busybox test image into a namespace of
its own, creates N containers (their rootfs snapshots prepared, no task: ``Usage`` needs
only the snapshot), writes ``--files`` small files into each upper directory (what a
running program leaves in /tmp and /run), then runs ``--passes`` passes of
``StorageLimits.measure`` over the N, each timed for wall clock, this process's CPU
(``time.process_time``: kukeond's side, the gRPC client) and containerd's CPU (utime +
stime from /proc/<pid>/stat; its side, the directory walks). A pass over 0 containers is
measured alternately with the N pass as the baseline (the loop's own overhead). The
figures per pass and per 10 s period (the idle node's share of a core) are printed with the
load average. Everything is removed on the way out, also on failure: the namespace (its
containers, snapshots, image), containerd and the temporary directory.

    flock /tmp/kukeon-bench.lock nice -n 10 .venv/bin/python bench/ephemeral_storage_bench.py \
        [--containers 50] [--files 100] [--passes 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kukeon.api import Cell, ContainerSpec
from kukeon.controllers.ephemeralstorage import PERIOD_SECONDS, StorageLimits
from kukeon.controllers.probing import RunningContainer
from kukeon.runtime.containerd import ContainerdClient
from tests.fixtures.containerd import (
    PrivateContainerd,
    build_test_image,
    clean_namespace,
)

CLK_TCK = os.sysconf("SC_CLK_TCK")
SPEC = {"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "process": {"args": ["true"]}}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cell() -> Cell:
    return Cell.model_validate(
        {
            "metadata": {"name": "c"},
            "spec": {
                "realmId": "r",
                "spaceId": "s",
                "stackId": "st",
                "containers": [{"id": "app", "image": "busybox"}],
            },
        }
    )


async def populate(
    client: ContainerdClient, namespace: str, image: str, n: int, files: int
) -> None:
    containers = client.containers(namespace)
    snapshots = client.snapshots(namespace)
    for index in range(n):
        cid = f"bench-{index}"
        await containers.create(cid, image=image, spec=SPEC)
        mounts = await snapshots.mounts(cid)
        upper = next(
            option.removeprefix("upperdir=")
            for mount in mounts
            for option in mount.options
            if option.startswith("upperdir=")
        )
        scratch = Path(upper) / "tmp"
        scratch.mkdir(exist_ok=True)
        for number in range(files):
            (scratch / f"f{number}").write_bytes(b"x" * 4096)


async def one_pass(limits: StorageLimits, containerd_pid: int) -> tuple[float, float, float]:
    wall, cpu, theirs = time.perf_counter(), time.process_time(), cpu_seconds(containerd_pid)
    evicted = await limits.measure()
    assert evicted == []
    return (
        time.perf_counter() - wall,
        time.process_time() - cpu,
        cpu_seconds(containerd_pid) - theirs,
    )


def watcher(client: ContainerdClient, namespace: str, n: int) -> StorageLimits:
    limits = StorageLimits(
        containerd=lambda: client, trigger=lambda kind, key: True, stop_grace_seconds=1
    )
    spec = ContainerSpec.model_validate(
        {"id": "app", "image": "busybox", "resources": {"ephemeralStorageLimitBytes": 1 << 40}}
    )
    for index in range(n):
        running = [RunningContainer(spec=spec, pid=1000 + index, containerd_id=f"bench-{index}")]
        limits.sync(cell(), ("r", "s", "st", f"c{index}"), namespace=namespace, running=running)
    return limits


def show(name: str, samples: list[tuple[float, float, float]]) -> None:
    walls, ours, theirs = (sorted(column) for column in zip(*samples, strict=True))
    print(
        f"{name:>14}: wall {statistics.median(walls) * 1e3:7.2f} ms (max {walls[-1] * 1e3:.2f}),"
        f" kukeond CPU {statistics.median(ours) * 1e3:6.2f} ms,"
        f" containerd CPU {statistics.median(theirs) * 1e3:6.2f} ms per pass (medians);"
        f" per {PERIOD_SECONDS:.0f} s period:"
        f" {(statistics.median(ours) + statistics.median(theirs)) / PERIOD_SECONDS * 100:.3f} %"
        " of a core"
    )


async def run(args: argparse.Namespace, base: Path, daemon: PrivateContainerd) -> None:
    client = ContainerdClient(daemon.address, retry_timeout=30.0)
    namespace = f"kb-{secrets.token_hex(4)}"
    try:
        await client.wait_ready(within=30.0)
        await client.namespaces.ensure(namespace)
        archive = build_test_image(base / "image")
        image = (await client.images(namespace).import_archive(archive.archive))[0].name
        await populate(client, namespace, image, args.containers, args.files)
        assert daemon.process is not None
        pid = daemon.process.pid
        full, empty = watcher(client, namespace, args.containers), watcher(client, namespace, 0)
        await one_pass(full, pid)  # the snapshot keys read once, as kukeond does per task
        with_n: list[tuple[float, float, float]] = []
        without: list[tuple[float, float, float]] = []
        for index in range(args.passes):
            order = ((full, with_n), (empty, without))
            for limits, into in order if index % 2 == 0 else order[::-1]:
                into.append(await one_pass(limits, pid))
                await asyncio.sleep(0.2)
        print(f"load average {os.getloadavg()}; {args.containers} containers x {args.files} files")
        show("0 containers", without)
        show(f"{args.containers} containers", with_n)
    finally:
        await clean_namespace(client, namespace)
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--containers", type=int, default=50)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--passes", type=int, default=20)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="kukeon-storage-bench-"))
    daemon = PrivateContainerd(
        base / "containerd", binary=shutil.which("containerd") or "containerd"
    )
    try:
        daemon.start()
        asyncio.run(run(args, base, daemon))
    finally:
        daemon.teardown()  # runs its own event loop: after ours ended
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
