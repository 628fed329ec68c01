"""The session test_killed_session.py starts and SIGKILLs (not collected by itself).

One test brings up what a real session has on the host: the session's etcd and private
containerd, a container running under a cgroup of the test's (its shim outlives
containerd), an nft table, a network namespace, a bridge tagged with a node's alias and
its FORWARD accepts (noted as a kukeond of the session notes them), and a bind mount under
the session's temporary directory, each named through the fixtures' ``own_*`` functions
as the suite's fixtures do. It then writes what it made to the file
``$KUKEON_TEST_HELD_READY`` names, and waits to be killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
from pathlib import Path

from kukeon.runtime.containerd import ContainerdClient
from kukeon.runtime.network.forward import ForwardAccepts
from kukeon.runtime.network.veth import owner_alias
from tests.fixtures import sessions
from tests.fixtures.containerd import BusyboxImage, PrivateContainerd
from tests.fixtures.etcd import EtcdServer
from tests.fixtures.hostleaks import (
    own_directory,
    own_netns_prefix,
    own_nft_table,
    own_state_dir,
)
from tests.integration.containerd.helpers import Runner, new_test_cgroup

READY_ENV = "KUKEON_TEST_HELD_READY"


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


def _host_objects(tmp_path: Path) -> dict[str, str]:
    token = secrets.token_hex(3)
    table = f"kukeon_test_{token}"
    own_nft_table(table)
    _run("nft", "add", "table", "inet", table)
    prefix = f"kks-{token}-"
    own_netns_prefix(prefix)
    _run("ip", "netns", "add", f"{prefix}a")
    state_dir = tmp_path / "state"
    own_state_dir(state_dir)
    bridge = f"kks{token}"
    _run("ip", "link", "add", bridge, "type", "bridge")
    _run("ip", "link", "set", "dev", bridge, "alias", owner_alias(state_dir))
    own_directory(tmp_path)
    (tmp_path / "source").mkdir()
    (tmp_path / "bound").mkdir()
    _run("mount", "--bind", str(tmp_path / "source"), str(tmp_path / "bound"))
    return {
        "nft_table": table,
        "netns_prefix": prefix,
        "link_alias": owner_alias(state_dir),
        "bridge": bridge,
        "mount": str(tmp_path / "bound"),
    }


async def test_hold_host_objects_until_killed(
    etcd_server: EtcdServer,
    containerd_daemon: PrivateContainerd,
    containerd_client: ContainerdClient,
    containerd_namespace: str,
    containerd_image: str,
    containerd_test_image: BusyboxImage,
    tmp_path: Path,
) -> None:
    cgroup = new_test_cgroup()
    runner = Runner(
        client=containerd_client,
        namespace=containerd_namespace,
        image=containerd_image,
        archive=containerd_test_image.archive,
        cgroup=cgroup,
        log_dir=tmp_path,
    )
    container, _ = await runner.create({"command": "sleep", "args": ["1000"]}, name="held")
    tasks = containerd_client.tasks(containerd_namespace)
    await tasks.start(container)
    record = sessions.current()
    assert record is not None
    assert etcd_server.member.process is not None
    assert containerd_daemon.process is not None
    objects = _host_objects(tmp_path)
    await ForwardAccepts().allow(objects["bridge"])  # noted by the leak check's recorder
    made = {
        "record": str(record.directory),
        "etcd": etcd_server.member.process.pid,
        "etcd_root": str(etcd_server.root),
        "containerd": containerd_daemon.process.pid,
        "containerd_base": str(containerd_daemon.base),
        "shims": containerd_daemon.shim_pids(),
        "container": await tasks.pid(container),
        "cgroup_root": cgroup.path,
        **objects,
    }
    ready = Path(os.environ[READY_ENV])
    ready.with_suffix(".tmp").write_text(json.dumps(made))
    ready.with_suffix(".tmp").replace(ready)
    await asyncio.sleep(3600)
