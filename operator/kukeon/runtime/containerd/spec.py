"""The OCI runtime spec of one container, built by a pure function from its ContainerSpec.

containerd stores whatever runtime spec it is given and runc runs it, so every isolation
decision kukeon makes about a container lands here: process args and env (Docker semantics
against the image config), user and groups (resolved from the image's /etc/passwd and
/etc/group), capabilities, devices, rlimits, mounts, masked paths, namespaces, the cgroup
path and limits, and a seccomp filter. Keeping it pure means every branch is unit-tested
without a host; everything that needs the host (stat of a device, the current hard rlimits,
the image's passwd file, the cell's netns) is looked up by the caller and handed over in a
:class:`SpecContext`. The small helpers at the bottom (``inspect_host_device``,
``list_host_devices``, ``current_hard_rlimits``) do those look-ups; they block, so call them
through ``asyncio.to_thread``. ``read_image_user_database`` reads the image's /etc/passwd and
/etc/group out of its layers in the content store.

The output is runtime-spec 1.0.2 JSON as runc 1.1 takes it; ``root.path`` is ``rootfs``
(containerd's task rootfs mounts are placed there).
"""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import platform
import posixpath
import resource
import stat
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

from kukeon.api import ContainerSpec, ContainerTty, TmpfsMount, VolumeKind
from kukeon.runtime.containerd import ttyinit
from kukeon.runtime.containerd.types import BlobStore, ImageConfig

OCI_VERSION: Final = "1.0.2-dev"
DEFAULT_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RLIM_INFINITY: Final = 2**64 - 1
_MAX_ID: Final = 2**32 - 2

# Labels (on the containerd container record) and annotations (in the runtime spec) that
# mark a container as kukeon's and say where it belongs.
LABEL_MANAGED: Final = "kukeon.io/managed"
LABEL_REALM: Final = "kukeon.io/realm"
LABEL_SPACE: Final = "kukeon.io/space"
LABEL_STACK: Final = "kukeon.io/stack"
LABEL_CELL: Final = "kukeon.io/cell"
LABEL_CONTAINER: Final = "kukeon.io/container"


# --- capabilities -------------------------------------------------------------------------

# Linux capability numbers (include/uapi/linux/capability.h), kernel 5.9+.
CAPABILITY_NUMBERS: Final[Mapping[str, int]] = {
    name: number
    for number, name in enumerate(
        (
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_DAC_READ_SEARCH",
            "CAP_FOWNER",
            "CAP_FSETID",
            "CAP_KILL",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SETPCAP",
            "CAP_LINUX_IMMUTABLE",
            "CAP_NET_BIND_SERVICE",
            "CAP_NET_BROADCAST",
            "CAP_NET_ADMIN",
            "CAP_NET_RAW",
            "CAP_IPC_LOCK",
            "CAP_IPC_OWNER",
            "CAP_SYS_MODULE",
            "CAP_SYS_RAWIO",
            "CAP_SYS_CHROOT",
            "CAP_SYS_PTRACE",
            "CAP_SYS_PACCT",
            "CAP_SYS_ADMIN",
            "CAP_SYS_BOOT",
            "CAP_SYS_NICE",
            "CAP_SYS_RESOURCE",
            "CAP_SYS_TIME",
            "CAP_SYS_TTY_CONFIG",
            "CAP_MKNOD",
            "CAP_LEASE",
            "CAP_AUDIT_WRITE",
            "CAP_AUDIT_CONTROL",
            "CAP_SETFCAP",
            "CAP_MAC_OVERRIDE",
            "CAP_MAC_ADMIN",
            "CAP_SYSLOG",
            "CAP_WAKE_ALARM",
            "CAP_BLOCK_SUSPEND",
            "CAP_AUDIT_READ",
            "CAP_PERFMON",
            "CAP_BPF",
            "CAP_CHECKPOINT_RESTORE",
        )
    )
}

# containerd's (and Docker's) default set for a non-privileged container.
DEFAULT_CAPABILITIES: Final = frozenset(
    {
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    }
)

# containerd's defaults: kernel interfaces that leak host information or let a container
# poke the host are hidden or made read-only (unless privileged).
DEFAULT_MASKED_PATHS: Final = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
)
DEFAULT_READONLY_PATHS: Final = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)

# Syscalls refused (EPERM) unless the container holds one of the listed capabilities. A
# deny-list on top of the capability checks the kernel already does: it closes the
# interfaces that are not namespaced (keyrings, modules, clocks, kexec) even for a
# container granted a capability by mistake, the way Docker's default profile does.
_SECCOMP_DENY: Final[tuple[tuple[tuple[str, ...], frozenset[str]], ...]] = (
    (
        (
            "add_key",
            "keyctl",
            "request_key",
            "create_module",
            "get_kernel_syms",
            "query_module",
            "nfsservctl",
            "uselib",
            "ustat",
            "sysfs",
            "_sysctl",
            "vm86",
            "vm86old",
            "userfaultfd",
        ),
        frozenset(),
    ),
    (
        (
            "mount",
            "umount",
            "umount2",
            "pivot_root",
            "unshare",
            "setns",
            "swapon",
            "swapoff",
            "quotactl",
            "fanotify_init",
            "lookup_dcookie",
            "name_to_handle_at",
            "setdomainname",
            "fsopen",
            "fsmount",
            "fsconfig",
            "fspick",
            "move_mount",
            "open_tree",
        ),
        frozenset({"CAP_SYS_ADMIN"}),
    ),
    (("bpf",), frozenset({"CAP_SYS_ADMIN", "CAP_BPF"})),
    (("perf_event_open",), frozenset({"CAP_SYS_ADMIN", "CAP_PERFMON"})),
    (("open_by_handle_at",), frozenset({"CAP_DAC_READ_SEARCH"})),
    (("reboot", "kexec_load", "kexec_file_load"), frozenset({"CAP_SYS_BOOT"})),
    (("init_module", "finit_module", "delete_module"), frozenset({"CAP_SYS_MODULE"})),
    (("iopl", "ioperm"), frozenset({"CAP_SYS_RAWIO"})),
    (("settimeofday", "stime", "clock_settime", "clock_adjtime"), frozenset({"CAP_SYS_TIME"})),
    (("acct",), frozenset({"CAP_SYS_PACCT"})),
    (("syslog",), frozenset({"CAP_SYSLOG", "CAP_SYS_ADMIN"})),
)

_SECCOMP_ARCHITECTURES: Final[Mapping[str, tuple[str, ...]]] = {
    "x86_64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "amd64": ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"),
    "aarch64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
    "arm64": ("SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"),
    "ppc64le": ("SCMP_ARCH_PPC64LE",),
    "s390x": ("SCMP_ARCH_S390X", "SCMP_ARCH_S390"),
    "riscv64": ("SCMP_ARCH_RISCV64",),
}

RLIMIT_NAMES: Final = (
    "RLIMIT_AS",
    "RLIMIT_CORE",
    "RLIMIT_CPU",
    "RLIMIT_DATA",
    "RLIMIT_FSIZE",
    "RLIMIT_LOCKS",
    "RLIMIT_MEMLOCK",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_NOFILE",
    "RLIMIT_NPROC",
    "RLIMIT_RSS",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
    "RLIMIT_SIGPENDING",
    "RLIMIT_STACK",
)


# --- inputs -------------------------------------------------------------------------------


class RuntimeSpecError(ValueError):
    """The container cannot be turned into a runtime spec: a user mistake, field named."""

    def __init__(self, *, container: str, field: str, reason: str, cell: str = "") -> None:
        self.container = container
        self.field = field
        self.reason = reason
        self.cell = cell
        where = f"cell {cell!r} container {container!r}" if cell else f"container {container!r}"
        super().__init__(f"{where}: {field}: {reason}")


@dataclass(frozen=True, slots=True)
class HostDevice:
    """A device node on the host, as the OCI spec needs to recreate it in a container."""

    path: str
    type: str
    """``c`` (character), ``b`` (block) or ``p`` (FIFO)."""
    major: int
    minor: int
    file_mode: int
    uid: int = 0
    gid: int = 0


@dataclass(frozen=True, slots=True)
class Rlimit:
    """A resource limit asked for a container (``RLIMIT_NOFILE``, or just ``nofile``)."""

    type: str
    soft: int
    hard: int


@dataclass(frozen=True, slots=True)
class SpecContext:
    """Everything about the host, the image and the cell that the spec needs.

    The caller gathers it (the image config and passwd/group files from the image, the
    cell's netns and cgroup, the rendered files in the state directory) so that
    :func:`build_runtime_spec` stays pure.
    """

    image_config: ImageConfig
    container_id: str
    """The containerd container id (annotated; the kukeon id comes from the ContainerSpec)."""
    hostname: str
    cgroups_path: str
    """The task's own leaf, ``<cell cgroup>/<container>``: runc removes it when the task goes."""
    realm: str = ""
    space: str = ""
    stack: str = ""
    cell: str = ""
    cell_cgroup_path: str | None = None
    """The cell's cgroup for ``KUKEON_CGROUP_PATH``; defaults to the parent of ``cgroups_path``."""
    netns_path: str | None = None
    """The cell's network namespace to join; ``None`` creates a new one."""
    hosts_file: str | None = None
    hostname_file: str | None = None
    resolv_conf_file: str | None = None
    secret_files: Mapping[str, str] = field(default_factory=dict)
    """Container path → host path of each staged secret file."""
    secret_env: Mapping[str, str] = field(default_factory=dict)
    passwd: str | None = None
    """The image's /etc/passwd (``None`` when the image has none)."""
    group: str | None = None
    """The image's /etc/group (``None`` when the image has none)."""
    host_hard_rlimits: Mapping[str, int] = field(default_factory=dict)
    """``RLIMIT_*`` → the host's current hard limit (``RLIM_INFINITY`` for unlimited)."""
    rlimits: Sequence[Rlimit] = ()
    """The rlimits asked for this container (``ContainerSpec`` has no field for them yet)."""
    devices: Mapping[str, HostDevice] = field(default_factory=dict)
    """Host path → device node, for each device the container names."""
    host_devices: Sequence[HostDevice] = ()
    """Every device of the host, given to a privileged container."""
    terminal: bool = False
    """Allocate a TTY (attachable containers)."""
    tty_state_dir: str | None = None
    """Host directory bind-mounted at ``/run/kukeon/tty`` when the container's command runs
    under the tty wrapper (``tty.onInit``/``tty.logFile``): where its create marker lives."""
    image_has_shell: bool | None = None
    """Whether the image has ``/bin/sh``, which the tty wrapper runs on (``None``: unknown,
    assumed present)."""
    available_capabilities: frozenset[str] | None = field(
        default_factory=lambda: read_bounding_capabilities()
    )
    """The capabilities runc can grant. Defaults to this process's bounding set (containerd
    is normally started with the same one); ``None`` assumes every capability kukeon knows.
    Hosts and sandboxes often withhold some (CAP_SYS_RESOURCE, say), and runc refuses to
    start a container asking for one it cannot have."""
    machine: str = field(default_factory=platform.machine)
    annotations: Mapping[str, str] = field(default_factory=dict)


# --- the builder --------------------------------------------------------------------------


def build_runtime_spec(container: ContainerSpec, *, context: SpecContext) -> dict[str, Any]:
    """The OCI runtime spec (runtime-spec 1.0.2 JSON) that runs ``container``.

    Raises :class:`RuntimeSpecError` naming the field when the container asks for something
    that cannot be honoured (a user missing from the image, an unknown capability, ...).
    """
    problem = _Problems(container.id, context.cell)
    privileged = container.privileged
    security = _security_options(container, problem)
    uid, gid, additional_gids, home = _resolve_user(container, context, problem)
    capabilities = _capabilities(container, context, problem)
    env = _environment(container, context, home=home)
    read_only = bool(container.read_only_root_filesystem)
    args = _process_args(container, context.image_config, problem)
    wrapper = _tty_wrapper(container, context)
    if wrapper is not None:
        _check_tty_wrapper(container, wrapper, context, problem)
        args = ttyinit.wrapped_args(args, wrapper)

    process: dict[str, Any] = {
        "terminal": context.terminal,
        "user": {"uid": uid, "gid": gid},
        "args": args,
        "env": env,
        "cwd": _working_dir(container, context.image_config),
        "capabilities": {
            "bounding": capabilities,
            "effective": capabilities,
            "permitted": capabilities,
        },
        "noNewPrivileges": security.no_new_privileges,
    }
    if additional_gids:
        process["user"]["additionalGids"] = additional_gids
    rlimits = _rlimits(context, problem)
    if rlimits:
        process["rlimits"] = rlimits

    device_nodes, device_rules = _devices(container, context, problem)
    linux: dict[str, Any] = {
        "namespaces": _namespaces(container, context),
        "cgroupsPath": context.cgroups_path,
        "resources": {"devices": device_rules, **_resources(container)},
    }
    if device_nodes:
        linux["devices"] = device_nodes
    if not privileged:
        linux["maskedPaths"] = list(DEFAULT_MASKED_PATHS)
        linux["readonlyPaths"] = list(DEFAULT_READONLY_PATHS)
        if security.seccomp:
            linux["seccomp"] = _seccomp_profile(set(capabilities), context.machine)

    return {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": "rootfs", "readonly": read_only},
        "hostname": context.hostname,
        "mounts": _mounts(container, context, problem, tty_state=wrapper is not None),
        "annotations": {**context.annotations, **container_annotations(container, context)},
        "linux": linux,
    }


def container_labels(
    *, realm: str, space: str, stack: str, cell: str, container: str
) -> dict[str, str]:
    """The labels that mark a containerd object as kukeon's and locate it in the hierarchy."""
    return {
        LABEL_MANAGED: "true",
        LABEL_REALM: realm,
        LABEL_SPACE: space,
        LABEL_STACK: stack,
        LABEL_CELL: cell,
        LABEL_CONTAINER: container,
    }


def container_annotations(container: ContainerSpec, context: SpecContext) -> dict[str, str]:
    return container_labels(
        realm=context.realm,
        space=context.space,
        stack=context.stack,
        cell=context.cell,
        container=container.id,
    )


class _Problems:
    """Raises errors that name the cell and the container; one place for the message shape."""

    def __init__(self, container: str, cell: str = "") -> None:
        self.container = container
        self.cell = cell

    def __call__(self, field: str, reason: str) -> RuntimeSpecError:
        return RuntimeSpecError(
            container=self.container, field=field, reason=reason, cell=self.cell
        )


# --- process ------------------------------------------------------------------------------


def _process_args(container: ContainerSpec, image: ImageConfig, problem: _Problems) -> list[str]:
    # Docker semantics: a command replaces the entrypoint (and with it the image's cmd),
    # args replace the cmd.
    if container.command is not None:
        args = [container.command, *container.args]
    elif container.args:
        args = [*image.entrypoint, *container.args]
    else:
        args = [*image.entrypoint, *image.cmd]
    if not args:
        raise problem(
            "command",
            "nothing to run: the image has no entrypoint or cmd, set command or args",
        )
    return args


def _tty_wrapper(container: ContainerSpec, context: SpecContext) -> ContainerTty | None:
    """The tty options when the command runs under the tty wrapper, else ``None``."""
    tty = container.tty if context.terminal else None
    return tty if ttyinit.wrapper_needed(tty) else None


def _check_tty_wrapper(
    container: ContainerSpec, tty: ContainerTty, context: SpecContext, problem: _Problems
) -> None:
    field = ttyinit.wrapper_field(tty)
    if context.image_has_shell is False:
        raise problem(
            field,
            f"runs the command under a {ttyinit.SHELL} wrapper, and the image has no "
            f"{ttyinit.SHELL} (tty.prompt alone needs no shell)",
        )
    size = len(ttyinit.wrapper_script(tty).encode())
    if size > ttyinit.MAX_WRAPPER_BYTES:
        raise problem(
            field,
            f"the scripts make a {size}-byte wrapper, more than the "
            f"{ttyinit.MAX_WRAPPER_BYTES} bytes one argument may have; move them into the "
            "image or a volume and call them from onInit",
        )
    if tty.log_file is not None and container.read_only_root_filesystem:
        writable = [ttyinit.STATE_MOUNT, "/dev/shm"]
        writable += [
            v.target for v in container.volumes if v.kind == VolumeKind.TMPFS or not v.read_only
        ]
        writable += [t.path for t in container.tmpfs]
        if not any(_is_under(tty.log_file, directory) for directory in writable):
            raise problem(
                "tty.logFile",
                f"{tty.log_file} is on the read-only root filesystem; put it on a volume, "
                f"a tmpfs or under {ttyinit.STATE_MOUNT}",
            )


def _is_under(path: str, directory: str) -> bool:
    path, directory = posixpath.normpath(path), posixpath.normpath(directory)
    return directory == "/" or path.startswith(directory.rstrip("/") + "/")


def _working_dir(container: ContainerSpec, image: ImageConfig) -> str:
    cwd = container.working_dir or image.working_dir or "/"
    # OCI wants an absolute cwd; Docker resolves a relative WORKDIR against /.
    return posixpath.normpath(posixpath.join("/", cwd))


def _environment(container: ContainerSpec, context: SpecContext, *, home: str) -> list[str]:
    """Image env, then kukeon's identity, then the container's own env and secrets.

    Later layers win on a key collision; a key keeps the position it first appeared at.
    """
    cell_cgroup = context.cell_cgroup_path or posixpath.dirname(context.cgroups_path)
    injected = {
        "KUKEON_REALM": context.realm,
        "KUKEON_SPACE": context.space,
        "KUKEON_STACK": context.stack,
        "KUKEON_CELL_NAME": context.cell,
        "KUKEON_CONTAINER_ID": container.id,
        "KUKEON_CGROUP_PATH": cell_cgroup,
    }
    merged: dict[str, str] = {}
    for entry in context.image_config.env:
        key, _, value = entry.partition("=")
        merged[key] = value
    merged.update({key: value for key, value in injected.items() if value})
    for entry in container.env:
        key, _, value = entry.partition("=")
        merged[key] = value
    merged.update(context.secret_env)
    if context.terminal and container.tty is not None and container.tty.prompt:
        # tty.prompt is the more specific setting: it wins over a PS1 in env.
        merged.update(ttyinit.prompt_environment(container.tty.prompt, merged))
    merged.setdefault("PATH", DEFAULT_PATH)
    merged.setdefault("HOME", home)
    if context.terminal:
        merged.setdefault("TERM", "xterm")
    return [f"{key}={value}" for key, value in merged.items()]


class _PasswdEntry(NamedTuple):
    name: str
    uid: int
    gid: int
    home: str


class _GroupEntry(NamedTuple):
    name: str
    gid: int
    members: frozenset[str]


def _parse_passwd(text: str) -> list[_PasswdEntry]:
    entries = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) < 4 or line.startswith("#"):
            continue
        try:
            uid, gid = int(parts[2]), int(parts[3])
        except ValueError:
            continue
        home = parts[5] if len(parts) > 5 and parts[5] else "/"
        entries.append(_PasswdEntry(parts[0], uid, gid, home))
    return entries


def _parse_group(text: str) -> list[_GroupEntry]:
    entries = []
    for line in text.splitlines():
        parts = line.strip().split(":")
        if len(parts) < 3 or line.startswith("#"):
            continue
        try:
            gid = int(parts[2])
        except ValueError:
            continue
        members = frozenset(m for m in (parts[3].split(",") if len(parts) > 3 else []) if m)
        entries.append(_GroupEntry(parts[0], gid, members))
    return entries


def _resolve_user(
    container: ContainerSpec, context: SpecContext, problem: _Problems
) -> tuple[int, int, list[int], str]:
    """uid, gid, supplementary gids and home of the container's (or image's) user."""
    spec_user = container.user
    text = spec_user or context.image_config.user or "0"
    field = "user" if spec_user else "image config User"
    user_part, colon, group_part = text.partition(":")
    if not user_part or (colon and not group_part):
        raise problem(field, f"{text!r} must be user, uid, user:group or uid:gid")
    passwd = _parse_passwd(context.passwd) if context.passwd is not None else []
    groups = _parse_group(context.group) if context.group is not None else []

    entry: _PasswdEntry | None
    if user_part.isdigit():
        uid = _check_id(int(user_part), field, problem)
        entry = next((e for e in passwd if e.uid == uid), None)
    else:
        if context.passwd is None:
            raise problem(
                field, f"user {user_part!r} cannot be resolved: the image has no /etc/passwd"
            )
        entry = next((e for e in passwd if e.name == user_part), None)
        if entry is None:
            raise problem(field, f"user {user_part!r} not found in the image's /etc/passwd")
        uid = entry.uid

    if not group_part:
        gid = entry.gid if entry is not None else 0
    elif group_part.isdigit():
        gid = _check_id(int(group_part), field, problem)
    else:
        if context.group is None:
            raise problem(
                field, f"group {group_part!r} cannot be resolved: the image has no /etc/group"
            )
        group_entry = next((g for g in groups if g.name == group_part), None)
        if group_entry is None:
            raise problem(field, f"group {group_part!r} not found in the image's /etc/group")
        gid = group_entry.gid

    additional: list[int] = []
    if entry is not None:
        additional = sorted({g.gid for g in groups if entry.name in g.members} - {gid})
    home = entry.home if entry is not None else ("/root" if uid == 0 else "/")
    return uid, gid, additional, home


def _check_id(value: int, field: str, problem: _Problems) -> int:
    if value > _MAX_ID:
        raise problem(field, f"id {value} is out of range (at most {_MAX_ID})")
    return value


# --- capabilities and security options ----------------------------------------------------


def _normalize_capability(name: str, field: str, problem: _Problems) -> str:
    upper = name.strip().upper()
    if upper == "ALL":
        return upper
    full = upper if upper.startswith("CAP_") else f"CAP_{upper}"
    if full not in CAPABILITY_NUMBERS:
        raise problem(field, f"unknown capability {name!r}")
    return full


def _capabilities(container: ContainerSpec, context: SpecContext, problem: _Problems) -> list[str]:
    """The capability set, Docker style: start from the defaults (all when privileged or
    when adding ALL), add, then drop; dropping ALL keeps only what is added explicitly."""
    requested = container.capabilities
    adds = [
        _normalize_capability(name, f"capabilities.add[{i}]", problem)
        for i, name in enumerate(requested.add if requested else [])
    ]
    drops = [
        _normalize_capability(name, f"capabilities.drop[{i}]", problem)
        for i, name in enumerate(requested.drop if requested else [])
    ]
    known = set(
        CAPABILITY_NUMBERS
        if context.available_capabilities is None
        else context.available_capabilities & CAPABILITY_NUMBERS.keys()
    )
    for position, name in enumerate(adds):
        # "All" means all the host can give; a named one it cannot give would only make
        # runc fail later with a bare "operation not permitted".
        if name != "ALL" and name not in known:
            raise problem(
                f"capabilities.add[{position}]",
                f"{name} is not in the runtime's capability bounding set on this host",
            )
    if "ALL" in drops:
        chosen: set[str] = set()
    elif container.privileged:
        chosen = set(known)
    else:
        chosen = set(DEFAULT_CAPABILITIES)
    chosen |= known if "ALL" in adds else set(adds)
    if "ALL" not in drops:
        chosen -= set(drops)
    chosen &= known
    return sorted(chosen, key=CAPABILITY_NUMBERS.__getitem__)


@dataclass(frozen=True, slots=True)
class _Security:
    no_new_privileges: bool
    seccomp: bool


def _security_options(container: ContainerSpec, problem: _Problems) -> _Security:
    no_new_privileges = False
    seccomp = not container.privileged
    for position, option in enumerate(container.security_opts):
        field = f"securityOpts[{position}]"
        key, separator, value = _split_option(option.strip())
        if key == "no-new-privileges":
            if not separator or value == "true":
                no_new_privileges = True
            elif value == "false":
                no_new_privileges = False
            else:
                raise problem(field, f"{option!r}: no-new-privileges takes true or false")
        elif key == "seccomp":
            if value != "unconfined":
                raise problem(
                    field,
                    f"{option!r}: only seccomp=unconfined is supported (kukeon applies its "
                    "own default profile)",
                )
            seccomp = False
        else:
            raise problem(
                field,
                f"unsupported security option {option!r} (supported: no-new-privileges, "
                "no-new-privileges:true|false, seccomp=unconfined)",
            )
    return _Security(no_new_privileges=no_new_privileges, seccomp=seccomp)


def _split_option(option: str) -> tuple[str, str, str]:
    """Docker accepts both ``key:value`` and ``key=value``."""
    positions = [p for p in (option.find(":"), option.find("=")) if p >= 0]
    if not positions:
        return option, "", ""
    at = min(positions)
    return option[:at], option[at], option[at + 1 :]


def _seccomp_profile(capabilities: set[str], machine: str) -> dict[str, Any]:
    denied: list[str] = []
    for names, unless_any_of in _SECCOMP_DENY:
        if not unless_any_of & capabilities:
            denied.extend(names)
    profile: dict[str, Any] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": sorted(denied), "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    }
    architectures = _SECCOMP_ARCHITECTURES.get(machine.lower())
    if architectures:
        profile["architectures"] = list(architectures)
    return profile


# --- rlimits and devices ------------------------------------------------------------------


def _rlimits(context: SpecContext, problem: _Problems) -> list[dict[str, Any]]:
    """Only the rlimits asked for, each capped at the host's current hard limit.

    An unprivileged-looking root still cannot raise a hard limit past the host's (runc
    fails with ``error setting rlimit type 7: operation not permitted``), so asking for
    more gets the most the host allows instead of a container that never starts.
    """
    chosen: dict[str, dict[str, Any]] = {}
    for position, limit in enumerate(context.rlimits):
        name = limit.type.strip().upper()
        name = name if name.startswith("RLIMIT_") else f"RLIMIT_{name}"
        field = f"rlimits[{position}]"
        if name not in RLIMIT_NAMES:
            raise problem(field, f"unknown rlimit {limit.type!r}")
        if limit.soft < 0 or limit.hard < 0:
            raise problem(field, "soft and hard must not be negative")
        if limit.soft > limit.hard:
            raise problem(field, f"soft {limit.soft} is above hard {limit.hard}")
        ceiling = context.host_hard_rlimits.get(name, RLIM_INFINITY)
        hard = min(limit.hard, ceiling)
        chosen[name] = {"type": name, "hard": hard, "soft": min(limit.soft, hard)}
    return list(chosen.values())


def parse_device(entry: str) -> tuple[str, str, str]:
    """``host[:container][:permissions]`` (Docker's ``--device``) → the three parts."""
    parts = entry.split(":")
    host = parts[0]
    container_path, permissions = host, "rwm"
    if len(parts) == 2:
        if parts[1].startswith("/"):
            container_path = parts[1]
        else:
            permissions = parts[1]
    elif len(parts) == 3:
        container_path, permissions = parts[1], parts[2]
    elif len(parts) > 3:
        raise ValueError(f"{entry!r} must be host[:container][:permissions]")
    if not container_path.startswith("/"):
        raise ValueError(f"container path {container_path!r} must be absolute")
    if not permissions or set(permissions) - set("rwm"):
        raise ValueError(f"permissions {permissions!r} must be a combination of r, w and m")
    return host, container_path, permissions


def _devices(
    container: ContainerSpec, context: SpecContext, problem: _Problems
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Device nodes to create and the device-cgroup rules allowing them."""
    nodes: list[dict[str, Any]] = []
    rules: list[dict[str, Any]] = [{"allow": False, "access": "rwm"}]
    if container.privileged:
        rules = [{"allow": True, "access": "rwm"}]
        nodes.extend(_device_node(device, device.path) for device in context.host_devices)
    for position, entry in enumerate(container.devices):
        field = f"devices[{position}]"
        try:
            host, container_path, permissions = parse_device(entry)
        except ValueError as exc:
            raise problem(field, str(exc)) from None
        device = context.devices.get(host)
        if device is None:
            raise problem(field, f"{host} is not a device node on this host")
        nodes = [node for node in nodes if node["path"] != container_path]
        nodes.append(_device_node(device, container_path))
        if not container.privileged:
            rules.append(
                {
                    "allow": True,
                    "type": device.type,
                    "major": device.major,
                    "minor": device.minor,
                    "access": permissions,
                }
            )
    return nodes, rules


def _device_node(device: HostDevice, path: str) -> dict[str, Any]:
    return {
        "path": path,
        "type": device.type,
        "major": device.major,
        "minor": device.minor,
        "fileMode": device.file_mode,
        "uid": device.uid,
        "gid": device.gid,
    }


# --- namespaces and resources -------------------------------------------------------------


def _namespaces(container: ContainerSpec, context: SpecContext) -> list[dict[str, str]]:
    namespaces: list[dict[str, str]] = [{"type": "ipc"}, {"type": "uts"}, {"type": "mount"}]
    if not container.host_pid:
        namespaces.insert(0, {"type": "pid"})
    if not container.host_network:
        if context.netns_path is not None:
            namespaces.append({"type": "network", "path": context.netns_path})
        else:
            namespaces.append({"type": "network"})
    if not container.host_cgroup:
        namespaces.append({"type": "cgroup"})
    return namespaces


def _resources(container: ContainerSpec) -> dict[str, Any]:
    limits = container.resources
    if limits is None:
        return {}
    out: dict[str, Any] = {}
    # Zero means "not set" here, as in kukeon: a zero memory limit or share is never meant.
    if limits.memory_limit_bytes:
        out["memory"] = {"limit": limits.memory_limit_bytes}
    if limits.cpu_shares:
        out["cpu"] = {"shares": limits.cpu_shares}
    if limits.pids_limit:
        out["pids"] = {"limit": limits.pids_limit}
    return out


# --- mounts -------------------------------------------------------------------------------


def _mounts(
    container: ContainerSpec, context: SpecContext, problem: _Problems, *, tty_state: bool = False
) -> list[dict[str, Any]]:
    """The standard kernel filesystems, then the container's own mounts, parents first.

    A mount the container asks for at a standard destination (a bigger /dev/shm, say)
    replaces the standard one.
    """
    privileged = container.privileged
    standard: list[dict[str, Any]] = [
        _mount("/proc", "proc", "proc", ["nosuid", "noexec", "nodev"]),
        _mount("/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        _mount(
            "/dev/pts",
            "devpts",
            "devpts",
            ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        ),
        _mount(
            "/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]
        ),
        _mount("/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]),
        _mount(
            "/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "rw" if privileged else "ro"]
        ),
        _mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            ["nosuid", "noexec", "nodev", "relatime", "rw" if privileged else "ro"],
        ),
    ]

    own: list[tuple[str, dict[str, Any]]] = []
    for position, volume in enumerate(container.volumes):
        field = f"volumes[{position}]"
        if volume.kind == VolumeKind.TMPFS:
            options = ["nosuid", "nodev"]
            if volume.size_bytes:
                options.append(f"size={volume.size_bytes}")
            if volume.mode is not None:
                options.append(f"mode={volume.mode:o}")
            own.append((field, _mount(volume.target, "tmpfs", "tmpfs", options)))
        else:
            assert volume.source is not None  # the api requires it for bind volumes
            options = ["rbind", "ro" if volume.read_only else "rw"]
            own.append((field, _mount(volume.target, "bind", volume.source, options)))
    for position, tmpfs in enumerate(container.tmpfs):
        own.append(
            (f"tmpfs[{position}]", _mount(tmpfs.path, "tmpfs", "tmpfs", _tmpfs_options(tmpfs)))
        )
    for target, source in sorted(context.secret_files.items()):
        options = ["rbind", "ro", "nosuid", "nodev", "noexec"]
        own.append(("secrets", _mount(target, "bind", source, options)))
    if tty_state and context.tty_state_dir is not None:
        # The tty wrapper's state (the onInit create marker): kept on the host, writable
        # even on a read-only root filesystem, surviving task restarts.
        options = ["rbind", "rw", "nosuid", "nodev"]
        own.append(("tty", _mount(ttyinit.STATE_MOUNT, "bind", context.tty_state_dir, options)))
    rendered = (
        ("/etc/hosts", context.hosts_file),
        ("/etc/hostname", context.hostname_file),
        ("/etc/resolv.conf", context.resolv_conf_file),
    )
    for target, rendered_file in rendered:
        # The cell's files are shared by its containers: read-only, so one cannot rewrite
        # its siblings' view. A volume the user mounts there wins.
        if rendered_file is not None and not any(m["destination"] == target for _, m in own):
            own.append(("", _mount(target, "bind", rendered_file, ["rbind", "ro"])))

    seen: dict[str, str] = {}
    for field, mount in own:
        destination = mount["destination"]
        if destination in seen:
            raise problem(
                field or seen[destination],
                f"mount point {destination} is used twice (also by {seen[destination]})",
            )
        seen[destination] = field or destination

    overridden = set(seen)
    mounts = [m for m in standard if m["destination"] not in overridden]
    # A stable sort by depth puts /data before /data/cache whatever the declaration order.
    mounts.extend(sorted((m for _, m in own), key=lambda m: _depth(m["destination"])))
    return mounts


def _mount(destination: str, type_: str, source: str, options: list[str]) -> dict[str, Any]:
    return {
        "destination": posixpath.normpath(destination),
        "type": type_,
        "source": source,
        "options": options,
    }


def _depth(path: str) -> int:
    return len([part for part in posixpath.normpath(path).split("/") if part])


_OPPOSITE_FLAGS: Final = {
    "exec": "noexec",
    "noexec": "exec",
    "suid": "nosuid",
    "nosuid": "suid",
    "dev": "nodev",
    "nodev": "dev",
}


def _tmpfs_options(tmpfs: TmpfsMount) -> list[str]:
    """Docker's ``--tmpfs`` defaults (noexec, nosuid, nodev) with the user's overrides."""
    options = ["nosuid", "nodev", "noexec"]
    for option in tmpfs.options:
        key, has_value, _ = option.partition("=")
        opposite = _OPPOSITE_FLAGS.get(option)
        options = [
            o for o in options if o != opposite and not (has_value and o.partition("=")[0] == key)
        ]
        if option not in options:
            options.append(option)
    if tmpfs.size_bytes and not any(o.startswith("size=") for o in options):
        options.append(f"size={tmpfs.size_bytes}")
    return options


# --- host look-ups (blocking: call through asyncio.to_thread) -------------------------------


def inspect_host_device(path: str) -> HostDevice | None:
    """The device node at ``path`` (symlinks followed), or ``None`` when it is not one."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    if stat.S_ISCHR(info.st_mode):
        kind = "c"
    elif stat.S_ISBLK(info.st_mode):
        kind = "b"
    elif stat.S_ISFIFO(info.st_mode):
        kind = "p"
    else:
        return None
    major, minor = (os.major(info.st_rdev), os.minor(info.st_rdev)) if kind != "p" else (0, 0)
    return HostDevice(
        path=path,
        type=kind,
        major=major,
        minor=minor,
        file_mode=stat.S_IMODE(info.st_mode),
        uid=info.st_uid,
        gid=info.st_gid,
    )


# Directories under /dev that belong to the container's own mounts, never copied from the host.
_SKIPPED_DEV_DIRS: Final = frozenset({"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"})


def list_host_devices(root: str = "/dev") -> list[HostDevice]:
    """Every device node under /dev, for privileged containers (as Docker does)."""
    found: list[HostDevice] = []
    for directory, subdirs, files in os.walk(root):
        if directory == root:
            subdirs[:] = [d for d in subdirs if d not in _SKIPPED_DEV_DIRS]
        for name in sorted(files):
            path = os.path.join(directory, name)
            if path == os.path.join(root, "console") or os.path.islink(path):
                continue
            device = inspect_host_device(path)
            if device is not None and device.type != "p":
                found.append(device)
    return found


def current_hard_rlimits(names: Iterable[str] = RLIMIT_NAMES) -> dict[str, int]:
    """The hard limits of this process (which containerd's shim and runc inherit)."""
    limits: dict[str, int] = {}
    for name in names:
        number = getattr(resource, name, None)
        if number is None:
            continue
        _, hard = resource.getrlimit(number)
        limits[name] = RLIM_INFINITY if hard == resource.RLIM_INFINITY else hard
    return limits


def read_bounding_capabilities(status_path: str = "/proc/self/status") -> frozenset[str] | None:
    """The capability bounding set of a process (this one by default: give containerd's
    ``/proc/<pid>/status`` when it is known), or ``None`` when it cannot be read."""
    try:
        with open(status_path) as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("CapBnd:"):
            try:
                mask = int(line.split(":", 1)[1].strip(), 16)
            except ValueError:
                return None
            return frozenset(
                name for name, number in CAPABILITY_NUMBERS.items() if mask >> number & 1
            )
    return None


# --- the image's user database ------------------------------------------------------------

USER_DATABASE_FILES: Final = ("etc/passwd", "etc/group")
_MAX_USER_DATABASE_BYTES: Final = 4 * 1024 * 1024


class ImageLayer(NamedTuple):
    """A layer blob as the manifest lists it."""

    media_type: str
    digest: str


async def read_image_user_database(
    store: BlobStore, layers: Sequence[ImageLayer]
) -> tuple[str | None, str | None]:
    """The image's /etc/passwd and /etc/group text (``None`` for one it does not have).

    Layers are read from the top down, honouring whiteouts, and reading stops once both
    files are settled, so a user name in ``user`` can be resolved without mounting the
    image. Layers are decompressed off the event loop. A zstd layer (not readable with the
    standard library) on the way raises ``ValueError`` naming it.
    """
    found: dict[str, str | None] = {}
    for layer in reversed(layers):
        blob = await store.read_blob(layer.digest)
        settled = await asyncio.to_thread(
            _user_files_in_layer, blob, layer, [f for f in USER_DATABASE_FILES if f not in found]
        )
        found.update(settled)
        if len(found) == len(USER_DATABASE_FILES):
            break
    return found.get("etc/passwd"), found.get("etc/group")


def _user_files_in_layer(
    blob: bytes, layer: ImageLayer, wanted: Sequence[str]
) -> dict[str, str | None]:
    """The wanted files this layer settles: their text, or ``None`` when it deletes them."""
    media_type = layer.media_type
    if media_type.endswith("+zstd") or media_type.endswith(".zstd"):
        raise ValueError(f"layer {layer.digest} is zstd-compressed ({media_type}): unsupported")
    raw = gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob
    settled: dict[str, str | None] = {}
    opaque_dirs: set[str] = set()
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        members = {posixpath.normpath(m.name.lstrip("/")).removeprefix("./"): m for m in tar}
        for name in members:
            directory, base = posixpath.split(name)
            if base == ".wh..wh..opq":
                opaque_dirs.add(directory)
            elif base.startswith(".wh."):
                deleted = posixpath.join(directory, base[len(".wh.") :])
                if deleted in wanted:
                    settled[deleted] = None
        for path in wanted:
            entry = members.get(path)
            if entry is not None and (entry.isfile() or entry.islnk()):
                handle = tar.extractfile(entry)
                data = handle.read(_MAX_USER_DATABASE_BYTES) if handle is not None else b""
                settled[path] = data.decode("utf-8", errors="replace")
            elif entry is not None or posixpath.dirname(path) in opaque_dirs:
                settled.setdefault(path, None)  # replaced by a non-file, or hidden below
    return settled
