"""The OCI runtime spec of one container, built by a pure function from its ContainerSpec.

containerd stores whatever runtime spec it is given and runc runs it, so every isolation
decision kukeon makes about a container lands here: process args and env (Docker semantics
against the image config), user and groups, capabilities, devices, rlimits, mounts, masked
paths, namespaces, the cgroup path and limits, and a seccomp filter. Keeping it pure means
every branch is unit-tested without a host; everything that needs the host (stat of a
device, the current hard rlimits, the image's passwd file, the cell's netns) is looked up
by the caller and handed over in a :class:`SpecContext`.

The builder's parts live next to it, one concept each:

- :mod:`.capabilities` — the capability tables, the capability set, ``securityOpts`` and
  the seccomp filter;
- :mod:`.mounts` — the filesystems the container sees (standard, volumes, tmpfs, secrets,
  the cell's rendered files);
- :mod:`.userdb` — the image's /etc/passwd and /etc/group: read from its layers
  (``read_image_user_database``) and resolved into uid, gid and groups;
- :mod:`.hostlookup` — the host look-ups that fill a :class:`SpecContext`
  (``inspect_host_device``, ``list_host_devices``, ``current_hard_rlimits``,
  ``read_bounding_capabilities``). They BLOCK: call them through ``asyncio.to_thread`` or
  once at start, never on the event loop inside a reconcile;
- :mod:`.specerrors` — :class:`RuntimeSpecError`, the error naming the field.

The names callers import from this module (the host look-ups, ``ImageLayer``,
``read_image_user_database``, ``DEFAULT_CAPABILITIES``, ``RuntimeSpecError``) are
re-exported here.

The output is runtime-spec 1.0.2 JSON as runc 1.1 takes it; ``root.path`` is ``rootfs``
(containerd's task rootfs mounts are placed there).
"""

from __future__ import annotations

import platform
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from kukeon.api import ContainerSpec, ContainerTty, VolumeKind
from kukeon.api.container import CPU_PERIOD_US
from kukeon.runtime.cgroups.records import CgroupNesting
from kukeon.runtime.containerd import ttyinit
from kukeon.runtime.containerd.capabilities import (
    DEFAULT_CAPABILITIES,
    capability_set,
    seccomp_profile,
    security_options,
)
from kukeon.runtime.containerd.cstrings import check_process_strings
from kukeon.runtime.containerd.hostlookup import (
    RLIM_INFINITY,
    RLIMIT_NAMES,
    HostDevice,
    current_hard_rlimits,
    inspect_host_device,
    list_host_devices,
    own_bounding_capabilities,
    read_bounding_capabilities,
)
from kukeon.runtime.containerd.mounts import container_mounts
from kukeon.runtime.containerd.speccheck import check_working_dir
from kukeon.runtime.containerd.specerrors import FieldError, RuntimeSpecError
from kukeon.runtime.containerd.types import ImageConfig
from kukeon.runtime.containerd.userdb import (
    ImageLayer,
    ResolvedUser,
    read_image_user_database,
    resolve_user,
)
from kukeon.runtime.idranges import IdRange

__all__ = [
    "DEFAULT_CAPABILITIES",
    "DEFAULT_MASKED_PATHS",
    "DEFAULT_PATH",
    "DEFAULT_READONLY_PATHS",
    "LABEL_CELL",
    "LABEL_CONTAINER",
    "LABEL_MANAGED",
    "LABEL_REALM",
    "LABEL_SPACE",
    "LABEL_STACK",
    "OCI_VERSION",
    "RLIM_INFINITY",
    "CgroupNesting",
    "HostDevice",
    "ImageLayer",
    "Rlimit",
    "RuntimeSpecError",
    "SpecContext",
    "build_runtime_spec",
    "container_annotations",
    "container_labels",
    "current_hard_rlimits",
    "inspect_host_device",
    "list_host_devices",
    "parse_device",
    "read_bounding_capabilities",
    "read_image_user_database",
]

OCI_VERSION: Final = "1.0.2-dev"
DEFAULT_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOST_PROC: Final = Path("/proc")
"""The node's proc filesystem: the container's is made by the same kernel."""

# Labels (on the containerd container record) and annotations (in the runtime spec) that
# mark a container as kukeon's and say where it belongs.
LABEL_MANAGED: Final = "kukeon.io/managed"
LABEL_REALM: Final = "kukeon.io/realm"
LABEL_SPACE: Final = "kukeon.io/space"
LABEL_STACK: Final = "kukeon.io/stack"
LABEL_CELL: Final = "kukeon.io/cell"
LABEL_CONTAINER: Final = "kukeon.io/container"


# containerd's and Docker's defaults: kernel interfaces that leak host information or let a
# container poke the host are hidden or made read-only (unless privileged). powercap's
# energy counters are a power side channel (CVE-2020-8694); /proc/interrupts counts other
# processes' activity per CPU. runc skips a masked path the kernel does not have.
DEFAULT_MASKED_PATHS: Final = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
)
DEFAULT_READONLY_PATHS: Final = (
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
)


# --- inputs -------------------------------------------------------------------------------


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
    available_capabilities: frozenset[str] | None = field(default_factory=own_bounding_capabilities)
    """The capabilities runc can grant; ``None`` assumes every capability kukeon knows.
    Hosts and sandboxes often withhold some (CAP_SYS_RESOURCE, say), and runc refuses to
    start a container asking for one it cannot have. Defaults to this process's bounding
    set (containerd is normally started with the same one), read from /proc once per
    process and cached (:func:`.hostlookup.own_bounding_capabilities`): building a context
    never reads a file after the first time. Callers that read their host facts at start
    pass it explicitly."""
    machine: str = field(default_factory=platform.machine)
    annotations: Mapping[str, str] = field(default_factory=dict)
    cgroup_nesting: CgroupNesting | None = None
    """Set for a ``nestedCgroupRuntime`` cell: the container's own cgroup is delegated to it
    (a private cgroup namespace, /sys/fs/cgroup writable), and this says whether the host's
    kernel keeps it from rewriting its own limits (the cgroup driver's ``nesting()``)."""
    id_range: IdRange | None = None
    """Set for a ``hostUsers: false`` cell: the container runs in a user namespace of its
    own whose ids 0..size-1 are this range of host ids (its realm's on this node); its
    rootfs must be the image's shifted to the range (:mod:`.remap`)."""
    userns_path: str | None = None
    """The cell's user namespace to join (with ``id_range``): the one that owns the cell's
    network namespace (``runtime.network.userns``), so runc can join that one from inside
    it (``exec``) and mount sysfs; ``None`` makes a new one with the mappings."""


# --- the builder --------------------------------------------------------------------------


def build_runtime_spec(container: ContainerSpec, *, context: SpecContext) -> dict[str, Any]:
    """The OCI runtime spec (runtime-spec 1.0.2 JSON) that runs ``container``.

    Raises :class:`RuntimeSpecError` naming the field when the container asks for something
    that cannot be honoured (a user missing from the image, an unknown capability, ...).
    """
    try:
        return _build(container, context)
    except FieldError as error:
        raise error.of(container=container.id, cell=context.cell) from None


def _build(container: ContainerSpec, context: SpecContext) -> dict[str, Any]:
    # The checks run in this order, so the first mistake reported is always the same one.
    security = security_options(container)
    user = resolve_user(
        container.user, context.image_config.user, passwd=context.passwd, group=context.group
    )
    capabilities = capability_set(container, context.available_capabilities)
    _check_cgroup_nesting(container, context.cgroup_nesting)
    if context.id_range is not None:
        _check_user_namespace(container, user, context.id_range)
    env = _environment(container, context, home=user.home)
    args = _process_args(container, context.image_config)
    cwd = _working_dir(container, context.image_config)
    check_process_strings(
        args=args,
        env=env,
        cwd=cwd,
        image=context.image_config,
        secret_names=context.secret_env,
        home=user.home,
    )
    wrapper = _tty_wrapper(container, context)
    if wrapper is not None:
        _check_tty_wrapper(container, wrapper, context)
        args = ttyinit.wrapped_args(args, wrapper)

    process: dict[str, Any] = {
        "terminal": context.terminal,
        "user": {"uid": user.uid, "gid": user.gid},
        "args": args,
        "env": env,
        "cwd": cwd,
        "capabilities": {
            "bounding": capabilities,
            "effective": capabilities,
            "permitted": capabilities,
        },
        "noNewPrivileges": security.no_new_privileges,
    }
    if user.additional_gids:
        process["user"]["additionalGids"] = user.additional_gids
    rlimits = _rlimits(context)
    if rlimits:
        process["rlimits"] = rlimits

    linux = _linux(container, context, seccomp=security.seccomp, capabilities=capabilities)
    mounts = container_mounts(
        container,
        secret_files=context.secret_files,
        tty_state_dir=context.tty_state_dir if wrapper is not None else None,
        cell_files={
            "/etc/hosts": context.hosts_file,
            "/etc/hostname": context.hostname_file,
            "/etc/resolv.conf": context.resolv_conf_file,
        },
        cgroup_writable=context.cgroup_nesting is not None,
        host_proc=HOST_PROC,
    )
    return {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": "rootfs", "readonly": bool(container.read_only_root_filesystem)},
        "hostname": context.hostname,
        "mounts": mounts,
        "annotations": {**context.annotations, **container_annotations(container, context)},
        "linux": linux,
    }


def _linux(
    container: ContainerSpec, context: SpecContext, *, seccomp: bool, capabilities: list[str]
) -> dict[str, Any]:
    """The spec's ``linux`` section: namespaces, cgroup, devices, masked paths, seccomp."""
    device_nodes, device_rules = _devices(container, context)
    linux: dict[str, Any] = {
        "namespaces": _namespaces(container, context),
        "cgroupsPath": context.cgroups_path,
        "resources": {"devices": device_rules, **_resources(container)},
    }
    if device_nodes:
        linux["devices"] = device_nodes
    if context.id_range is not None:
        linux["uidMappings"] = context.id_range.oci_mappings()
        linux["gidMappings"] = context.id_range.oci_mappings()
    if not container.privileged:
        linux["maskedPaths"] = list(DEFAULT_MASKED_PATHS)
        linux["readonlyPaths"] = list(DEFAULT_READONLY_PATHS)
        if seccomp:
            linux["seccomp"] = seccomp_profile(set(capabilities), context.machine)
    return linux


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


def _check_cgroup_nesting(container: ContainerSpec, nesting: CgroupNesting | None) -> None:
    """A delegated cgroup needs a cgroup namespace, and a kernel guard or a privileged
    container: never a silent hand-over of the host's tree or of the container's limits."""
    if nesting is None:
        return
    if container.host_cgroup:
        raise FieldError(
            "hostCgroup",
            "a nestedCgroupRuntime cell's containers get a private cgroup namespace rooted "
            "at their own cgroup; hostCgroup would hand them the host's whole cgroup tree "
            "writable",
        )
    if not nesting.guarded and not container.privileged:
        raise FieldError(
            "privileged",
            f"nestedCgroupRuntime cannot delegate this container's cgroup safely on this "
            f"host (cgroup v{nesting.version}): {nesting.risk}. Make the container "
            "privileged, or run the cell on a cgroup v2 host whose cgroup2 is mounted with "
            "nsdelegate",
        )


# --- process ------------------------------------------------------------------------------


def _process_args(container: ContainerSpec, image: ImageConfig) -> list[str]:
    # Docker semantics: a command replaces the entrypoint (and with it the image's cmd),
    # args replace the cmd.
    if container.command is not None:
        args = [container.command, *container.args]
    elif container.args:
        args = [*image.entrypoint, *container.args]
    else:
        args = [*image.entrypoint, *image.cmd]
    if not args:
        raise FieldError(
            "command",
            "nothing to run: the image has no entrypoint or cmd, set command or args",
        )
    return args


def _tty_wrapper(container: ContainerSpec, context: SpecContext) -> ContainerTty | None:
    """The tty options when the command runs under the tty wrapper, else ``None``."""
    tty = container.tty if context.terminal else None
    return tty if ttyinit.wrapper_needed(tty) else None


def _check_tty_wrapper(container: ContainerSpec, tty: ContainerTty, context: SpecContext) -> None:
    field = ttyinit.wrapper_field(tty)
    if context.image_has_shell is False:
        raise FieldError(
            field,
            f"runs the command under a {ttyinit.SHELL} wrapper, and the image has no "
            f"{ttyinit.SHELL} (tty.prompt alone needs no shell)",
        )
    size = len(ttyinit.wrapper_script(tty).encode())
    if size > ttyinit.MAX_WRAPPER_BYTES:
        raise FieldError(
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
            raise FieldError(
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
    cwd = posixpath.normpath(posixpath.join("/", cwd))
    whose = "" if container.working_dir else "the image's WORKDIR "
    check_working_dir(cwd, whose=whose)
    return cwd


def _environment(container: ContainerSpec, context: SpecContext, *, home: str) -> list[str]:
    """Image env, then kukeon's identity, then the container's own env and secrets.

    Later layers win on a key collision; a key keeps the position it first appeared at. An
    image's entry without ``=`` unsets its name: not passed on, and not defaulted.
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
    unset: set[str] = set()
    for entry in context.image_config.env:
        key, equals, value = entry.partition("=")
        if equals:
            merged[key] = value
            unset.discard(key)
        else:  # a bare NAME unsets NAME (docker's and containerd's env merging)
            merged.pop(key, None)
            unset.add(key)
    merged.update({key: value for key, value in injected.items() if value})
    for entry in container.env:
        key, _, value = entry.partition("=")
        merged[key] = value
    merged.update(context.secret_env)
    if context.terminal and container.tty is not None and container.tty.prompt:
        # tty.prompt is the more specific setting: it wins over a PS1 in env.
        merged.update(ttyinit.prompt_environment(container.tty.prompt, merged))
    # docker's defaults (HOSTNAME the CRI's too), in this order, each unless the image
    # unset it; HOME always (runc sets it when nothing does).
    defaults = {
        "PATH": DEFAULT_PATH,
        "HOSTNAME": context.hostname,
        "HOME": home,
        "TERM": "xterm" if context.terminal else "",
    }
    for key, value in defaults.items():
        if key == "HOME" or (value and key not in unset):
            merged.setdefault(key, value)
    return [f"{key}={value}" for key, value in merged.items()]


# --- rlimits and devices ------------------------------------------------------------------


def _rlimits(context: SpecContext) -> list[dict[str, Any]]:
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
            raise FieldError(field, f"unknown rlimit {limit.type!r}")
        if limit.soft < 0 or limit.hard < 0:
            raise FieldError(field, "soft and hard must not be negative")
        if limit.soft > limit.hard:
            raise FieldError(field, f"soft {limit.soft} is above hard {limit.hard}")
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
    container: ContainerSpec, context: SpecContext
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
            raise FieldError(field, str(exc)) from None
        device = context.devices.get(host)
        if device is None:
            raise FieldError(field, f"{host} is not a device node on this host")
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
    if context.id_range is not None:
        user = {"type": "user"}
        if context.userns_path is not None:
            user["path"] = context.userns_path
        namespaces.append(user)
    return namespaces


_HOST_ONLY: Final = (
    ("privileged", "privileged", "every capability and device of the host"),
    ("host_network", "hostNetwork", "the host's network namespace"),
    ("host_pid", "hostPID", "the host's PID namespace"),
    ("host_cgroup", "hostCgroup", "the host's cgroup namespace"),
    ("devices", "devices", "host device nodes"),
)


def _check_user_namespace(container: ContainerSpec, user: ResolvedUser, id_range: IdRange) -> None:
    """What a user namespace cannot honour (the API refuses it too: a cell stored before
    is refused here), and a user the namespace does not map (a space's default user, or
    one of the image's, may be above 65535)."""
    for name, field_name, what in _HOST_ONLY:
        if getattr(container, name):
            raise FieldError(
                field_name,
                f"{what} cannot be given to a container in a user namespace (hostUsers: false)",
            )
    ids = [("uid", user.uid), ("gid", user.gid), *(("gid", g) for g in user.additional_gids)]
    for kind, value in ids:
        if value >= id_range.size:
            raise FieldError(
                "user",
                f"{kind} {value} is outside the user namespace's 0-{id_range.size - 1} "
                "(hostUsers: false); choose a user below it",
            )


def _resources(container: ContainerSpec) -> dict[str, Any]:
    limits = container.resources
    if limits is None:
        return {}
    out: dict[str, Any] = {}
    # Zero means "not set" here, as in kukeon: a zero memory limit or share is never meant.
    if limits.memory_limit_bytes:
        out["memory"] = {"limit": limits.memory_limit_bytes}
    cpu: dict[str, int] = {}
    if limits.cpu_shares:
        cpu["shares"] = limits.cpu_shares
    if limits.cpu_limit_millicores:
        cpu["quota"] = limits.cpu_limit_millicores * CPU_PERIOD_US // 1000
        cpu["period"] = CPU_PERIOD_US
    if cpu:
        out["cpu"] = cpu
    if limits.pids_limit:
        out["pids"] = {"limit": limits.pids_limit}
    return out
