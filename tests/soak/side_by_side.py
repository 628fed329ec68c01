"""Two kukeon control planes on one host for ten minutes, each collecting orphans.

The promise of issue 15 ("a node touches only what it made") held over time: two kukeonds,
each with its own etcd, state directory, cgroup root, nft table and subnet pool, but the
same containerd and the host's default network-namespace and CNI configuration directories
(as a second control plane installed by hand would have), and the very same realm, space,
stack and cell names. For the whole run both collect their orphans every few seconds, and
both create and delete cells of the same names; every long-lived cell must keep its task
(same pid, no restart), its namespace (with `lo` up) and the address its status names.

Ten minutes cost no CI time: `tests/fixtures/soak.py` starts this program when the session
begins and the test `test_two_control_planes.py::test_ten_minutes_side_by_side` reads its
verdict at the end, so meanwhile the rest of the suite (with its own kukeonds and their
collectors, the quickstart's system kukeond included) runs beside it.

    python -m tests.soak.side_by_side --seconds 600 --result /tmp/verdict.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import signal
import subprocess
import tempfile
import time
import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kukeon.api import Cell, Kind
from kukeon.daemon.app import Daemon
from kukeon.daemon.config import DaemonConfig
from kukeon.runtime.cgroups import open_driver
from kukeon.runtime.network import (
    NetnsManager,
    NftEgress,
    bridge_name,
    cell_network_id,
    delete_link,
    network_id_prefix,
)
from kukeon.runtime.network.space import space_conflist_path
from tests.fixtures.containerd import BusyboxImage, PrivateContainerd, build_test_image
from tests.fixtures.etcd import EtcdServer, running_etcd_server
from tests.fixtures.kukeond import Kukeond, kukeond_config
from tests.fixtures.services import require_binary
from tests.integration.controllers.helpers import cell_doc, cell_key, container

log = logging.getLogger("kukeon.soak")

REALM = "soak"
SPACE = "s1"
LONG_LIVED = ("web-0", "web-1")
ROUND_SECONDS = 4.0
CHURN_EVERY = 3
"""Rounds between two churns (a job cell created in both planes, the previous one deleted)."""


class BrokenPromiseError(AssertionError):
    """A promise broke; the message says which and where."""


@dataclass
class Plane:
    label: str
    kukeond: Kukeond
    etcd: EtcdServer
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def controllers(self) -> Any:
        controllers = self.kukeond.daemon.controllers
        assert controllers is not None
        return controllers

    def netns(self, cell: str) -> Path:
        name = cell_network_id(cell_key(self.kukeond, cell), self.kukeond.config.instance)
        path: Path = self.controllers.host.networks.netns.path(name)
        return path


@dataclass
class Tally:
    rounds: int = 0
    collections: int = 0
    jobs: int = 0
    removed: list[str] = field(default_factory=list)


def _ip_words(netns: Path, *args: str) -> str:
    return subprocess.run(
        ["nsenter", f"--net={netns}", "ip", "-o", *args],
        capture_output=True,
        text=True,
        check=False,
    ).stdout


async def _addresses(netns: Path) -> set[str]:
    shown = await asyncio.to_thread(_ip_words, netns, "-4", "addr", "show", "dev", "eth0")
    return {str(ipaddress.ip_interface(word).ip) for word in shown.split() if "/" in word}


async def _lo_up(netns: Path) -> bool:
    shown = await asyncio.to_thread(_ip_words, netns, "link", "show", "lo")
    return ",UP" in shown


async def _task_pid(plane: Plane, cell: str) -> int:
    k = plane.kukeond
    return await k.containerd.tasks(k.namespace).pid(f"{SPACE}_st1_{cell}_a")


async def _check_cell(plane: Plane, cell: str) -> None:
    k = plane.kukeond
    where = f"{plane.label}: cell {cell}"
    found = await k.registry.get(Kind.CELL, cell_key(k, cell))
    assert isinstance(found, Cell)
    if str(found.status.state) != "Ready":
        raise BrokenPromiseError(f"{where} is {found.status.state}: {found.status.message}")
    restarts = [c.restart_count for c in found.status.containers]
    if any(restarts):
        raise BrokenPromiseError(f"{where} restarted: {restarts}")
    netns = plane.netns(cell)
    if not await asyncio.to_thread(netns.exists):
        raise BrokenPromiseError(f"{where} lost its network namespace {netns}")
    if not await _lo_up(netns):
        raise BrokenPromiseError(f"{where}: lo is down in {netns}")
    addresses = await _addresses(netns)
    ip = found.status.network.ip
    if ip not in addresses:
        raise BrokenPromiseError(f"{where}: status says {ip}, eth0 has {addresses}")
    if cell in plane.pids and await _task_pid(plane, cell) != plane.pids[cell]:
        raise BrokenPromiseError(f"{where}: its task was replaced")


async def _start_plane(
    label: str,
    base: Path,
    *,
    containerd: PrivateContainerd,
    image: BusyboxImage,
    stack: contextlib.AsyncExitStack,
) -> Plane:
    etcd = stack.enter_context(running_etcd_server())
    config = kukeond_config(base, containerd=containerd, etcd=etcd, prefix=f"/soak-{label}")
    # The host's default directories, shared with any other kukeon on this host.
    defaults = DaemonConfig.model_fields
    config = config.model_copy(
        update={
            "netns_dir": defaults["netns_dir"].default,
            "cni_conf_dir": defaults["cni_conf_dir"].default,
        }
    )
    daemon = Daemon(config)
    await daemon.start()
    stack.push_async_callback(_remove_plane, config)
    stack.push_async_callback(daemon.stop)
    assert daemon.registry is not None
    k = Kukeond(daemon=daemon, config=config, registry=daemon.registry, realm=REALM, image=image)
    return Plane(label=label, kukeond=k, etcd=etcd)


async def _remove_plane(config: DaemonConfig) -> None:
    """What a failed run may have left of this plane, and only of this plane (containerd's
    own teardown empties its namespaces)."""
    netns = NetnsManager(directory=config.netns_dir)
    prefix = network_id_prefix(config.instance)
    for name in await netns.list():
        if name.startswith(prefix):
            with contextlib.suppress(Exception):
                await netns.remove(name)
    with contextlib.suppress(Exception):
        await delete_link(bridge_name(REALM, SPACE, config.instance))
    with contextlib.suppress(Exception):
        await NftEgress(table=config.nft_table).remove(
            bridge=bridge_name(REALM, SPACE, config.instance)
        )
    with contextlib.suppress(Exception):
        await open_driver(root=config.cgroup_root).remove_root()
    conflist = space_conflist_path(
        conf_dir=config.cni_conf_dir, realm=REALM, space=SPACE, instance=config.instance
    )
    conflist.unlink(missing_ok=True)


async def _delete_realm(plane: Plane) -> None:
    k = plane.kukeond
    await k.registry.delete(Kind.REALM, (REALM,), cascade=True)
    await k.wait_gone(Kind.REALM, (REALM,), within=120)


async def _leftovers(plane: Plane) -> list[str]:
    config = plane.kukeond.config
    prefix = network_id_prefix(config.instance)
    netns = await NetnsManager(directory=config.netns_dir).list()
    left = [name for name in netns if name.startswith(prefix)]
    namespaces = await plane.kukeond.containerd.namespaces.list()
    left += [n.name for n in namespaces if n.name == plane.kukeond.namespace]
    bridge = bridge_name(REALM, SPACE, config.instance)
    if await asyncio.to_thread(Path("/sys/class/net", bridge).exists):
        left.append(bridge)
    conflist = space_conflist_path(
        conf_dir=config.cni_conf_dir, realm=REALM, space=SPACE, instance=config.instance
    )
    if await asyncio.to_thread(conflist.exists):
        left.append(str(conflist))
    return left


async def soak(seconds: float, work: Path, tally: Tally) -> None:
    require_binary("nsenter", "util-linux")
    async with contextlib.AsyncExitStack() as stack:
        binary = require_binary("containerd", "containerd")
        containerd = PrivateContainerd(work / "containerd", binary=binary)
        await asyncio.to_thread(containerd.start)
        stack.callback(containerd.teardown)
        image = await asyncio.to_thread(build_test_image, work)
        planes = [
            await _start_plane(label, work / label, containerd=containerd, image=image, stack=stack)
            for label in ("a", "b")
        ]
        a, b = planes
        if a.kukeond.namespace == b.kukeond.namespace:
            raise BrokenPromiseError(f"both planes use containerd namespace {a.kukeond.namespace}")
        for plane in planes:
            k = plane.kukeond
            await k.hierarchy(space=SPACE)
            for cell in LONG_LIVED:
                await k.apply(cell_doc(k, cell, [container(k, "a")]))
        for plane in planes:
            k = plane.kukeond
            for cell in LONG_LIVED:
                await k.wait_for(Kind.CELL, cell_key(k, cell), state="Ready")
                plane.pids[cell] = await _task_pid(plane, cell)
                await _check_cell(plane, cell)
        log.info("both planes up; soaking for %.0f s", seconds)

        deadline = time.monotonic() + seconds
        job: str | None = None
        while time.monotonic() < deadline:
            tally.rounds += 1
            for plane in planes:
                removed = await plane.controllers.collect_orphans()
                tally.collections += 1
                tally.removed += [f"{plane.label}: {what}" for what in removed]
            if tally.rounds % CHURN_EVERY == 0:
                job = await _churn(planes, job, tally)
            for plane in planes:
                for cell in LONG_LIVED:
                    await _check_cell(plane, cell)
            await asyncio.sleep(ROUND_SECONDS)

        # One plane's realm goes entirely: the other's cells of the same names stay.
        await _delete_realm(a)
        for cell in LONG_LIVED:
            await _check_cell(b, cell)
        await _delete_realm(b)
        for plane in planes:
            left = await _leftovers(plane)
            if left:
                raise BrokenPromiseError(f"{plane.label}: left behind after its realm went: {left}")


async def _churn(planes: list[Plane], previous: str | None, tally: Tally) -> str:
    """A job cell of one name in both planes; the previous job goes in both."""
    job = f"job-{tally.jobs}"
    tally.jobs += 1
    for plane in planes:
        k = plane.kukeond
        await k.apply(cell_doc(k, job, [container(k, "a")]))
    for plane in planes:
        k = plane.kukeond
        await k.wait_for(Kind.CELL, cell_key(k, job), state="Ready", within=120)
        await _check_cell(plane, job)
    if previous is not None:
        for plane in planes:
            await plane.kukeond.registry.delete(Kind.CELL, cell_key(plane.kukeond, previous))
        for plane in planes:
            await plane.kukeond.wait_gone(Kind.CELL, cell_key(plane.kukeond, previous), within=120)
    return job


@contextlib.asynccontextmanager
async def _stopped_by_sigterm() -> AsyncIterator[None]:
    """SIGTERM (the test session ending early) cancels the run, so its cleanup still runs."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def main(seconds: float, result: Path) -> int:
    tally = Tally()
    started = time.monotonic()
    failure: str | None = None
    with tempfile.TemporaryDirectory(prefix="kukeon-soak-") as work:
        try:
            async with _stopped_by_sigterm():
                await soak(seconds, Path(work), tally)
        except asyncio.CancelledError:
            failure = "interrupted (SIGTERM) before the end"
        except Exception as error:
            failure = f"{type(error).__name__}: {error}"
            log.error("soak failed:\n%s", traceback.format_exc())
    verdict = {
        "ok": failure is None,
        "failure": failure,
        "seconds": round(time.monotonic() - started, 1),
        "soakSeconds": seconds,
        "rounds": tally.rounds,
        "collections": tally.collections,
        "jobs": tally.jobs,
        "removedByCollectors": tally.removed,
    }
    partial = result.with_suffix(".tmp")
    partial.write_text(json.dumps(verdict, indent=2))
    partial.replace(result)
    return 0 if failure is None else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--result", type=Path, required=True)
    arguments = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    raise SystemExit(asyncio.run(main(arguments.seconds, arguments.result)))
