"""Run containers from the imported test image on a real containerd + runc."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest

from kukeon.runtime.containerd import (
    Subscribed,
    TaskExited,
    TaskIO,
    TaskOOM,
    task_lifecycle_filters,
)
from kukeon.runtime.containerd.crilog import LogRecord, parse_lines, plain_text
from tests.fixtures.services import require_binary
from tests.integration.containerd.helpers import Runner

pytestmark = pytest.mark.integration

HOST_HAS_INTERRUPTS = Path("/proc/interrupts").exists()


async def test_exit_status_and_both_streams_in_the_log(runner: Runner) -> None:
    status, log = await runner.run_to_exit(
        {"command": "sh", "args": ["-c", "echo out; echo err >&2; exit 3"]}, name="exit"
    )
    assert status.code == 3
    assert status.exited_at is not None
    assert "out" in log.splitlines()
    assert "err" in log.splitlines()


async def test_every_line_of_both_streams_of_200_short_lived_containers(runner: Runner) -> None:
    """The shim's logger loses nothing: each container writes one line to each stream and
    exits at once, the worst case for output still in a pipe at exit."""
    gate = asyncio.Semaphore(6)

    async def one(n: int) -> tuple[int, list[LogRecord]]:
        async with gate:
            script = f"echo out-{n}; echo err-{n} >&2; exit {n % 7}"
            status, _text = await runner.run_to_exit(
                {"command": "sh", "args": ["-c", script]}, name=f"short{n}"
            )
        logs = sorted(runner.log_dir.glob(f"short{n}-*.log"))
        assert len(logs) == 1
        return status.code, list(parse_lines(logs[0].read_bytes().splitlines()))

    results = await asyncio.gather(*(one(n) for n in range(200)))
    for n, (code, records) in enumerate(results):
        assert code == n % 7
        assert [(r.stream, r.text) for r in records if r.stream == "stdout"] == [
            ("stdout", f"out-{n}".encode())
        ]
        assert [(r.stream, r.text) for r in records if r.stream == "stderr"] == [
            ("stderr", f"err-{n}".encode())
        ]
        assert all(r.time is not None and not r.partial for r in records)


async def test_second_container_joins_the_first_ones_network_namespace(runner: Runner) -> None:
    tasks = runner.client.tasks(runner.namespace)
    first, _first_log = await runner.create({"command": "sleep", "args": ["300"]}, name="root")
    await tasks.start(first)
    pid = await tasks.pid(first)
    # An address added inside the first container's netns makes that netns recognisable.
    marker = f"192.0.2.{secrets.randbelow(200) + 20}"
    await _run(
        "nsenter", f"--net=/proc/{pid}/ns/net", "ip", "addr", "add", f"{marker}/32", "dev", "lo"
    )

    # What the first container sees, through an exec'd process.
    exec_log = runner.log_dir / "exec.log"
    first_spec = (await runner.client.containers(runner.namespace).get(first)).spec
    process = {**first_spec["process"], "args": ["ip", "addr"], "terminal": False}
    await tasks.exec(first, "ipaddr", process=process, io=TaskIO.log_file(exec_log))
    exec_exit = asyncio.ensure_future(tasks.wait(first, exec_id="ipaddr"))
    await tasks.start(first, exec_id="ipaddr")
    assert (await asyncio.wait_for(exec_exit, 30)).code == 0
    await tasks.delete_process(first, "ipaddr")
    seen_by_first = plain_text(exec_log.read_bytes())

    status, seen_by_second = await runner.run_to_exit(
        {"command": "ip", "args": ["addr"]},
        name="joiner",
        netns_path=f"/proc/{pid}/ns/net",
    )
    assert status.code == 0
    assert marker in seen_by_first
    assert seen_by_second == seen_by_first

    stopped = await tasks.stop(first, grace_period=1.0)
    assert stopped.code == 137  # sleep as PID 1 ignores SIGTERM: escalated to SIGKILL


async def test_memory_limit_oom_kills_and_the_oom_event_arrives(runner: Runner) -> None:
    events = runner.client.events.subscribe(*task_lifecycle_filters(namespace=runner.namespace))
    received: list[object] = []
    subscribed = asyncio.Event()

    async def collect() -> None:
        async for event in events:
            received.append(event)
            if isinstance(event, Subscribed):
                subscribed.set()
            if isinstance(event, TaskExited):
                return

    container_id, _log = await runner.create(
        {
            "command": "sh",
            "args": ["-c", "tail /dev/zero"],
            "resources": {"memoryLimitBytes": 32 * 1024 * 1024},
        },
        name="oom",
    )
    collecting = asyncio.ensure_future(collect())
    await asyncio.wait_for(subscribed.wait(), 30)
    tasks = runner.client.tasks(runner.namespace)
    waiting = asyncio.ensure_future(tasks.wait(container_id))
    await tasks.start(container_id)
    status = await asyncio.wait_for(waiting, 60)
    await asyncio.wait_for(collecting, 30)
    await events.aclose()

    assert status.code == 137
    ooms = [e for e in received if isinstance(e, TaskOOM)]
    assert [e.container_id for e in ooms][:1] == [container_id]
    exits = [e for e in received if isinstance(e, TaskExited)]
    assert exits[-1].container_id == container_id
    assert exits[-1].exit_status == 137
    leaf = Path("/sys/fs/cgroup/memory") / runner.cgroup.path.lstrip("/") / container_id
    assert int((leaf / "memory.limit_in_bytes").read_text()) == 32 * 1024 * 1024
    await tasks.delete(container_id)
    assert not leaf.exists()  # runc removes the task's own leaf with the task


async def test_read_only_rootfs_user_capabilities_and_tmpfs_from_inside(runner: Runner) -> None:
    script = (
        "id -u; id -g; "
        "if touch /probe 2>/dev/null; then echo rootfs-writable; else echo rootfs-read-only; fi; "
        "touch /scratch/probe && echo tmpfs-writable; "
        "grep ' /scratch ' /proc/mounts; "
        "grep CapBnd /proc/self/status"
    )
    status, log = await runner.run_to_exit(
        {
            "command": "sh",
            "args": ["-c", script],
            "user": "1000:1000",
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["CHOWN", "NET_RAW"]},
            "tmpfs": [{"path": "/scratch", "sizeBytes": 1048576}],
        },
        name="locked",
    )
    assert status.code == 0, log
    lines = log.splitlines()
    assert lines[0:2] == ["1000", "1000"]
    assert "rootfs-read-only" in lines
    assert "tmpfs-writable" in lines
    scratch = next(line for line in lines if " /scratch " in line)
    assert scratch.split()[2] == "tmpfs"
    bounding = int(next(line for line in lines if line.startswith("CapBnd")).split()[1], 16)
    assert bounding != 0
    assert not bounding & (1 << 0)  # CAP_CHOWN
    assert not bounding & (1 << 13)  # CAP_NET_RAW
    assert bounding & (1 << 10)  # CAP_NET_BIND_SERVICE is kept by default


async def test_host_interfaces_are_masked_and_read_only_from_inside(runner: Runner) -> None:
    """What containerd and Docker hide from an unprivileged container is hidden here too:
    masked files read empty, masked directories list nothing, /proc/sys refuses writes."""
    script = (
        "for f in /proc/kcore /proc/keys /proc/interrupts /proc/timer_list; do "
        '  [ -e $f ] && echo "$f $(wc -c < $f)"; done; '
        'echo "firmware $(ls -A /sys/firmware | wc -l)"; '
        "if echo 1 > /proc/sys/kernel/sysrq 2>/dev/null; then echo sysctl-writable; "
        "else echo sysctl-read-only; fi"
    )
    status, log = await runner.run_to_exit({"command": "sh", "args": ["-c", script]}, name="masked")
    assert status.code == 0, log
    lines = log.splitlines()
    sizes = dict(line.split() for line in lines if line.startswith(("/proc", "firmware")))
    assert HOST_HAS_INTERRUPTS  # the mask, not the kernel, is what hides it
    assert sizes["/proc/interrupts"] == "0", log
    assert sizes["firmware"] == "0", log
    assert set(sizes.values()) == {"0"}, log
    assert "sysctl-read-only" in lines, log


NAMESPACE_PROBE = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *what, long pid) {
    if (pid == 0) _exit(0);
    if (pid < 0) { printf("%s errno %d\n", what, errno); return; }
    waitpid((pid_t)pid, NULL, 0);
    printf("%s ok\n", what);
}
static void *thread(void *arg) { return arg; }

int main(void) {
    struct clone_args args;
    pthread_t t;
    report("clone-newuser", syscall(SYS_clone, CLONE_NEWUSER | CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0));
    memset(&args, 0, sizeof args);
    args.flags = CLONE_NEWUSER;
    args.exit_signal = SIGCHLD;
    report("clone3-newuser", syscall(SYS_clone3, &args, sizeof args));
    report("fork", fork());
    int made = pthread_create(&t, NULL, thread, NULL) == 0 && pthread_join(t, NULL) == 0;
    printf("thread %s\n", made ? "ok" : "failed");
    return 0;
}
"""


async def test_no_namespace_of_its_own_without_sys_admin(runner: Runner, tmp_path: Path) -> None:
    """A container without CAP_SYS_ADMIN makes no namespace: unshare was refused, but
    clone(CLONE_NEWUSER|CLONE_NEWNET) gave it every capability over a network namespace
    of its own (CAP_NET_ADMIN: nf_tables, the kernel code the levels keep for privileged).
    fork and threads still work (glibc falls back from clone3's ENOSYS to clone)."""
    compiler = require_binary("cc", "gcc")
    source = tmp_path / "probe.c"
    source.write_text(NAMESPACE_PROBE)
    await _run(compiler, "-static", "-O2", "-o", str(tmp_path / "probe"), str(source), "-pthread")
    status, log = await runner.run_to_exit(
        {
            "command": "/probe/probe",
            "volumes": [{"source": str(tmp_path), "target": "/probe", "readOnly": True}],
        },
        name="clone",
    )
    assert status.code == 0, log
    lines = log.splitlines()
    assert "clone-newuser errno 1" in lines, log  # EPERM, as unshare
    assert "clone3-newuser errno 38" in lines, log  # ENOSYS: callers fall back to clone
    assert "fork ok" in lines, log
    assert "thread ok" in lines, log


async def _run(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {err.decode().strip()}")
