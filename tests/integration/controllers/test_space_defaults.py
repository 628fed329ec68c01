"""Space defaults reach the containers that leave the fields unset, and only those."""

from __future__ import annotations

import pytest

from kukeon.api import Kind
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container, exec_in

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
