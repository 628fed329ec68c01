"""Space defaults reach the containers that leave the fields unset, and only those."""

from __future__ import annotations

import asyncio

import pytest

from kukeon.api import AnyResource, Cell, Kind, parse_resource, to_document
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container, exec_in, rewrite

pytestmark = pytest.mark.integration


def uid_of_pid_1(status: str, field: str = "Uid") -> str:
    """The real uid (or gid) of the container's init process, from /proc/1/status."""
    line = next(line for line in status.splitlines() if line.startswith(f"{field}:"))
    return line.split()[1]


async def test_space_defaults_read_only_root_and_user(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy(defaults={"container": {"readOnlyRootFilesystem": True, "user": "1000:1000"}})
    await k.apply(
        cell_doc(
            k,
            "envelope",
            [
                container(k, "plain"),
                container(k, "admin", user="0:0"),
                container(k, "named", user="user"),
            ],
        )
    )
    await k.wait_for(Kind.CELL, cell_key(k, "envelope"), state="Ready")

    # The container that sets neither field: uid 1000, read-only root.
    code, output = await exec_in(k, "s1_st1_envelope_plain", "cat", "/proc/1/status")
    assert code == 0, output
    assert uid_of_pid_1(output) == "1000"
    code, output = await exec_in(k, "s1_st1_envelope_plain", "id", "-u")
    assert (code, output.strip()) == (0, "1000")
    code, output = await exec_in(k, "s1_st1_envelope_plain", "touch", "/probe")
    assert code != 0
    assert "Read-only file system" in output

    # The one that sets user 0:0 runs as root; the root filesystem stays read-only.
    code, output = await exec_in(k, "s1_st1_envelope_admin", "cat", "/proc/1/status")
    assert code == 0, output
    assert uid_of_pid_1(output) == "0"
    code, output = await exec_in(k, "s1_st1_envelope_admin", "touch", "/probe")
    assert code != 0
    assert "Read-only file system" in output

    # A user name resolves through the image's /etc/passwd ("user" is 1000:1000 there).
    code, output = await exec_in(k, "s1_st1_envelope_named", "cat", "/proc/1/status")
    assert code == 0, output
    assert (uid_of_pid_1(output), uid_of_pid_1(output, "Gid")) == ("1000", "1000")


async def test_a_changed_default_reaches_running_cells_at_once(kukeond: Kukeond) -> None:
    """Not at the next periodic resync: the space's change requeues its cells, and only the
    containers whose effective spec changed are recreated."""
    k = kukeond
    await k.hierarchy(defaults={"container": {"readOnlyRootFilesystem": True}})
    await k.apply(
        cell_doc(
            k,
            "follower",
            [container(k, "inherits"), container(k, "pinned", readOnlyRootFilesystem=True)],
        )
    )
    ready = await k.wait_for(Kind.CELL, cell_key(k, "follower"), state="Ready")
    assert isinstance(ready, Cell)
    pids = {c.id: c.pid for c in ready.status.containers}
    code, output = await exec_in(k, "s1_st1_follower_inherits", "touch", "/probe")
    assert code != 0, output
    await asyncio.sleep(3)  # settled: no reconcile of the cell is pending any more

    def loosened(found: AnyResource) -> AnyResource:
        space = to_document(found)
        space["spec"]["defaults"] = {"container": {"readOnlyRootFilesystem": False}}
        return parse_resource(space)

    await rewrite(k, Kind.SPACE, (k.realm, "s1"), loosened)

    def recreated(cell: AnyResource) -> bool:
        assert isinstance(cell, Cell)
        now = {c.id: c.pid for c in cell.status.containers}
        return str(cell.status.state) == "Ready" and now["inherits"] not in (None, pids["inherits"])

    cell = await k.wait_for(Kind.CELL, cell_key(k, "follower"), until=recreated, within=30)
    assert isinstance(cell, Cell)
    assert {c.id: c.pid for c in cell.status.containers}["pinned"] == pids["pinned"]
    code, output = await exec_in(k, "s1_st1_follower_inherits", "touch", "/probe")
    assert code == 0, output
