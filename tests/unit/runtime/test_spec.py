"""build_runtime_spec: every branch, from ContainerSpec + SpecContext to OCI JSON, no host."""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
from typing import Any

import pytest

from kukeon.api import ContainerSpec
from kukeon.runtime.containerd.capabilities import CAPABILITY_NUMBERS, DEFAULT_CAPABILITIES
from kukeon.runtime.containerd.hostlookup import (
    RLIM_INFINITY,
    HostDevice,
    read_bounding_capabilities,
)
from kukeon.runtime.containerd.spec import (
    DEFAULT_MASKED_PATHS,
    DEFAULT_PATH,
    DEFAULT_READONLY_PATHS,
    LABEL_CELL,
    LABEL_CONTAINER,
    LABEL_MANAGED,
    LABEL_REALM,
    Rlimit,
    RuntimeSpecError,
    SpecContext,
    build_runtime_spec,
    container_labels,
    parse_device,
)
from kukeon.runtime.containerd.specdigest import digest_view
from kukeon.runtime.containerd.types import ImageConfig

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
app:x:1000:1000:App:/home/app:/bin/sh
nohome:x:1001:1001::
broken line
bad:x:notanumber:1:::
"""
GROUP = """\
root:x:0:
app:x:1000:
wheel:x:10:root,app
audio:x:29:app
video:x:44:
staff:x:50
bad:x:nan:app
"""
NULL_DEVICE = HostDevice(path="/dev/null", type="c", major=1, minor=3, file_mode=0o666)
FUSE_DEVICE = HostDevice(path="/dev/fuse", type="c", major=10, minor=229, file_mode=0o666)


def make_container(**fields: Any) -> ContainerSpec:
    return ContainerSpec.model_validate({"id": "web", "image": "busybox", **fields})


def make_context(**overrides: Any) -> SpecContext:
    base = SpecContext(
        image_config=ImageConfig(
            entrypoint=("/entry",),
            cmd=("serve", "--port", "80"),
            env=("PATH=/image/bin", "LANG=C.UTF-8", "SHARED=image"),
            working_dir="/srv",
        ),
        container_id="default-web-1",
        hostname="webcell",
        cgroups_path="/kukeon/r1/s1/st1/cell1/web",
        realm="r1",
        space="s1",
        stack="st1",
        cell="cell1",
        passwd=PASSWD,
        group=GROUP,
        machine="x86_64",
        available_capabilities=None,  # every capability, whatever this test machine has
    )
    return dataclasses.replace(base, **overrides)


def build(container: ContainerSpec | None = None, **overrides: Any) -> dict[str, Any]:
    spec = build_runtime_spec(container or make_container(), context=make_context(**overrides))
    json.dumps(spec)  # always JSON-serialisable
    return spec


def env_of(spec: dict[str, Any]) -> dict[str, str]:
    return dict(entry.split("=", 1) for entry in spec["process"]["env"])


def mounts_by_destination(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["destination"]: m for m in spec["mounts"]}


def namespace_types(spec: dict[str, Any]) -> list[str]:
    return [ns["type"] for ns in spec["linux"]["namespaces"]]


# --- skeleton -------------------------------------------------------------------------------


def test_skeleton() -> None:
    spec = build()
    assert spec["ociVersion"] == "1.0.2-dev"
    assert spec["root"] == {"path": "rootfs", "readonly": False}
    assert spec["hostname"] == "webcell"
    assert spec["linux"]["cgroupsPath"] == "/kukeon/r1/s1/st1/cell1/web"
    assert spec["process"]["terminal"] is False
    assert spec["process"]["noNewPrivileges"] is False
    assert "rlimits" not in spec["process"]
    assert "devices" not in spec["linux"]


def test_annotations_and_labels() -> None:
    spec = build(annotations={"extra": "1", LABEL_REALM: "overridden"})
    assert spec["annotations"] == {
        "extra": "1",
        LABEL_MANAGED: "true",
        LABEL_REALM: "r1",
        "kukeon.io/space": "s1",
        "kukeon.io/stack": "st1",
        LABEL_CELL: "cell1",
        LABEL_CONTAINER: "web",
    }
    assert container_labels(realm="a", space="b", stack="c", cell="d", container="e") == {
        LABEL_MANAGED: "true",
        LABEL_REALM: "a",
        "kukeon.io/space": "b",
        "kukeon.io/stack": "c",
        LABEL_CELL: "d",
        LABEL_CONTAINER: "e",
    }


# --- process args and cwd ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "args"),
    [
        ({}, ["/entry", "serve", "--port", "80"]),
        ({"args": ["debug"]}, ["/entry", "debug"]),
        ({"command": "/bin/sh"}, ["/bin/sh"]),
        ({"command": "/bin/sh", "args": ["-c", "echo hi"]}, ["/bin/sh", "-c", "echo hi"]),
    ],
)
def test_process_args_docker_semantics(fields: dict[str, Any], args: list[str]) -> None:
    assert build(make_container(**fields))["process"]["args"] == args


def test_image_cmd_without_entrypoint() -> None:
    spec = build(image_config=ImageConfig(cmd=("sh",)))
    assert spec["process"]["args"] == ["sh"]


def test_nothing_to_run_is_an_error() -> None:
    with pytest.raises(RuntimeSpecError) as info:
        build(image_config=ImageConfig())
    assert info.value.container == "web"
    assert info.value.field == "command"
    assert "container 'web': command: nothing to run" in str(info.value)


@pytest.mark.parametrize(
    ("working_dir", "image_dir", "cwd"),
    [
        ("/work", "/srv", "/work"),
        (None, "/srv", "/srv"),
        (None, "", "/"),
        (None, "relative/dir", "/relative/dir"),
        ("/a/b/../c", "", "/a/c"),
    ],
)
def test_working_dir(working_dir: str | None, image_dir: str, cwd: str) -> None:
    container = make_container(workingDir=working_dir)
    spec = build(container, image_config=ImageConfig(cmd=("sh",), working_dir=image_dir))
    assert spec["process"]["cwd"] == cwd


# --- environment ------------------------------------------------------------------------------


def test_env_merge_order_and_kukeon_identity() -> None:
    container = make_container(env=["SHARED=container", "KUKEON_REALM=mine", "NEW=1"])
    spec = build(container, secret_env={"TOKEN": "s3cret", "NEW": "from-secret"})
    env = env_of(spec)
    assert env["PATH"] == "/image/bin"  # the image's
    assert env["LANG"] == "C.UTF-8"
    assert env["SHARED"] == "container"  # container beats image
    assert env["KUKEON_REALM"] == "mine"  # the user's own env wins over kukeon's
    assert env["KUKEON_SPACE"] == "s1"
    assert env["KUKEON_STACK"] == "st1"
    assert env["KUKEON_CELL_NAME"] == "cell1"
    assert env["KUKEON_CONTAINER_ID"] == "web"
    assert env["KUKEON_CGROUP_PATH"] == "/kukeon/r1/s1/st1/cell1"  # the cell's, not the leaf
    assert env["TOKEN"] == "s3cret"
    assert env["NEW"] == "from-secret"
    assert env["HOME"] == "/root"
    # first appearance keeps its position, each key once
    keys = [entry.split("=", 1)[0] for entry in spec["process"]["env"]]
    assert keys[:3] == ["PATH", "LANG", "SHARED"]
    assert len(keys) == len(set(keys))


def test_env_defaults_and_empty_identity_skipped() -> None:
    spec = build(
        image_config=ImageConfig(cmd=("sh",)),
        realm="",
        cell_cgroup_path="/explicit/cell",
        terminal=True,
    )
    env = env_of(spec)
    assert env["PATH"] == DEFAULT_PATH
    assert "KUKEON_REALM" not in env
    assert env["KUKEON_CGROUP_PATH"] == "/explicit/cell"
    assert env["TERM"] == "xterm"
    assert spec["process"]["terminal"] is True


def test_env_value_with_equals_and_empty_value() -> None:
    env = env_of(build(make_container(env=["A=b=c", "EMPTY="])))
    assert env["A"] == "b=c"
    assert env["EMPTY"] == ""


# --- user -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "uid", "gid", "extra", "home"),
    [
        (None, 0, 0, [10], "/root"),
        ("0", 0, 0, [10], "/root"),
        ("app", 1000, 1000, [10, 29], "/home/app"),
        ("1000", 1000, 1000, [10, 29], "/home/app"),
        ("1000:1000", 1000, 1000, [], "/home/app"),
        ("app:audio", 1000, 29, [], "/home/app"),
        ("app:44", 1000, 44, [], "/home/app"),
        ("4242", 4242, 0, [], "/"),
        ("4242:4243", 4242, 4243, [], "/"),
        ("4242:video", 4242, 44, [], "/"),
        ("nohome", 1001, 1001, [], "/"),
        ("daemon", 1, 1, [], "/usr/sbin"),
    ],
)
def test_user_resolution(user: str | None, uid: int, gid: int, extra: list[int], home: str) -> None:
    spec = build(make_container(user=user))
    expected: dict[str, Any] = {"uid": uid, "gid": gid}
    if extra:
        expected["additionalGids"] = extra
    assert spec["process"]["user"] == expected
    assert env_of(spec)["HOME"] == home


def test_image_user_applies_when_container_sets_none() -> None:
    spec = build(image_config=ImageConfig(cmd=("sh",), user="app"))
    assert spec["process"]["user"]["uid"] == 1000


def test_container_home_env_wins() -> None:
    spec = build(make_container(user="app", env=["HOME=/data"]))
    assert env_of(spec)["HOME"] == "/data"


def test_numeric_user_without_passwd_file() -> None:
    spec = build(make_container(user="1000:1000"), passwd=None, group=None)
    assert spec["process"]["user"] == {"uid": 1000, "gid": 1000}


def test_root_without_passwd_entry_has_home_slash() -> None:
    # docker (runc's lookup): a uid the image does not list, root's too, has HOME=/.
    spec = build(passwd=None, group=None)
    assert spec["process"]["user"] == {"uid": 0, "gid": 0}
    assert env_of(spec)["HOME"] == "/"


def test_hostname_is_in_the_environment_unless_set() -> None:
    # docker and the CRI set HOSTNAME; the image's or the container's own wins.
    assert env_of(build())["HOSTNAME"] == "webcell"
    image = ImageConfig(cmd=("sh",), env=("HOSTNAME=from-image",))
    assert env_of(build(image_config=image))["HOSTNAME"] == "from-image"
    assert env_of(build(make_container(env=["HOSTNAME=mine"])))["HOSTNAME"] == "mine"


def test_the_default_hostname_is_not_in_the_spec_digest() -> None:
    # Stop 54's kukeond built no HOSTNAME: its containers' digests must stay what they were,
    # or upgrading kukeond re-creates every running container (docs/install.md: it does not).
    container, context = make_container(), make_context()
    spec = build_runtime_spec(container, context=context)
    view = digest_view(spec, container, context)
    assert "HOSTNAME" in env_of(spec)
    assert "HOSTNAME" not in env_of(view)
    assert view["process"]["env"] == [e for e in spec["process"]["env"] if e != "HOSTNAME=webcell"]
    assert {**view, "process": {**view["process"], "env": spec["process"]["env"]}} == spec
    # The container's own HOSTNAME (env, image, secret) is its spec's: in the digest.
    own = make_container(env=["HOSTNAME=webcell"])
    assert (
        digest_view(build_runtime_spec(own, context=context), own, context)["process"]["env"]
        == build_runtime_spec(own, context=context)["process"]["env"]
    )
    image = make_context(image_config=ImageConfig(cmd=("sh",), env=("HOSTNAME=webcell",)))
    spec = build_runtime_spec(container, context=image)
    assert digest_view(spec, container, image) == spec


@pytest.mark.parametrize(
    ("user", "passwd", "group", "field", "message"),
    [
        ("ghost", PASSWD, GROUP, "user", "user 'ghost' not found in the image's /etc/passwd"),
        ("app", None, GROUP, "user", "user 'app' cannot be resolved: the image has no /etc/passwd"),
        ("app:ghosts", PASSWD, GROUP, "user", "group 'ghosts' not found in the image's /etc/group"),
        ("1000:ghosts", PASSWD, None, "user", "the image has no /etc/group"),
        (":1000", PASSWD, GROUP, "user", "must be user, uid, user:group or uid:gid"),
        ("app:", PASSWD, GROUP, "user", "must be user, uid, user:group or uid:gid"),
        (str(2**32), PASSWD, GROUP, "user", "out of range"),
        ("1:" + str(2**32), PASSWD, GROUP, "user", "out of range"),
        # runc's bound: it refuses 'uids and gids must be in range 0-2147483647'.
        (str(2**31), PASSWD, GROUP, "user", "id 2147483648 is out of range (at most 2147483647)"),
        # ids the image's files give, which runc refused on the node (or could not decode)
        ("max", "max:x:4294967295:0::/:\n", GROUP, "user", "'max' has uid 4294967295 in"),
        ("neg", "neg:x:-1:0::/:\n", GROUP, "user", "'neg' has uid -1 in the image's /etc/passwd"),
        ("app", "app:x:1:-2::/:\n", GROUP, "user", "'app' has gid -2 in the image's /etc/passwd"),
        ("1", "app:x:1:2147483648::/:\n", None, "user", "'app' has gid 2147483648"),
        (
            "0:big",
            PASSWD,
            "big:x:99999999999:\n",
            "user",
            "'big' has gid 99999999999 in the image's /etc/group",
        ),
        (
            "app",
            "app:x:1:1::/:\n",
            "neg:x:-3:app\n",
            "user",
            "'neg' has gid -3 in the image's /etc/group",
        ),
    ],
)
def test_user_errors_name_the_user(
    user: str, passwd: str | None, group: str | None, field: str, message: str
) -> None:
    with pytest.raises(RuntimeSpecError) as info:
        build(make_container(user=user), passwd=passwd, group=group)
    assert info.value.field == field
    assert message in str(info.value)


def test_image_user_error_names_the_image_config() -> None:
    with pytest.raises(RuntimeSpecError) as info:
        build(image_config=ImageConfig(cmd=("sh",), user="ghost"))
    assert info.value.field == "image config User"


# --- capabilities ---------------------------------------------------------------------------


def caps_of(spec: dict[str, Any]) -> set[str]:
    caps = spec["process"]["capabilities"]
    assert caps["bounding"] == caps["effective"] == caps["permitted"]
    assert "inheritable" not in caps
    assert "ambient" not in caps
    return set(caps["bounding"])


def test_default_capabilities() -> None:
    spec = build()
    assert caps_of(spec) == set(DEFAULT_CAPABILITIES)
    numbers = [CAPABILITY_NUMBERS[c] for c in spec["process"]["capabilities"]["bounding"]]
    assert numbers == sorted(numbers)


def test_add_and_drop_with_or_without_prefix_any_case() -> None:
    container = make_container(
        capabilities={"add": ["net_admin", "CAP_SYS_TIME"], "drop": ["NET_RAW", "cap_mknod"]}
    )
    assert caps_of(build(container)) == (
        set(DEFAULT_CAPABILITIES) | {"CAP_NET_ADMIN", "CAP_SYS_TIME"}
    ) - {"CAP_NET_RAW", "CAP_MKNOD"}


def test_drop_all_keeps_only_added() -> None:
    container = make_container(capabilities={"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]})
    assert caps_of(build(container)) == {"CAP_NET_BIND_SERVICE"}


def test_drop_all() -> None:
    assert caps_of(build(make_container(capabilities={"drop": ["all"]}))) == set()


def test_add_all_then_drop() -> None:
    container = make_container(capabilities={"add": ["ALL"], "drop": ["SYS_ADMIN"]})
    assert caps_of(build(container)) == set(CAPABILITY_NUMBERS) - {"CAP_SYS_ADMIN"}


def test_all_is_limited_to_the_available_set() -> None:
    available = frozenset(CAPABILITY_NUMBERS) - {"CAP_SYS_RESOURCE", "CAP_BPF"}
    container = make_container(capabilities={"add": ["ALL"]})
    assert caps_of(build(container, available_capabilities=available)) == set(available)


def test_adding_an_unavailable_capability_is_an_error() -> None:
    available = frozenset(CAPABILITY_NUMBERS) - {"CAP_SYS_RESOURCE"}
    container = make_container(capabilities={"add": ["SYS_RESOURCE"]})
    with pytest.raises(RuntimeSpecError) as info:
        build(container, available_capabilities=available)
    assert info.value.field == "capabilities.add[0]"
    assert "CAP_SYS_RESOURCE is not in the runtime's capability bounding set" in str(info.value)


@pytest.mark.parametrize("where", ["add", "drop"])
def test_unknown_capability(where: str) -> None:
    container = make_container(capabilities={where: ["NET_RAW", "CAP_FLY"]})
    with pytest.raises(RuntimeSpecError) as info:
        build(container)
    assert info.value.field == f"capabilities.{where}[1]"
    assert "unknown capability 'CAP_FLY'" in str(info.value)


# --- privileged -----------------------------------------------------------------------------


def test_privileged() -> None:
    host_devices = [NULL_DEVICE, FUSE_DEVICE]
    container = make_container(privileged=True, capabilities={"drop": ["NET_RAW"]})
    spec = build(container, host_devices=host_devices)
    assert caps_of(spec) == set(CAPABILITY_NUMBERS) - {"CAP_NET_RAW"}  # drop still honoured
    linux = spec["linux"]
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert [d["path"] for d in linux["devices"]] == ["/dev/null", "/dev/fuse"]
    assert "seccomp" not in linux
    assert "maskedPaths" not in linux
    assert "readonlyPaths" not in linux
    mounts = mounts_by_destination(spec)
    assert "rw" in mounts["/sys"]["options"]
    assert "rw" in mounts["/sys/fs/cgroup"]["options"]


def test_unprivileged_defaults() -> None:
    linux = build()["linux"]
    assert linux["maskedPaths"] == list(DEFAULT_MASKED_PATHS)
    assert linux["readonlyPaths"] == list(DEFAULT_READONLY_PATHS)
    assert linux["resources"]["devices"] == [{"allow": False, "access": "rwm"}]


# --- security options and seccomp -----------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "no_new_privileges"),
    [
        ([], False),
        (["no-new-privileges"], True),
        (["no-new-privileges:true"], True),
        (["no-new-privileges=true"], True),
        (["no-new-privileges:false"], False),
        (["no-new-privileges", "no-new-privileges:false"], False),
    ],
)
def test_no_new_privileges(options: list[str], no_new_privileges: bool) -> None:
    spec = build(make_container(securityOpts=options))
    assert spec["process"]["noNewPrivileges"] is no_new_privileges


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("no-new-privileges:maybe", "takes true or false"),
        ("apparmor=unconfined", "unsupported security option 'apparmor=unconfined'"),
        ("seccomp=/etc/profile.json", "only seccomp=unconfined is supported"),
    ],
)
def test_bad_security_options(option: str, message: str) -> None:
    with pytest.raises(RuntimeSpecError) as info:
        build(make_container(securityOpts=["no-new-privileges", option]))
    assert info.value.field == "securityOpts[1]"
    assert message in str(info.value)


def test_seccomp_default_profile() -> None:
    seccomp = build()["linux"]["seccomp"]
    assert seccomp["defaultAction"] == "SCMP_ACT_ALLOW"
    assert seccomp["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    rule = seccomp["syscalls"][0]
    assert rule["action"] == "SCMP_ACT_ERRNO"
    assert rule["errnoRet"] == 1
    for name in ("keyctl", "mount", "kexec_load", "init_module", "bpf", "clock_settime"):
        assert name in rule["names"]
    assert "read" not in rule["names"]
    assert "clone" not in rule["names"]  # fork and threads: only its namespace flags


CLONE_NAMESPACE_MASK = 0x7E020000
"""NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET: Docker's profile's mask."""


def _clone_rules(seccomp: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for rule in seccomp["syscalls"] if {"clone", "clone3"} & set(rule["names"])]


@pytest.mark.parametrize(("machine", "index"), [("x86_64", 0), ("aarch64", 0), ("s390x", 1)])
def test_seccomp_refuses_a_clone_that_makes_a_namespace(machine: str, index: int) -> None:
    """clone(CLONE_NEWUSER|CLONE_NEWNET) gave a restricted container every capability over
    a namespace of its own (CAP_NET_ADMIN: nf_tables), though unshare was refused."""
    rules = _clone_rules(build(machine=machine)["linux"]["seccomp"])
    flags = 0
    for rule in rules[:-1]:
        assert rule["names"] == ["clone"]
        assert (rule["action"], rule["errnoRet"]) == ("SCMP_ACT_ERRNO", 1)
        (condition,) = rule["args"]
        assert condition["op"] == "SCMP_CMP_MASKED_EQ"
        assert condition["index"] == index  # s390's clone takes the flags second
        assert condition["value"] == condition["valueTwo"]
        assert bin(condition["value"]).count("1") == 1  # one flag: any of them refuses
        flags |= condition["value"]
    assert flags == CLONE_NAMESPACE_MASK
    assert rules[-1] == {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}


def test_seccomp_lets_sys_admin_make_namespaces() -> None:
    container = make_container(capabilities={"add": ["SYS_ADMIN"]})
    assert _clone_rules(build(container)["linux"]["seccomp"]) == []


def test_seccomp_allows_what_granted_capabilities_cover() -> None:
    container = make_container(capabilities={"add": ["SYS_ADMIN", "SYS_TIME"]})
    rule = build(container)["linux"]["seccomp"]["syscalls"][0]
    assert "mount" not in rule["names"]
    assert "bpf" not in rule["names"]  # CAP_SYS_ADMIN also covers bpf
    assert "clock_settime" not in rule["names"]
    assert "keyctl" in rule["names"]  # never namespaced: refused whatever the caps
    assert "init_module" in rule["names"]


def test_seccomp_unconfined_and_unknown_machine() -> None:
    assert "seccomp" not in build(make_container(securityOpts=["seccomp=unconfined"]))["linux"]
    assert "seccomp" not in build(make_container(securityOpts=["seccomp:unconfined"]))["linux"]
    seccomp = build(machine="sparc64")["linux"]["seccomp"]
    assert "architectures" not in seccomp
    assert build(machine="aarch64")["linux"]["seccomp"]["architectures"] == [
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_ARM",
    ]


# --- read-only root -------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "readonly"), [(None, False), (False, False), (True, True)])
def test_read_only_root(value: bool | None, readonly: bool) -> None:
    spec = build(make_container(readOnlyRootFilesystem=value))
    assert spec["root"]["readonly"] is readonly


# --- devices --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "parsed"),
    [
        ("/dev/fuse", ("/dev/fuse", "/dev/fuse", "rwm")),
        ("/dev/fuse:/dev/f", ("/dev/fuse", "/dev/f", "rwm")),
        ("/dev/fuse:r", ("/dev/fuse", "/dev/fuse", "r")),
        ("/dev/fuse:/dev/f:rw", ("/dev/fuse", "/dev/f", "rw")),
    ],
)
def test_parse_device(entry: str, parsed: tuple[str, str, str]) -> None:
    assert parse_device(entry) == parsed


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("/dev/fuse:/dev/f:rw:x", "must be host[:container][:permissions]"),
        ("/dev/fuse:dev/f:rw", "must be absolute"),
        ("/dev/fuse:/dev/f:rwx", "combination of r, w and m"),
        ("/dev/fuse:/dev/f:", "combination of r, w and m"),
    ],
)
def test_parse_device_rejects(entry: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_device(entry)


def test_devices_become_nodes_and_cgroup_rules() -> None:
    container = make_container(devices=["/dev/fuse", "/dev/null:/dev/mynull:rw"])
    spec = build(container, devices={"/dev/fuse": FUSE_DEVICE, "/dev/null": NULL_DEVICE})
    linux = spec["linux"]
    assert linux["devices"] == [
        {
            "path": "/dev/fuse",
            "type": "c",
            "major": 10,
            "minor": 229,
            "fileMode": 0o666,
            "uid": 0,
            "gid": 0,
        },
        {
            "path": "/dev/mynull",
            "type": "c",
            "major": 1,
            "minor": 3,
            "fileMode": 0o666,
            "uid": 0,
            "gid": 0,
        },
    ]
    assert linux["resources"]["devices"] == [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
    ]


def test_privileged_named_device_replaces_host_copy() -> None:
    container = make_container(privileged=True, devices=["/dev/fuse"])
    spec = build(container, devices={"/dev/fuse": FUSE_DEVICE}, host_devices=[FUSE_DEVICE])
    assert [d["path"] for d in spec["linux"]["devices"]] == ["/dev/fuse"]
    assert spec["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]


def test_missing_device_is_an_error() -> None:
    with pytest.raises(RuntimeSpecError) as info:
        build(
            make_container(devices=["/dev/null", "/dev/nope"]), devices={"/dev/null": NULL_DEVICE}
        )
    assert info.value.field == "devices[1]"
    assert "/dev/nope is not a device node on this host" in str(info.value)


def test_malformed_device_is_an_error() -> None:
    with pytest.raises(RuntimeSpecError, match=r"devices\[0\]: .*combination of r, w and m"):
        build(make_container(devices=["/dev/null:/x:q"]), devices={"/dev/null": NULL_DEVICE})


# --- rlimits --------------------------------------------------------------------------------


def test_rlimits_only_those_asked_and_capped_at_host_hard() -> None:
    spec = build(
        host_hard_rlimits={"RLIMIT_NOFILE": 20000, "RLIMIT_NPROC": RLIM_INFINITY},
        rlimits=[
            Rlimit("nofile", 1024, 1_000_000),
            Rlimit("RLIMIT_NPROC", 100, 200),
            Rlimit("core", 0, 0),
            Rlimit("NOFILE", 50_000, 60_000),  # asked twice: the last wins, still capped
        ],
    )
    assert spec["process"]["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "hard": 20000, "soft": 20000},
        {"type": "RLIMIT_NPROC", "hard": 200, "soft": 100},
        {"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
    ]


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        (Rlimit("files", 1, 1), "unknown rlimit 'files'"),
        (Rlimit("nofile", 10, 5), "soft 10 is above hard 5"),
        (Rlimit("nofile", -1, 5), "must not be negative"),
    ],
)
def test_bad_rlimits(limit: Rlimit, message: str) -> None:
    with pytest.raises(RuntimeSpecError) as info:
        build(rlimits=[limit])
    assert info.value.field == "rlimits[0]"
    assert message in str(info.value)


# --- namespaces -----------------------------------------------------------------------------


def test_default_namespaces_new_network() -> None:
    spec = build()
    assert spec["linux"]["namespaces"] == [
        {"type": "pid"},
        {"type": "ipc"},
        {"type": "uts"},
        {"type": "mount"},
        {"type": "network"},
        {"type": "cgroup"},
    ]


def test_an_image_env_entry_without_equals_unsets_it() -> None:
    # docker and containerd (ReplaceOrAppendEnvValues): a bare NAME unsets NAME, it was
    # 'NAME=' here. kukeon's defaults (PATH, HOSTNAME, TERM) are not set either; HOME is
    # (runc sets it when nothing does); a later layer (env) may set the name again.
    image = ImageConfig(cmd=("sh",), env=("A=1", "A", "BARE", "PATH", "HOSTNAME", "B", "B=2"))
    env = build(image_config=image, terminal=True)["process"]["env"]
    assert not [entry for entry in env if "=" not in entry]
    names = dict(entry.split("=", 1) for entry in env)
    assert not {"A", "BARE", "PATH", "HOSTNAME"} & set(names)
    assert names["B"] == "2"
    assert names["HOME"] == "/root"
    assert names["TERM"] == "xterm"
    unset_term = ImageConfig(cmd=("sh",), env=("TERM", "HOME"))
    assert set(env_of(build(image_config=unset_term, terminal=True))) >= {"HOME", "PATH"}
    assert "TERM" not in env_of(build(image_config=unset_term, terminal=True))
    again = build(make_container(env=["PATH=/mine"]), image_config=image)
    assert env_of(again)["PATH"] == "/mine"


def test_a_host_network_containers_digest_is_what_it_was() -> None:
    # Stop 54's kukeond gave a hostNetwork container the cell's name and the image's
    # /etc/hosts and /etc/hostname; now the node's (docker's --network host, the CRI's
    # hostNetwork pod). Upgrading kukeond re-creates none of them for it, and a renamed
    # node re-creates none either.
    container = make_container(hostNetwork=True)
    before = make_context(hostname="cell1", resolv_conf_file="/etc/resolv.conf")
    node = dataclasses.replace(
        before,
        hostname="node1",
        hosts_file="/state/cell1/node-hosts",
        hostname_file="/state/cell1/node-hostname",
    )
    spec = build_runtime_spec(container, context=node)
    assert spec["hostname"] == "node1"
    assert env_of(spec)["HOSTNAME"] == "node1"
    mounts = mounts_by_destination(spec)
    assert mounts["/etc/hosts"]["source"] == "/state/cell1/node-hosts"
    assert mounts["/etc/hostname"]["source"] == "/state/cell1/node-hostname"
    assert "uts" in namespace_types(spec)  # its own: it cannot rename the node
    old = build_runtime_spec(container, context=before)
    assert digest_view(spec, container, node) == digest_view(old, container, before)
    renamed = dataclasses.replace(node, hostname="node2")
    assert digest_view(build_runtime_spec(container, context=renamed), container, renamed) == (
        digest_view(old, container, before)
    )
    # A volume of the container's own at /etc/hosts is its spec's: in the digest.
    own = make_container(hostNetwork=True, volumes=[{"source": "/h", "target": "/etc/hosts"}])
    view = digest_view(build_runtime_spec(own, context=node), own, node)
    assert mounts_by_destination(view)["/etc/hosts"]["source"] == "/h"
    # A bridged container's view keeps its host name and cell files.
    bridged = make_container()
    cell = dataclasses.replace(before, hosts_file="/state/cell1/hosts")
    view = digest_view(build_runtime_spec(bridged, context=cell), bridged, cell)
    assert view["hostname"] == "cell1"
    assert mounts_by_destination(view)["/etc/hosts"]["source"] == "/state/cell1/hosts"


def test_joins_the_cells_netns() -> None:
    spec = build(netns_path="/var/run/netns/kukeon-cell1")
    assert {"type": "network", "path": "/var/run/netns/kukeon-cell1"} in spec["linux"]["namespaces"]


def test_host_network_pid_and_cgroup_omit_namespaces() -> None:
    container = make_container(hostNetwork=True, hostPID=True, hostCgroup=True)
    spec = build(container, netns_path="/var/run/netns/ignored")
    assert namespace_types(spec) == ["ipc", "uts", "mount"]


# --- resources ------------------------------------------------------------------------------


def test_resources() -> None:
    container = make_container(
        resources={"memoryLimitBytes": 64 << 20, "cpuShares": 512, "pidsLimit": 100}
    )
    resources = build(container)["linux"]["resources"]
    assert resources["memory"] == {"limit": 64 << 20}
    assert resources["cpu"] == {"shares": 512}
    assert resources["pids"] == {"limit": 100}


def test_a_cpu_limit_is_a_cfs_quota_per_100_ms() -> None:
    container = make_container(resources={"cpuLimitMillicores": 500, "cpuShares": 512})
    cpu = build(container)["linux"]["resources"]["cpu"]
    assert cpu == {"shares": 512, "quota": 50_000, "period": 100_000}
    two = make_container(resources={"cpuLimitMillicores": 2000})
    assert build(two)["linux"]["resources"]["cpu"] == {"quota": 200_000, "period": 100_000}


def test_unset_and_zero_resources_are_omitted() -> None:
    assert set(build()["linux"]["resources"]) == {"devices"}
    container = make_container(
        resources={"memoryLimitBytes": 0, "cpuShares": 0, "cpuLimitMillicores": 0}
    )
    assert set(build(container)["linux"]["resources"]) == {"devices"}


# --- mounts ---------------------------------------------------------------------------------


def test_standard_mounts() -> None:
    spec = build()
    assert [m["destination"] for m in spec["mounts"]] == [
        "/proc",
        "/dev",
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/sys",
        "/sys/fs/cgroup",
    ]
    mounts = mounts_by_destination(spec)
    assert mounts["/proc"]["type"] == "proc"
    assert mounts["/dev/pts"]["type"] == "devpts"
    assert "newinstance" in mounts["/dev/pts"]["options"]
    assert mounts["/dev/shm"]["source"] == "shm"
    assert mounts["/dev/mqueue"]["type"] == "mqueue"
    assert "ro" in mounts["/sys"]["options"]
    assert mounts["/sys/fs/cgroup"]["type"] == "cgroup"
    assert "ro" in mounts["/sys/fs/cgroup"]["options"]


def test_volumes_tmpfs_secrets_and_rendered_files() -> None:
    container = make_container(
        volumes=[
            {"source": "/host/data", "target": "/data"},
            {"source": "/host/conf", "target": "/etc/app", "readOnly": True},
            {"kind": "tmpfs", "target": "/data/cache", "sizeBytes": 1048576, "mode": 0o1777},
            {"kind": "tmpfs", "target": "/plain"},
            {"kind": "tmpfs", "target": "/frozen", "readOnly": True},
        ],
        tmpfs=[
            {"path": "/scratch", "sizeBytes": 4096, "options": ["exec", "mode=700"]},
            {"path": "/run", "options": ["size=1m", "uid=1000"]},
        ],
    )
    spec = build(
        container,
        secret_files={"/run/secrets/db": "/state/secrets/db"},
        hosts_file="/state/cell1/hosts",
        hostname_file="/state/cell1/hostname",
        resolv_conf_file="/state/cell1/resolv.conf",
    )
    mounts = mounts_by_destination(spec)
    assert mounts["/data"] == {
        "destination": "/data",
        "type": "bind",
        "source": "/host/data",
        "options": ["rbind", "rw"],
    }
    assert mounts["/etc/app"]["options"] == ["rbind", "ro"]
    assert mounts["/data/cache"] == {
        "destination": "/data/cache",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "nodev", "size=1048576", "mode=1777"],
    }
    assert mounts["/plain"]["options"] == ["nosuid", "nodev"]
    # readOnly of a tmpfs volume was ignored: the tmpfs was writable.
    assert mounts["/frozen"]["options"] == ["nosuid", "nodev", "ro"]
    assert mounts["/scratch"]["options"] == ["nosuid", "nodev", "exec", "mode=700", "size=4096"]
    assert mounts["/run"]["options"] == ["nosuid", "nodev", "noexec", "size=1m", "uid=1000"]
    assert mounts["/run/secrets/db"] == {
        "destination": "/run/secrets/db",
        "type": "bind",
        "source": "/state/secrets/db",
        "options": ["rbind", "ro", "nosuid", "nodev", "noexec"],
    }
    for target, source in (
        ("/etc/hosts", "/state/cell1/hosts"),
        ("/etc/hostname", "/state/cell1/hostname"),
        ("/etc/resolv.conf", "/state/cell1/resolv.conf"),
    ):
        assert mounts[target] == {
            "destination": target,
            "type": "bind",
            "source": source,
            "options": ["rbind", "ro"],
        }
    # parents before children, whatever the declaration order
    order = [m["destination"] for m in spec["mounts"]]
    assert order.index("/data") < order.index("/data/cache")
    assert order.index("/run") < order.index("/run/secrets/db")
    assert order.index("/sys") < order.index("/sys/fs/cgroup")


def test_user_mount_replaces_standard_and_rendered_ones() -> None:
    container = make_container(
        volumes=[
            {"kind": "tmpfs", "target": "/dev/shm", "sizeBytes": 1 << 30},
            {"source": "/my/hosts", "target": "/etc/hosts"},
        ]
    )
    spec = build(container, hosts_file="/state/hosts")
    shm = [m for m in spec["mounts"] if m["destination"] == "/dev/shm"]
    assert len(shm) == 1
    assert f"size={1 << 30}" in shm[0]["options"]
    hosts = [m for m in spec["mounts"] if m["destination"] == "/etc/hosts"]
    assert [m["source"] for m in hosts] == ["/my/hosts"]


def test_duplicate_mount_points_are_an_error() -> None:
    container = make_container(
        volumes=[{"source": "/a", "target": "/data"}], tmpfs=[{"path": "/data/"}]
    )
    with pytest.raises(RuntimeSpecError) as info:
        build(container)
    assert info.value.field == "tmpfs[0].path"
    assert "mount point /data is used twice (also by volumes[0].target)" in str(info.value)


def test_secret_colliding_with_a_volume_is_an_error() -> None:
    container = make_container(volumes=[{"source": "/a", "target": "/run/secrets/db"}])
    with pytest.raises(RuntimeSpecError, match="used twice"):
        build(container, secret_files={"/run/secrets/db": "/state/db"})


def test_available_capabilities_default_to_this_process_bounding_set() -> None:
    context = SpecContext(
        image_config=ImageConfig(cmd=("sh",)), container_id="c", hostname="h", cgroups_path="/c"
    )
    assert context.available_capabilities == read_bounding_capabilities()


@pytest.mark.parametrize(
    ("name", "home"),
    [
        ("RuntimeSpecError", "specerrors"),
        ("HostDevice", "hostlookup"),
        ("RLIM_INFINITY", "hostlookup"),
        ("current_hard_rlimits", "hostlookup"),
        ("inspect_host_device", "hostlookup"),
        ("list_host_devices", "hostlookup"),
        ("read_bounding_capabilities", "hostlookup"),
        ("DEFAULT_CAPABILITIES", "capabilities"),
        ("ImageLayer", "userdb"),
        ("read_image_user_database", "userdb"),
    ],
)
def test_spec_still_exports_what_its_callers_import(name: str, home: str) -> None:
    """The controllers (cell, cellbuild), the admission docs, bench and integration tests
    import these from ``spec``: they are the very objects of the module that owns them."""
    spec_module = importlib.import_module("kukeon.runtime.containerd.spec")
    owner = importlib.import_module(f"kukeon.runtime.containerd.{home}")
    assert name in spec_module.__all__
    assert getattr(spec_module, name) is getattr(owner, name)
