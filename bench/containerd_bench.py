"""Benchmark of kukeon's containerd client: create + start + exit latency against ``ctr run --rm``.

Each sample runs ``sh -c true`` in the busybox test image (hack/make-test-image.sh) on a
private containerd 1.6 + runc started by the script (its own root, state and socket):

- kukeon: Containers.Create (with its rootfs snapshot, under a lease) → Tasks.Create
  (stdout/stderr to a file:// log) → Tasks.Wait + Tasks.Start → exit; then Tasks.Delete and
  Containers.Delete (with the snapshot). The OCI spec comes from ``build_runtime_spec``.
  "create→exit" is the time until the exit status is known; "cycle" adds the cleanup.
- ctr: ``ctr run --rm IMAGE ID sh -c true`` as a subprocess, wall time (which includes
  ctr's own start, ~10-20 ms, and its cleanup): compared with kukeon's "cycle".

Runs alternate (kukeon, ctr, kukeon, ...) so both see the same machine load.

    .venv/bin/python bench/containerd_bench.py --runs 50 [--output docs/benchmarks/containerd.md]
"""

from __future__ import annotations

import argparse
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from harness import IMAGE, make_test_image

from kukeon.api import ContainerSpec
from kukeon.runtime.containerd import ContainerdClient, TaskIO
from kukeon.runtime.containerd.spec import SpecContext, build_runtime_spec
from tests.fixtures.containerd import PrivateContainerd

NAMESPACE = "kukeon-bench"
COMMAND = ["sh", "-c", "true"]


@dataclass
class Samples:
    create_to_exit: list[float] = field(default_factory=list)
    cycle: list[float] = field(default_factory=list)
    ctr: list[float] = field(default_factory=list)
    # Steps of create_to_exit.
    container_create: list[float] = field(default_factory=list)
    task_create: list[float] = field(default_factory=list)
    start_to_exit: list[float] = field(default_factory=list)


@dataclass
class KukeonSample:
    container_create: float
    task_create: float
    start_to_exit: float
    cleanup: float


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


async def kukeon_run(
    client: ContainerdClient,
    *,
    number: int,
    spec_base: ContainerSpec,
    context_base: SpecContext,
    cgroup_parent: str,
    log_dir: Path,
) -> KukeonSample:
    container_id = f"kb-{number}-{secrets.token_hex(2)}"
    context = SpecContext(
        image_config=context_base.image_config,
        container_id=container_id,
        hostname=container_id,
        cgroups_path=f"{cgroup_parent}/{container_id}",
        passwd=context_base.passwd,
        group=context_base.group,
    )
    spec = build_runtime_spec(spec_base.model_copy(update={"id": container_id}), context=context)
    containers, tasks = client.containers(NAMESPACE), client.tasks(NAMESPACE)
    started = time.perf_counter()
    await containers.create(container_id, image=IMAGE, spec=spec)
    created = time.perf_counter()
    await tasks.create(container_id, io=TaskIO.log_file(log_dir / f"{container_id}.log"))
    task_created = time.perf_counter()
    waiting = asyncio.ensure_future(tasks.wait(container_id))
    await tasks.start(container_id)
    status = await waiting
    exited = time.perf_counter()
    await tasks.delete(container_id)
    await containers.delete(container_id)
    done = time.perf_counter()
    if status.code != 0:
        raise RuntimeError(f"{container_id} exited with {status.code}")
    return KukeonSample(
        container_create=created - started,
        task_create=task_created - created,
        start_to_exit=exited - task_created,
        cleanup=done - exited,
    )


async def ctr_run(ctr: str, address: str, *, number: int) -> float:
    container_id = f"cb-{number}-{secrets.token_hex(2)}"
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        ctr,
        "--address",
        address,
        "--namespace",
        NAMESPACE,
        "run",
        "--rm",
        IMAGE,
        container_id,
        *COMMAND,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _out, err = await process.communicate()
    elapsed = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"ctr run failed: {err.decode().strip()}")
    return elapsed


def read_layer_file(archive: Path, name: str) -> str:
    from tests.integration.containerd.helpers import image_etc_file

    return image_etc_file(archive, name)


async def bench(runs: int, warmup: int) -> tuple[Samples, str]:
    ctr = shutil.which("ctr")
    binary = shutil.which("containerd")
    if ctr is None or binary is None:
        raise SystemExit("containerd and ctr are needed (Debian package containerd)")
    base = Path(tempfile.mkdtemp(prefix="kukeon-ctrd-bench-"))
    daemon = PrivateContainerd(base / "containerd", binary=binary)
    cgroup_parent = f"/kukeon-bench-{secrets.token_hex(3)}"
    samples = Samples()
    try:
        await asyncio.to_thread(daemon.start)
        archive = await make_test_image(base / "busybox.tar")
        async with ContainerdClient(daemon.address) as client:
            version = (await client.version()).version
            await client.namespaces.ensure(NAMESPACE)
            await client.images(NAMESPACE).import_archive(archive)
            spec_base = ContainerSpec.model_validate(
                {"id": "bench", "image": IMAGE, "command": COMMAND[0], "args": COMMAND[1:]}
            )
            context_base = SpecContext(
                image_config=await client.images(NAMESPACE).config(IMAGE),
                container_id="bench",
                hostname="bench",
                cgroups_path=f"{cgroup_parent}/bench",
                passwd=read_layer_file(archive, "etc/passwd"),
                group=read_layer_file(archive, "etc/group"),
            )
            log_dir = base / "logs"
            for number in range(warmup + runs):
                sample = await kukeon_run(
                    client,
                    number=number,
                    spec_base=spec_base,
                    context_base=context_base,
                    cgroup_parent=cgroup_parent,
                    log_dir=log_dir,
                )
                ctr_elapsed = await ctr_run(ctr, daemon.address, number=number)
                if number >= warmup:
                    to_exit = sample.container_create + sample.task_create + sample.start_to_exit
                    samples.create_to_exit.append(to_exit)
                    samples.cycle.append(to_exit + sample.cleanup)
                    samples.container_create.append(sample.container_create)
                    samples.task_create.append(sample.task_create)
                    samples.start_to_exit.append(sample.start_to_exit)
                    samples.ctr.append(ctr_elapsed)
        return samples, version
    finally:
        await asyncio.to_thread(_cleanup, daemon, cgroup_parent, base)


def _cleanup(daemon: PrivateContainerd, cgroup_parent: str, base: Path) -> None:
    daemon.teardown()
    # ctr's tasks use its default cgroupsPath /<namespace>/<id>; runc removed the leaves.
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        for parent in (cgroup_parent, f"/{NAMESPACE}"):
            with contextlib.suppress(OSError):
                (hierarchy / parent.lstrip("/")).rmdir()
    with contextlib.suppress(OSError):
        (Path("/run/containerd/runc") / NAMESPACE).rmdir()
    shutil.rmtree(base, ignore_errors=True)


def report(samples: Samples, *, runs: int, version: str, command: str) -> str:
    rows = []
    ctr_p50, ctr_p95 = percentile(samples.ctr, 0.5), percentile(samples.ctr, 0.95)
    for label, values in (
        ("kukeon create→start→exit", samples.create_to_exit),
        ("kukeon full cycle (+ task/container/snapshot delete)", samples.cycle),
        ("`ctr run --rm` (subprocess wall time)", samples.ctr),
    ):
        p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
        rows.append(
            f"| {label} | {p50 * 1000:.1f} ms | {p95 * 1000:.1f} ms | "
            f"{p50 / ctr_p50:.2f} | {p95 / ctr_p95:.2f} |"
        )
    steps = [
        f"| {label} | {percentile(values, 0.5) * 1000:.1f} ms | "
        f"{percentile(values, 0.95) * 1000:.1f} ms |"
        for label, values in (
            (
                "Containers.Create (+ image check, snapshot Prepare, lease)",
                samples.container_create,
            ),
            ("Tasks.Create (shim + runc create)", samples.task_create),
            ("Tasks.Start → exit status", samples.start_to_exit),
        )
    ]
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return "\n".join(
        [
            "## containerd client (`bench/containerd_bench.py`)",
            "",
            "Command (from the repository root, as root; a private containerd is started by the",
            "script itself, with its own root/state/socket under a tmp dir):",
            "",
            "```",
            command,
            "```",
            "",
            f"Each of {runs} sequential samples runs `sh -c true` in the busybox test image",
            "(hack/make-test-image.sh), alternating kukeon and `ctr run --rm` so both see the same",
            "load. kukeon: Containers.Create (rootfs snapshot under a lease) → Tasks.Create",
            "(file:// log) → Wait + Start → exit status; the full cycle adds Tasks.Delete and",
            "Containers.Delete with its snapshot (what `ctr run --rm` also does). The spec comes",
            "from `build_runtime_spec`. ctr's wall time includes starting the ctr binary.",
            "",
            f"Run of {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, containerd {version}, runc "
            f"{_runc_version()}, {platform.machine()}, {os.cpu_count()} cores, load average "
            f"{load} at the end (the machine was shared with other test runs):",
            "",
            "| measure | p50 | p95 | p50 / ctr p50 | p95 / ctr p95 |",
            "|---|---|---|---|---|",
            *rows,
            "",
            "Where kukeon's create→exit time goes:",
            "",
            "| step | p50 | p95 |",
            "|---|---|---|",
            *steps,
            "",
        ]
    )


def _runc_version() -> str:
    try:
        output = subprocess.run(
            ["runc", "--version"], capture_output=True, text=True, check=False
        ).stdout
    except OSError:
        return "?"
    return output.split()[2] if output else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--output", type=Path, help="also write the markdown report here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: containerd and runc need it")
    samples, version = asyncio.run(bench(args.runs, args.warmup))
    command = ".venv/bin/python bench/containerd_bench.py " + " ".join(sys.argv[1:])
    text = report(samples, runs=args.runs, version=version, command=command.strip())
    print(text)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text)


if __name__ == "__main__":
    main()
