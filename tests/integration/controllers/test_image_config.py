"""An image's config and a container's user, command and env run as docker runs them.

Each image is the busybox test image with a Dockerfile's worth more (tests/fixtures/
derivedimage.py): its own /etc/passwd and /etc/group, `USER`, `ENTRYPOINT`, `CMD`, `ENV`,
`WORKDIR`. What the containers run as is read from their init's /proc files.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest

from kukeon.api import DesiredCellState, Kind
from kukeon.runtime.network.hosts import NODE_HOSTS, NODE_HOSTS_HEADER
from tests.fixtures.containerd import SLEEPER_SCRIPT
from tests.fixtures.derivedimage import derived_image
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container, exec_in, update_cell
from .test_stop_start import logged

pytestmark = pytest.mark.integration

# No root entry: docker gives root (and any uid the image does not list) HOME=/.
PASSWD = (
    b"user:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534::/nonexistent:/bin/false\n"
)
GROUP = b"root:x:0:\naudio:x:29:user\nvideo:x:44:nobody,user\nuser:x:1000:\nnogroup:x:65534:\n"


async def import_image(k: Kukeond, tmp_path: Path, name: str, **changes: Any) -> str:
    """``name``: the busybox test image with ``changes`` (derived_image's), in the realm."""
    await k.hierarchy()
    return await import_derived(k, tmp_path, name, **changes)


async def import_derived(k: Kukeond, tmp_path: Path, name: str, **changes: Any) -> str:
    """``import_image`` into a realm made already (several at once: an archive each)."""
    file = tmp_path / (name.replace("/", "_").replace(":", "_") + ".tar")
    archive = derived_image(k.image.archive, file, name, **changes)
    controllers = k.daemon.controllers
    assert controllers is not None
    await controllers.images.import_archive(namespace=k.namespace, path=archive)
    return name


async def init_facts(k: Kukeond, cid: str) -> tuple[dict[str, str], dict[str, str]]:
    """The container's init: its /proc/1/status fields and its environment."""
    code, status = await exec_in(k, cid, "cat", "/proc/1/status")
    assert code == 0, status
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    code, environ = await exec_in(k, cid, "sh", "-c", "tr '\\0' '\\n' < /proc/1/environ")
    assert code == 0, environ
    env = dict(line.split("=", 1) for line in environ.splitlines() if "=" in line)
    return {key: value.strip() for key, value in fields.items()}, env


async def test_user_groups_home_and_hostname_as_docker(kukeond: Kukeond, tmp_path: Path) -> None:
    k = kukeond
    image = await import_image(
        k,
        tmp_path,
        "kukeon.io/test/users:1",
        config={"User": "user"},
        files={"/etc/passwd": PASSWD, "/etc/group": GROUP},
    )

    def sleeper(cid: str, **fields: Any) -> dict[str, Any]:
        return {
            "id": cid,
            "image": image,
            "command": "sh",
            "args": ["-c", SLEEPER_SCRIPT],
            **fields,
        }

    containers = [
        sleeper("imageuser"),  # the image's USER, its groups from /etc/group
        sleeper("explicit", user="user:user"),  # a group named: that group only
        sleeper("root", user="0"),  # no passwd entry: HOME=/
        sleeper("unlisted", user="4242"),
        sleeper("ownhost", env=["HOSTNAME=mine"]),
    ]
    await k.apply(cell_doc(k, "users", containers))
    await k.wait_for(Kind.CELL, cell_key(k, "users"), state="Ready")

    def ids(status: dict[str, str], field: str) -> list[str]:
        return status[field].split()

    status, env = await init_facts(k, "s1_st1_users_imageuser")
    assert (ids(status, "Uid")[0], ids(status, "Gid")[0]) == ("1000", "1000")
    assert sorted(ids(status, "Groups"), key=int) == ["29", "44"]
    assert env["HOME"] == "/home/user"
    assert env["HOSTNAME"] == "users"  # docker's and the CRI's HOSTNAME

    status, env = await init_facts(k, "s1_st1_users_explicit")
    assert (ids(status, "Uid")[0], ids(status, "Gid")[0]) == ("1000", "1000")
    assert ids(status, "Groups") in ([], ["1000"]), status["Groups"]  # docker -u user:user

    status, env = await init_facts(k, "s1_st1_users_root")
    assert (ids(status, "Uid")[0], ids(status, "Gid")[0]) == ("0", "0")
    assert env["HOME"] == "/"

    status, env = await init_facts(k, "s1_st1_users_unlisted")
    assert (ids(status, "Uid")[0], ids(status, "Gid")[0]) == ("4242", "0")
    assert ids(status, "Groups") in ([], ["0"]), status["Groups"]
    assert env["HOME"] == "/"

    _, env = await init_facts(k, "s1_st1_users_ownhost")
    assert env["HOSTNAME"] == "mine"


async def test_a_host_network_container_is_named_as_its_node(kukeond: Kukeond) -> None:
    """docker's `--network host` and the CRI's hostNetwork pod: the node's host name (in
    `hostname`, HOSTNAME and /etc/hostname; it was the cell's name, and /etc/hostname the
    image's) and a copy of the node's /etc/hosts (it was the image's: the test image has none, so
    not even localhost). In a UTS namespace of its own, as docker's: a privileged one that
    sets its host name does not rename the node."""
    k = kukeond
    await k.hierarchy()
    node = socket.gethostname()
    containers = [container(k, "h", hostNetwork=True), container(k, "p", hostNetwork=True)]
    containers[1]["privileged"] = True
    await k.apply(cell_doc(k, "hostnet", containers))
    await k.wait_for(Kind.CELL, cell_key(k, "hostnet"), state="Ready")
    _, env = await init_facts(k, "s1_st1_hostnet_h")
    assert env["HOSTNAME"] == node
    for argv, expected in (
        (("hostname",), node),
        (("cat", "/etc/hostname"), node),
        (("cat", "/etc/hosts"), (NODE_HOSTS_HEADER + NODE_HOSTS.read_text()).strip()),
        (("readlink", "/proc/1/ns/net"), os.readlink("/proc/self/ns/net")),
    ):
        code, output = await exec_in(k, "s1_st1_hostnet_h", *argv)
        assert (code, output.strip()) == (0, expected), argv
    code, uts = await exec_in(k, "s1_st1_hostnet_p", "readlink", "/proc/1/ns/uts")
    assert code == 0, uts
    assert uts.strip() != os.readlink("/proc/self/ns/uts")  # before any rename is tried
    code, output = await exec_in(k, "s1_st1_hostnet_p", "hostname", "kukeon-h230-renamed")
    assert code == 0, output
    code, output = await exec_in(k, "s1_st1_hostnet_p", "hostname")
    assert (code, output.strip()) == (0, "kukeon-h230-renamed")
    assert socket.gethostname() == node


async def test_entrypoint_cmd_env_and_workdir_of_the_image(
    kukeond: Kukeond, tmp_path: Path
) -> None:
    """What already matched docker and Kubernetes: command replaces the entrypoint and
    drops the cmd, args replace the cmd; env over the image's, the last of a name wins; a
    WORKDIR the image lacks is made; PATH defaults when nothing sets it."""
    k = kukeond
    image = await import_image(
        k,
        tmp_path,
        "kukeon.io/test/entry:1",
        config={
            "Entrypoint": ["sh", "-c", 'echo "$0 $*" > /tmp/argv; ' + SLEEPER_SCRIPT],
            "Cmd": ["from-cmd", "second"],
            "Env": ["FROM_IMAGE=i", "OVERRIDDEN=image", "EQ=a=b"],
            "WorkingDir": "/srv/not/in/the/image",
        },
    )
    containers: list[dict[str, Any]] = [
        {"id": "plain", "image": image},
        {"id": "args", "image": image, "args": ["mine"]},
        {
            "id": "command",
            "image": image,
            "command": "sh",
            "args": ["-c", SLEEPER_SCRIPT],
            "env": ["OVERRIDDEN=spec", "TWICE=first", "EMPTY=", "TWICE=last"],
        },
    ]
    await k.apply(cell_doc(k, "entry", containers))
    await k.wait_for(Kind.CELL, cell_key(k, "entry"), state="Ready")

    code, output = await exec_in(k, "s1_st1_entry_plain", "cat", "/tmp/argv")
    assert (code, output.strip()) == (0, "from-cmd second")
    code, output = await exec_in(k, "s1_st1_entry_args", "cat", "/tmp/argv")
    assert (code, output.strip()) == (0, "mine")
    code, output = await exec_in(k, "s1_st1_entry_command", "cat", "/proc/1/cmdline")
    assert output.split("\0")[:2] == ["sh", "-c"], output

    _, env = await init_facts(k, "s1_st1_entry_plain")
    assert (env["FROM_IMAGE"], env["OVERRIDDEN"], env["EQ"]) == ("i", "image", "a=b")
    assert env["PATH"] == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    code, output = await exec_in(k, "s1_st1_entry_plain", "sh", "-c", "readlink /proc/1/cwd")
    assert (code, output.strip()) == (0, "/srv/not/in/the/image")

    _, env = await init_facts(k, "s1_st1_entry_command")
    assert (env["OVERRIDDEN"], env["TWICE"], env["EMPTY"]) == ("spec", "last", "")


async def test_an_image_env_entry_without_equals_unsets_it(
    kukeond: Kukeond, tmp_path: Path
) -> None:
    """docker and containerd read an image's `Env` entry `NAME` (no `=`) as unsetting
    NAME: not passed on (it was `NAME=`), and no default of it (HOSTNAME here)."""
    k = kukeond
    image = await import_image(
        k, tmp_path, "kukeon.io/test/bare-env:1", config={"Env": ["KEEP=1", "BARE", "HOSTNAME"]}
    )
    await k.apply(cell_doc(k, "bare", [container(k, "a", image=image)]))
    await k.wait_for(Kind.CELL, cell_key(k, "bare"), state="Ready")
    code, environ = await exec_in(
        k, "s1_st1_bare_a", "sh", "-c", "tr '\\0' '\\n' < /proc/1/environ"
    )
    assert code == 0, environ
    names = [line.partition("=")[0] for line in environ.splitlines()]
    assert "KEEP=1" in environ.splitlines()
    assert "BARE" not in names
    assert "HOSTNAME" not in names
    assert "PATH" in names


async def test_a_real_time_stop_signal_as_systemd_images_name_it(
    kukeond: Kukeond, tmp_path: Path
) -> None:
    """`STOPSIGNAL SIGRTMIN+3` (systemd's, kindest/node's) stops the container with signal
    37, as docker sends it; a container's own `stopSignal: RTMAX-1` likewise (63)."""
    k = kukeond
    image = await import_image(
        k, tmp_path, "kukeon.io/test/systemd-like:1", config={"StopSignal": "SIGRTMIN+3"}
    )
    script = (
        'for n in 37 63; do trap "echo got $n; exit 0" $n; done; '
        "trap 'echo got TERM; exit 0' TERM; echo up; while :; do sleep 0.1; done"
    )
    own = container(k, "a", script=script, image=image, stopSignal="RTMAX-1")
    await k.apply(cell_doc(k, "rtmin", [container(k, "a", script=script, image=image)]))
    await k.apply(cell_doc(k, "rtmax", [own]))
    for cell in ("rtmin", "rtmax"):
        await k.wait_for(Kind.CELL, cell_key(k, cell), state="Ready")
        await logged(k, cell, "up")  # its traps are set (a signal before them is lost)
        await update_cell(k, cell_key(k, cell), spec={"desired_state": DesiredCellState.STOPPED})
    for cell, expected in (("rtmin", "got 37"), ("rtmax", "got 63")):
        await k.wait_for(Kind.CELL, cell_key(k, cell), state="Stopped", within=30)
        await logged(k, cell, expected)


async def test_kill_sends_a_real_time_signal_by_dockers_name(kukeond: Kukeond) -> None:
    """`kukectl kill -s SIGRTMIN+3` (docker kill's name) reaches the container as 37; the
    route answers with docker's name of what it sent."""
    from tests.integration.daemon.test_node_routes import API, session

    k = kukeond
    await k.hierarchy()
    script = "trap 'echo got 37; exit 0' 37; echo up; while :; do sleep 0.1; done"
    await k.apply(cell_doc(k, "killed", [container(k, "a", script=script)]))
    await k.wait_for(Kind.CELL, cell_key(k, "killed"), state="Ready")
    await logged(k, "killed", "up")
    url = f"{API}/realms/{k.realm}/spaces/s1/stacks/st1/cells/killed/kill"
    async with session(k) as http, http.post(url, params={"signal": "SIGRTMIN+3"}) as response:
        assert response.status == 200, await response.text()
        assert await response.json() == {"signal": "SIGRTMIN+3", "containers": ["a"]}
    await logged(k, "killed", "got 37")
