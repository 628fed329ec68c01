"""speccheck: the builder's host-independent checks, run without a host or an image.

Each case is a container the node's builder refuses; the API's check must find the same
field for the same reason (it runs the builder's own functions), and a container the
builder accepts must pass it.
"""

from __future__ import annotations

from typing import Any

import pytest

from kukeon.api import ContainerSpec
from kukeon.runtime.containerd.spec import RuntimeSpecError
from kukeon.runtime.containerd.speccheck import EXEC_STRING_MAX, container_errors
from kukeon.runtime.containerd.types import ImageConfig
from tests.unit.runtime.test_spec import build, make_container

REFUSED: list[tuple[dict[str, Any], str, str]] = [
    # runc's init starts in the cwd: a leaked descriptor there reaches the host (CVE-2024-21626).
    ({"workingDir": "/proc/self/fd/7"}, "workingDir", "inside /proc"),
    ({"workingDir": "/proc"}, "workingDir", "inside /proc"),
    ({"workingDir": "/srv/../proc/self/cwd"}, "workingDir", "inside /proc"),
    ({"capabilities": {"add": ["CAP_FLY"]}}, "capabilities.add[0]", "unknown capability"),
    ({"capabilities": {"drop": ["nope"]}}, "capabilities.drop[0]", "unknown capability"),
    ({"securityOpts": ["apparmor=x"]}, "securityOpts[0]", "unsupported security option"),
    ({"securityOpts": ["seccomp=/p"]}, "securityOpts[0]", "only seccomp=unconfined"),
    ({"user": "a:b:c"}, "user", "must be user, uid, user:group or uid:gid"),
    ({"user": "99999999999"}, "user", "out of range"),
    ({"user": "1000:99999999999"}, "user", "out of range"),
    ({"user": "a b"}, "user", "is not a user or group name"),
    ({"tmpfs": [{"path": "/"}]}, "tmpfs[0].path", "root directory"),
    ({"tmpfs": [{"path": "/proc"}]}, "tmpfs[0].path", "/proc"),
    ({"tmpfs": [{"path": "/dev/"}]}, "tmpfs[0].path", "cannot replace /dev"),
    (
        {"volumes": [{"kind": "tmpfs", "target": "/dev"}]},
        "volumes[0].target",
        "cannot replace /dev",
    ),
    ({"volumes": [{"source": "/srv", "target": "/"}]}, "volumes[0].target", "root directory"),
    ({"volumes": [{"source": "/proc", "target": "/proc"}]}, "volumes[0].target", "/proc"),
    # runc binds nothing inside /proc but the files lxcfs emulates (checkProcMount).
    ({"volumes": [{"source": "/srv", "target": "/proc/sys"}]}, "volumes[0].target", "inside /proc"),
    ({"volumes": [{"source": "/a", "target": "/proc/1/x/"}]}, "volumes[0].target", "inside /proc"),
    # A process's own part of /proc: runc would mask it in its own process's directory.
    ({"tmpfs": [{"path": "/proc/1"}]}, "tmpfs[0].path", "a process's own"),
    ({"tmpfs": [{"path": "/proc/self/net"}]}, "tmpfs[0].path", "a process's own"),
    ({"tmpfs": [{"path": "/proc/thread-self"}]}, "tmpfs[0].path", "a process's own"),
    ({"tmpfs": [{"path": "/proc/net"}]}, "tmpfs[0].path", "a process's own"),
    ({"volumes": [{"kind": "tmpfs", "target": "/proc/42/fd"}]}, "volumes[0].target", "own"),
    (
        {"secrets": [{"name": "s", "fromEnv": "S", "mountPath": "/proc/self/s"}]},
        "secrets[0].mountPath",
        "inside /proc",
    ),
    ({"tmpfs": [{"path": "/x", "options": ["bogus"]}]}, "tmpfs[0].options[0]", "not a tmpfs"),
    ({"tmpfs": [{"path": "/x", "options": ["exec=1"]}]}, "tmpfs[0].options[0]", "not a tmpfs"),
    ({"tmpfs": [{"path": "/x", "options": ["size=1q"]}]}, "tmpfs[0].options[0]", "not a valid"),
    ({"tmpfs": [{"path": "/x", "options": ["mode=999"]}]}, "tmpfs[0].options[0]", "not a valid"),
    # What the kernel refuses at the mount (runc: 'invalid argument', the cell's
    # UnexpectedError before) or reads otherwise than written (a wrapped or octal count).
    ({"tmpfs": [{"path": "/x", "options": ["nr_inodes=10%"]}]}, "tmpfs[0].options[0]", "valid"),
    ({"tmpfs": [{"path": "/x", "options": ["nr_blocks=10%"]}]}, "tmpfs[0].options[0]", "valid"),
    ({"tmpfs": [{"path": "/x", "options": ["huge=deny"]}]}, "tmpfs[0].options[0]", "not a valid"),
    ({"tmpfs": [{"path": "/x", "options": ["huge=force"]}]}, "tmpfs[0].options[0]", "not a valid"),
    (
        {"tmpfs": [{"path": "/x", "options": ["nr_inodes=99999999999999999"]}]},
        "tmpfs[0].options[0]",
        "at most 18014398509481983 inodes",
    ),
    (
        {"tmpfs": [{"path": "/x", "options": ["nr_blocks=9223372036854775808"]}]},
        "tmpfs[0].options[0]",
        "at most 9223372036854775807 blocks",
    ),
    (
        {"tmpfs": [{"path": "/x", "options": ["size=18446744073709551616"]}]},
        "tmpfs[0].options[0]",
        "wraps round",
    ),
    ({"tmpfs": [{"path": "/x", "options": ["size=8e"]}]}, "tmpfs[0].options[0]", "wraps round"),
    (
        {"tmpfs": [{"path": "/x", "options": ["size=" + "9" * 5000]}]},
        "tmpfs[0].options[0]",
        "5005 characters",
    ),
    (
        {"tmpfs": [{"path": "/x", "options": ["size=99999999999999%"]}]},
        "tmpfs[0].options[0]",
        "at most 10000%",
    ),
    ({"tmpfs": [{"path": "/x", "options": ["size=0100k"]}]}, "tmpfs[0].options[0]", "octal"),
    ({"tmpfs": [{"path": "/x", "options": ["uid=010"]}]}, "tmpfs[0].options[0]", "octal"),
    ({"tmpfs": [{"path": "/x", "options": ["gid=4294967295"]}]}, "tmpfs[0].options[0]", "no id"),
    (
        {"volumes": [{"source": "/a", "target": "/data"}], "tmpfs": [{"path": "/data"}]},
        "tmpfs[0].path",
        "used twice",
    ),
    (
        {
            "volumes": [{"source": "/a", "target": "/run/secrets/db"}],
            "secrets": [{"name": "db", "fromEnv": "DB", "mountPath": "/run/secrets/db"}],
        },
        "secrets[0].mountPath",
        "used twice",
    ),
    # Paths the runtime owns: refused for every kind of mount, the field naming the path.
    (
        {
            "secrets": [
                {"name": "a", "fromEnv": "A", "mountPath": "/run/a"},
                {"name": "b", "fromEnv": "B", "mountPath": "/dev"},
            ]
        },
        "secrets[1].mountPath",
        "cannot stand at /dev",
    ),
    (
        {"secrets": [{"name": "s", "fromEnv": "S", "mountPath": "/dev/null"}]},
        "secrets[0].mountPath",
        "a device",
    ),
    ({"tmpfs": [{"path": "/dev/null"}]}, "tmpfs[0].path", "a device"),
    ({"tmpfs": [{"path": "/dev/pts"}]}, "tmpfs[0].path", "devpts"),
    ({"volumes": [{"kind": "tmpfs", "target": "/dev/fd"}]}, "volumes[0].target", "link"),
    ({"tmpfs": [{"path": "/sys"}]}, "tmpfs[0].path", "sysfs"),
    ({"volumes": [{"source": "/srv", "target": "/sys/"}]}, "volumes[0].target", "sysfs"),
    ({"tmpfs": [{"path": "/sys/fs/cgroup"}]}, "tmpfs[0].path", "cgroup"),
    (
        {"secrets": [{"name": "s", "fromEnv": "S", "mountPath": "/sys/fs/cgroup/x"}]},
        "secrets[0].mountPath",
        "cgroup",
    ),
    (
        {"secrets": [{"name": "s", "fromEnv": "S", "mountPath": "/run/kukeon/tty"}]},
        "secrets[0].mountPath",
        "tty wrapper's state",
    ),
    ({"tmpfs": [{"path": "/run/kukeon/tty/x"}]}, "tmpfs[0].path", "tty wrapper's state"),
    (
        {"volumes": [{"source": "/a", "target": "/run/kukeon/tty"}]},
        "volumes[0].target",
        "tty wrapper's state",
    ),
]


@pytest.mark.parametrize(("fields", "field", "reason"), REFUSED)
def test_the_api_check_and_the_node_refuse_the_same_field(
    fields: dict[str, Any], field: str, reason: str
) -> None:
    container = make_container(**fields)
    errors = container_errors(container)
    assert [(e.field, reason in e.reason) for e in errors] == [(field, True)], errors
    secret_files = {s.mount_path: "/state/x" for s in container.secrets if s.mount_path}
    with pytest.raises(RuntimeSpecError) as info:
        build(container, secret_files=secret_files)
    assert info.value.field == field
    assert reason in info.value.reason


ACCEPTED: list[dict[str, Any]] = [
    {},
    {"workingDir": "/procfs"},
    {"workingDir": "/srv/proc/self"},
    {"user": "app"},
    {"user": "1000:50"},
    {"user": "2147483647"},
    {"capabilities": {"drop": ["ALL"], "add": ["net_bind_service", "CAP_CHOWN"]}},
    {"securityOpts": ["no-new-privileges", "seccomp:unconfined", "no-new-privileges=false"]},
    {"tmpfs": [{"path": "/dev/shm", "options": ["size=64m", "mode=1777", "exec"]}]},
    {"tmpfs": [{"path": "/proc/sys"}]},
    {"volumes": [{"source": "/srv/lxcfs/proc/uptime", "target": "/proc/uptime"}]},
    {"tmpfs": [{"path": "/x", "options": ["size=50%", "nr_inodes=1k", "uid=1000", "gid=0"]}]},
    {"tmpfs": [{"path": "/x", "options": ["noatime", "tmpcopyup", "huge=within_size"]}]},
    {"tmpfs": [{"path": "/x", "options": ["mpol=bind:0-1", "mode=01777", "ro"]}]},
    # The kernel's bounds themselves; size=0 and nr_inodes=0 are its "no limit".
    {"tmpfs": [{"path": "/x", "options": ["size=9223372036854775807", "nr_inodes=0"]}]},
    {"tmpfs": [{"path": "/x", "options": ["size=7e", "uid=4294967294", "gid=0"]}]},
    {"tmpfs": [{"path": "/x", "options": ["size=10000%", "nr_inodes=18014398509481983"]}]},
    {"tmpfs": [{"path": "/x", "options": ["size=0", "nr_blocks=9223372036854775807"]}]},
    {"tmpfs": [{"path": "/x", "sizeBytes": 9223372036854775807}]},
    {"volumes": [{"source": "/dev", "target": "/dev"}]},
    {"volumes": [{"kind": "tmpfs", "target": "/data", "mode": 0o755}]},
    # Under /dev and /sys what runc does not make works: kept.
    {"tmpfs": [{"path": "/dev/foo"}, {"path": "/dev/mqueue"}, {"path": "/sys/firmware"}]},
    {"volumes": [{"source": "/dev/null", "target": "/dev/null"}]},
    {"volumes": [{"source": "/dev/pts", "target": "/dev/pts"}]},
    {"secrets": [{"name": "s", "fromEnv": "S", "mountPath": "/dev/shm/s"}]},
    {"tmpfs": [{"path": "/run/kukeon"}, {"path": "/run/kukeon/other"}]},
]


@pytest.mark.parametrize("fields", ACCEPTED)
def test_what_the_node_builds_passes(fields: dict[str, Any]) -> None:
    container = make_container(**fields)
    assert container_errors(container) == []
    build(container)


def test_every_mistake_is_reported_at_once() -> None:
    container = ContainerSpec.model_validate(
        {
            "id": "web",
            "image": "busybox",
            "user": "a:b:c",
            "capabilities": {"add": ["FLY"]},
            "securityOpts": ["label=x"],
            "tmpfs": [{"path": "/proc"}],
        }
    )
    fields = sorted(e.field for e in container_errors(container))
    assert fields == ["capabilities.add[0]", "securityOpts[0]", "tmpfs[0].path", "user"]


def test_every_mount_mistake_is_named_at_once() -> None:
    # The node's builder stops at the first; the API names each, as Kubernetes does.
    container = ContainerSpec.model_validate(
        {
            "id": "web",
            "image": "busybox",
            "tmpfs": [
                {"path": "/proc"},
                {"path": "/data", "options": ["nosuchoption"]},
                {"path": "/sys"},
                {"path": "/cache"},
            ],
            "volumes": [
                {"source": "/srv", "target": "/proc/1/x"},
                {"kind": "tmpfs", "target": "/cache"},
            ],
        }
    )
    fields = sorted(e.field for e in container_errors(container))
    assert fields == [
        "tmpfs[0].path",
        "tmpfs[1].options[0]",
        "tmpfs[2].path",
        "tmpfs[3].path",  # /cache twice: named by the later one (volumes come first)
        "volumes[0].target",
    ], fields


def test_a_non_ascii_digit_user_is_a_name_not_a_crash() -> None:
    """'²'.isdigit() is true and int('²') raises: the builder must treat it as a name."""
    container = make_container(user="²")
    assert container_errors(container) == []
    with pytest.raises(RuntimeSpecError, match="not found in the image's /etc/passwd"):
        build(container)


@pytest.mark.parametrize(
    "user",
    [
        *["-1", "-1:0", "0:-1", "+1", "-app", "app:-staff", "4294967295", "a b", "a:b:c", "x\t"],
        *["2147483648", "0:4294967294"],  # beyond runc's 0-2147483647: its create failed
    ],
)
def test_a_user_no_node_could_find_is_refused_naming_the_field(user: str) -> None:
    """`-1` passed the API and failed on the node: not found in the image's /etc/passwd."""
    errors = container_errors(make_container(user=user))
    assert [e.field for e in errors] == ["user"], user


@pytest.mark.parametrize(
    "user", ["app", "1000", "1000:1000", "app:staff", "0", "2147483647", "app-1", "_x", "a.b"]
)
def test_the_users_that_work_stay_accepted(user: str) -> None:
    assert container_errors(make_container(user=user)) == []


def test_a_network_alias_must_be_a_host_name() -> None:
    # The node writes aliases into /etc/hosts files; what is not a host name failed the
    # cell's pass there (and is left out of its peers' files).
    container = make_container(networksAliases=["db", "api.internal", "a b", "-x", "y" * 70])
    errors = container_errors(container)
    assert [e.field for e in errors] == [
        "networksAliases[2]",
        "networksAliases[3]",
        "networksAliases[4]",
    ]
    assert "not a valid host name" in errors[0].reason
    assert container_errors(make_container(networksAliases=["db", "api.internal"])) == []


def test_an_exec_string_linux_would_refuse_is_refused() -> None:
    # execve fails with E2BIG on one string over MAX_ARG_STRLEN: the container started and
    # exited 1 ("argument list too long") on every node, whatever the image.
    big = "x" * EXEC_STRING_MAX
    container = make_container(command=big + "x", args=["ok", big + "é"], env=[f"A={big}"])
    errors = container_errors(container)
    assert [e.field for e in errors] == ["command", "args[1]", "env[0]"]
    assert "argument list too long" in errors[0].reason
    fits = make_container(command="sh", args=[big], env=[f"A={big[2:]}"])
    assert container_errors(fits) == []


@pytest.mark.parametrize(
    ("volume", "field"),
    [
        ({"source": "/srv", "target": "/data", "mode": 0o700}, "volumes[0].mode"),
        ({"source": "/srv", "target": "/data", "sizeBytes": 4096}, "volumes[0].sizeBytes"),
    ],
)
def test_a_bind_volume_refuses_the_tmpfs_fields(volume: dict[str, Any], field: str) -> None:
    """A bind mount has its source's size and permissions: mode and sizeBytes were stored and
    never used (found applying a manifest with mode: 0700 on a bind volume)."""
    errors = container_errors(make_container(volumes=[volume]))
    assert [e.field for e in errors] == [field]
    assert "is for a tmpfs volume" in errors[0].reason
    # Zero, what Go writes for an unset number, is let through; tmpfs takes both.
    unset = {**volume, "mode": 0} if "mode" in volume else {**volume, "sizeBytes": 0}
    assert container_errors(make_container(volumes=[unset])) == []
    tmpfs = {"kind": "tmpfs", "target": "/data", "mode": 0o700, "sizeBytes": 4096}
    assert container_errors(make_container(volumes=[tmpfs])) == []
    both = {**tmpfs, "kind": "bind", "source": "/srv"}
    errors = container_errors(make_container(volumes=[both]))
    assert [e.field for e in errors] == ["volumes[0].sizeBytes", "volumes[0].mode"]


def test_a_tmpfs_size_given_twice_is_refused() -> None:
    """The options' size= won and sizeBytes was dropped without a word."""
    twice = make_container(tmpfs=[{"path": "/t", "sizeBytes": 1048576, "options": ["size=2m"]}])
    errors = container_errors(twice)
    assert [e.field for e in errors] == ["tmpfs[0].sizeBytes"]
    assert "'size=2m'" in errors[0].reason
    once = make_container(tmpfs=[{"path": "/t", "sizeBytes": 1048576, "options": ["noexec"]}])
    assert container_errors(once) == []


@pytest.mark.parametrize("limit", [1 << 20, 2 << 20, 4 << 20, (6 << 20) - 1])
def test_a_memory_limit_runc_cannot_start_under_is_refused(limit: int) -> None:
    """1 MiB was a 201, then runc's 'unable to set memory limit to 1048576 (current usage:
    2371584 ...)' as the cell's UnexpectedError; 2 MiB started and was OOM-killed at once."""
    errors = container_errors(make_container(resources={"memoryLimitBytes": limit}))
    assert [e.field for e in errors] == ["resources.memoryLimitBytes"]
    assert "at least 6291456 bytes" in errors[0].reason
    assert "runc" in errors[0].reason


@pytest.mark.parametrize("limit", [0, 6 << 20, 2**63 - 1])
def test_a_memory_limit_at_or_above_the_floor_passes(limit: int) -> None:
    assert container_errors(make_container(resources={"memoryLimitBytes": limit})) == []


@pytest.mark.parametrize(
    ("fields", "field", "reason"),
    [
        # resolved and staged by name: both got the second's value
        (
            {"secrets": [{"name": "db", "fromEnv": "A"}, {"name": "db", "fromEnv": "B"}]},
            "secrets[1].name",
            "also secrets[0]'s",
        ),
        (
            {
                "secrets": [
                    {"name": "a", "fromEnv": "A", "mountPath": "/s/a"},
                    {"name": "a", "fromEnv": "B", "mountPath": "/s/b"},
                ]
            },
            "secrets[1].name",
            "also secrets[0]'s",
        ),
        # one mount point: the last one won
        (
            {
                "secrets": [
                    {"name": "a", "fromEnv": "A", "mountPath": "/s"},
                    {"name": "b", "fromEnv": "B", "mountPath": "/s"},
                ]
            },
            "secrets[1].mountPath",
            "also secrets[0]'s",
        ),
        # the secret's variable replaced the env entry
        (
            {"env": ["X=1", "TOKEN=plain"], "secrets": [{"name": "TOKEN", "fromEnv": "T"}]},
            "secrets[0].name",
            "also set by env[1]",
        ),
    ],
)
def test_a_secret_given_twice_is_refused(fields: dict[str, Any], field: str, reason: str) -> None:
    errors = container_errors(make_container(**fields))
    assert [(e.field, reason in e.reason) for e in errors] == [(field, True)], errors


def test_secrets_of_their_own_pass() -> None:
    container = make_container(
        env=["TOKEN_FILE=/s/token"],
        secrets=[
            {"name": "TOKEN", "fromEnv": "T"},
            {"name": "token", "fromEnv": "T", "mountPath": "/s/token"},
            {"name": "TOKEN_FILE_2", "fromEnv": "T"},
        ],
    )
    assert container_errors(container) == []


def test_a_capability_added_and_dropped_is_refused() -> None:
    """Built add then drop: the add was ignored without a word."""
    both = make_container(capabilities={"add": ["CHOWN", "net_admin"], "drop": ["CAP_NET_ADMIN"]})
    errors = container_errors(both)
    assert [e.field for e in errors] == ["capabilities.add[1]"]
    assert "capabilities.drop[0]" in errors[0].reason
    # all but one, and only one: both mean something
    all_but = make_container(capabilities={"add": ["ALL"], "drop": ["NET_ADMIN"]})
    only = make_container(capabilities={"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]})
    assert container_errors(all_but) == []
    assert container_errors(only) == []


@pytest.mark.parametrize("workdir", ["/proc/self/fd/8", "proc/1/cwd", "/proc"])
def test_an_images_workdir_in_proc_fails_the_container_on_the_node(workdir: str) -> None:
    image = ImageConfig(cmd=("sh",), working_dir=workdir)
    with pytest.raises(RuntimeSpecError) as info:
        build(make_container(), image_config=image)
    assert info.value.field == "workingDir"
    assert "the image's WORKDIR" in info.value.reason
    assert "inside /proc" in info.value.reason
    # The container's own workingDir takes its place and the container starts.
    build(make_container(workingDir="/srv"), image_config=image)
