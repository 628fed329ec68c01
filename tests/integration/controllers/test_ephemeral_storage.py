"""`resources.ephemeralStorageLimitBytes`: a container that writes past it into its own root
filesystem (its writable layer, containerd's overlay upper directory) is evicted as the
kubelet evicts: stopped, its status and a Warning Event saying `Evicted` with its usage and
limit, and not restarted whatever its restart policy; a container under its limit runs on.
The same limit bounds the inodes (one per 4 KiB of it): empty files take no byte of it.
"""

from __future__ import annotations

import asyncio

import pytest

from kukeon.api import Cell, ContainerState, Kind
from kukeon.runtime.dirusage import MAX_DEPTH
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, check_storage_every_second, container

pytestmark = pytest.mark.integration

LIMIT = 4 * 1024 * 1024
FILL = "dd if=/dev/zero of=/fill bs=1M count={mib} && sync; exec sleep 1000"


async def test_a_container_writing_past_its_limit_is_evicted(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    check_storage_every_second(k)
    resources = {"ephemeralStorageLimitBytes": LIMIT}
    over = container(
        k, "app", script=FILL.format(mib=16), resources=resources, restartPolicy="always",
        restartBackoffSeconds=1,
    )  # fmt: skip
    under = container(
        k, "app", script=FILL.format(mib=1), resources=resources, restartPolicy="always"
    )
    await k.apply(cell_doc(k, "small", [under], terminationGracePeriodSeconds=1))
    small = await k.wait_for(Kind.CELL, cell_key(k, "small"), state="Ready")
    assert isinstance(small, Cell)
    await k.apply(cell_doc(k, "fill", [over], terminationGracePeriodSeconds=1))

    evicted = await k.wait_for(
        Kind.CELL,
        cell_key(k, "fill"),
        until=lambda c: (
            bool(c.status.containers) and c.status.containers[0].state == ContainerState.FAILED
        ),
        within=60,
    )
    assert isinstance(evicted, Cell)
    status = evicted.status.containers[0]
    assert status.reason == "Evicted"
    message = status.message or ""
    assert "container app used" in message
    assert f"over its limit of {LIMIT} bytes" in message
    used = int(message.split(" used ")[1].split(" bytes")[0])
    assert used > LIMIT

    # Not restarted under `always` (a restart would find its layer full and write on).
    await asyncio.sleep(4)
    later = await k.registry.get(Kind.CELL, cell_key(k, "fill"))
    assert isinstance(later, Cell)
    assert later.status.containers[0].state == ContainerState.FAILED
    assert later.status.containers[0].restart_count == 0
    assert later.status.containers[0].reason == "Evicted"

    # The container under its limit runs on, the same task.
    still = await k.registry.get(Kind.CELL, cell_key(k, "small"))
    assert isinstance(still, Cell)
    kept = still.status.containers[0]
    assert kept.state == ContainerState.RUNNING
    assert kept.pid == small.status.containers[0].pid
    assert kept.restart_count == 0

    assert k.daemon.events is not None
    store = k.daemon.events

    async def evictions() -> list[tuple[str, str, str]]:
        listed = (await store.list(k.realm)).items
        return [
            (e.involved_object.name, str(e.type), e.message)
            for e in listed
            if str(e.reason) == "Evicted"
        ]

    for _ in range(50):  # the recorder writes beside the handlers
        if await evictions():
            break
        await asyncio.sleep(0.2)
    found = await evictions()
    assert [(name, kind) for name, kind, _ in found] == [("fill", "Warning")]
    assert f"over its limit of {LIMIT} bytes" in found[0][2]


async def _evicted_message(k: Kukeond, name: str) -> str:
    evicted = await k.wait_for(
        Kind.CELL,
        cell_key(k, name),
        until=lambda c: (
            bool(c.status.containers) and c.status.containers[0].state == ContainerState.FAILED
        ),
        within=90,
    )
    assert isinstance(evicted, Cell)
    status = evicted.status.containers[0]
    assert status.reason == "Evicted", status
    return status.message or ""


async def test_what_a_container_writes_into_its_tty_state_directory_counts(
    kukeond: Kukeond,
) -> None:
    """/run/kukeon/tty (tty.onInit, tty.logFile) is a directory of the host's, in kukeond's
    state directory: a container held to 4 MiB wrote 16 MiB there and ran on."""
    k = kukeond
    await k.hierarchy()
    check_storage_every_second(k)
    box = container(
        k,
        "app",
        script="dd if=/dev/zero of=/run/kukeon/tty/fill bs=1M count=16 && sync; exec sleep 1000",
        resources={"ephemeralStorageLimitBytes": LIMIT},
        attachable=True,
        tty={"onInit": [{"script": "true"}]},
    )
    await k.apply(cell_doc(k, "tty", [box], terminationGracePeriodSeconds=1))
    message = await _evicted_message(k, "tty")
    assert "(its writable layer and its tty state directory /run/kukeon/tty)" in message
    assert f"over its limit of {LIMIT} bytes" in message
    assert int(message.split(" used ")[1].split(" bytes")[0]) > 16 * 1024 * 1024


NESTED = """cd /tmp
p=$(for i in $(seq {levels}); do printf '{name}/'; done)
mkdir -p t1/$p t2/$p && dd if=/dev/zero of=t2/${{p}}fill bs=1M count=16 && mv t2 t1/$p && sync
exec sleep 1000"""
"""Two trees of `levels` directories, the second with 16 MiB at its bottom moved to the
bottom of the first: the file lies past PATH_MAX, where containerd's walk of the layer
fails ('file name too long'), so the container was never evicted."""


async def test_a_layer_nested_past_path_max_is_evicted(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    check_storage_every_second(k)
    resources = {"ephemeralStorageLimitBytes": LIMIT}
    cells = {
        "long": NESTED.format(levels=12, name="d" * 200),  # 24 levels, ~4,800 characters
        # 300 levels (kukeond walks 256), ~4,500 characters; fewer than the 1,000 the
        # fixtures' shutil.rmtree recurses through when it removes containerd's root.
        "deep": NESTED.format(levels=150, name="a" * 14),
    }
    for name, script in cells.items():
        box = container(k, "app", script=script, resources=resources)
        await k.apply(cell_doc(k, name, [box], terminationGracePeriodSeconds=1))
    measured = await _evicted_message(k, "long")
    assert f"over its limit of {LIMIT} bytes" in measured
    assert int(measured.split(" used ")[1].split(" bytes")[0]) > 16 * 1024 * 1024
    refused = await _evicted_message(k, "deep")
    assert f"nests directories more than {MAX_DEPTH} levels deep" in refused


EMPTY_FILES = """mkdir -p {directory} && cd {directory} && i=0
while [ $i -lt {count} ]; do : > f$i; i=$((i+1)); done && sync; exec sleep 1000"""
"""`count` empty files in `directory`: no data block, one inode each."""


async def test_empty_files_past_the_inodes_a_limit_allows_are_evicted(kukeond: Kukeond) -> None:
    """A container held to 1 MiB created 5,000 empty files (in its layer, or in
    /run/kukeon/tty) and stayed Ready: millions would exhaust the node's inodes."""
    k = kukeond
    await k.hierarchy()
    check_storage_every_second(k)
    limit = 1024 * 1024  # 256 inodes
    resources = {"ephemeralStorageLimitBytes": limit}
    tty: dict[str, object] = {"attachable": True, "tty": {"onInit": [{"script": "true"}]}}
    scripts = {
        "layer": (EMPTY_FILES.format(directory="/many", count=5000), {}),
        "tty": (EMPTY_FILES.format(directory="/run/kukeon/tty/many", count=5000), tty),
        "few": (EMPTY_FILES.format(directory="/few", count=100), tty),
    }
    for name, (script, extra) in scripts.items():
        box = container(k, "app", script=script, resources=resources, **extra)
        await k.apply(cell_doc(k, name, [box], terminationGracePeriodSeconds=1))
    for name, counted in (("layer", "its writable layer"), ("tty", "its tty state directory")):
        message = await _evicted_message(k, name)
        assert "container app held " in message, message
        assert counted in message
        assert f"over the 256 its ephemeral-storage limit of {limit} bytes allows" in message
        assert int(message.split(" held ")[1].split(" inodes")[0]) > 256
    few = await k.wait_for(Kind.CELL, cell_key(k, "few"), state="Ready")
    assert isinstance(few, Cell)
    await asyncio.sleep(2)  # two more measurements: 100 files are within 256 inodes
    still = await k.registry.get(Kind.CELL, cell_key(k, "few"))
    assert isinstance(still, Cell)
    assert still.status.containers[0].state == ContainerState.RUNNING
    assert still.status.containers[0].pid == few.status.containers[0].pid
