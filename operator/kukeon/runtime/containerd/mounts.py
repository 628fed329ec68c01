"""The filesystems a container sees: the kernel's standard ones, then its own mounts.

Every container gets /proc, a /dev tmpfs with devpts, shm and mqueue, and /sys with its
cgroup filesystem (read-only unless privileged or the container's cgroup is delegated to it:
a ``nestedCgroupRuntime`` cell; with its cgroup namespace, runc mounts the hierarchies
rooted at the container's own cgroup). Then come the container's volumes (bind
or tmpfs), its ``tmpfs`` entries (Docker's ``--tmpfs`` defaults), the staged secret files
(read-only binds), the tty wrapper's state directory, and the cell's rendered /etc/hosts,
/etc/hostname and /etc/resolv.conf, shared by the cell's containers and so read-only. A
mount of the container's own at a standard destination replaces the standard one; one
destination used twice, a mount at a path the runtime owns (``/``, ``/proc``, a bind
inside ``/proc``, ``/sys`` and its cgroup filesystem, a tmpfs or a secret at ``/dev`` or
one of runc's nodes in it, the tty wrapper's state; see ``_check_destination``) and a
tmpfs option the kernel does not know are each a :class:`~.specerrors.FieldError` naming
the field. Pure: the runtime spec builder
(:mod:`.spec`) hands over what it got from its caller, and the API server runs the same
checks on a write (:mod:`.speccheck`).
"""

from __future__ import annotations

import os
import posixpath
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

from kukeon.api import ContainerSpec, TmpfsMount, VolumeKind
from kukeon.api.meta import quote
from kukeon.runtime.containerd import ttyinit
from kukeon.runtime.containerd.specerrors import FieldError

_T = TypeVar("_T")

CELL_FILES: Final = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")
"""Where the cell's rendered files are mounted, in this order."""

RUNC_PROC_MOUNTS: Final = frozenset(
    {
        "/proc/cpuinfo",
        "/proc/diskstats",
        "/proc/meminfo",
        "/proc/stat",
        "/proc/swaps",
        "/proc/uptime",
        "/proc/loadavg",
        "/proc/slabinfo",
        "/proc/net/dev",
        "/proc/sys/kernel/ns_last_pid",
        "/proc/sys/crypto/fips_enabled",
    }
)
"""The only destinations inside /proc runc binds anything at (its ``checkProcMount``: the
files lxcfs emulates); a bind anywhere else in /proc fails the container's start, "cannot
be mounted because it is inside /proc" (a tmpfs is not checked: over /proc/sys it works)."""

PROC_OF_A_PROCESS: Final = re.compile(r"/proc/(?:[0-9]+|self|thread-self|net)(?:/|$)")
"""Paths in /proc that are a process's own: runc would mount a tmpfs there in its own
process's directory (``/proc/net`` is a link to ``self/net``), which the container's other
processes do not see."""


RUNC_DEV_ENTRIES: Final = frozenset(
    {
        "/dev",
        "/dev/pts",
        *("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"),
        *("/dev/ptmx", "/dev/console", "/dev/fd", "/dev/stdin", "/dev/stdout", "/dev/stderr"),
    }
)
"""What runc makes in a container's /dev: its devpts, the default device nodes (its
``AllowedDevices`` with a path), the /dev/ptmx link and the terminal at /dev/console, and
the /dev/fd, stdin, stdout and stderr links to /proc/self/fd."""


def container_mounts(
    container: ContainerSpec,
    *,
    secret_files: Mapping[str, str],
    tty_state_dir: str | None,
    cell_files: Mapping[str, str | None],
    cgroup_writable: bool = False,
    host_proc: Path | None = None,
    problems: list[FieldError] | None = None,
) -> list[dict[str, Any]]:
    """The standard kernel filesystems, then the container's own mounts, parents first.

    ``secret_files`` maps each staged secret's container path to its host file;
    ``tty_state_dir`` is the host directory of the tty wrapper's state (``None`` when the
    command runs without the wrapper); ``cell_files`` maps each of :data:`CELL_FILES` to
    the cell's rendered file (``None``: not mounted, the image's own is kept);
    ``cgroup_writable`` mounts /sys/fs/cgroup writable for a container that is not
    privileged (its cgroup is delegated to it). ``host_proc``: the node's /proc, where a
    tmpfs inside the container's /proc must find a directory to mask (the node's kernel
    makes the container's /proc alike); None (the API server) does not look.
    ``problems``: each mistake is added to it, and the mount it concerns left out, instead
    of the first one raised (the API server names them all at once).

    A mount the container asks for at a standard destination (a bigger /dev/shm, say)
    replaces the standard one.
    """
    own = _own_mounts(
        container, secret_files=secret_files, tty_state_dir=tty_state_dir, problems=problems
    )
    if host_proc is not None:
        for field, mount in own:
            _check_proc_directory(field, mount, host_proc)
    own += _cell_file_mounts(cell_files, own)
    overridden = _noted(problems, partial(_destinations, own)) or set()
    mounts = [
        m
        for m in _standard_mounts(container.privileged, cgroup_writable=cgroup_writable)
        if m["destination"] not in overridden
    ]
    # A stable sort by depth puts /data before /data/cache whatever the declaration order.
    mounts.extend(sorted((m for _, m in own), key=lambda m: _depth(m["destination"])))
    return mounts


def _standard_mounts(privileged: bool, *, cgroup_writable: bool) -> list[dict[str, Any]]:
    """The kernel filesystems every container gets (/sys and cgroupfs writable if privileged,
    cgroupfs also when ``cgroup_writable``).

    runc turns the ``cgroup`` mount into the host's layout: on cgroup2 one cgroup2 mount,
    on v1 a tmpfs holding one mount per hierarchy (with symlinks for co-mounted ones such
    as ``cpu,cpuacct``). In a cgroup namespace each is a fresh mount rooted at the
    namespace's root, the container's own cgroup; ``rw``/``ro`` applies to all of them.
    """
    return [
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
            [
                "nosuid",
                "noexec",
                "nodev",
                "relatime",
                "rw" if privileged or cgroup_writable else "ro",
            ],
        ),
    ]


def _noted(problems: list[FieldError] | None, check: Callable[[], _T]) -> _T | None:
    """``check()``; None where it raises a FieldError and ``problems`` takes it."""
    if problems is None:
        return check()
    try:
        return check()
    except FieldError as error:
        problems.append(error)
        return None


def _own_mounts(
    container: ContainerSpec,
    *,
    secret_files: Mapping[str, str],
    tty_state_dir: str | None,
    problems: list[FieldError] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """The container's volumes, tmpfs, secrets and tty state, each with its field; a
    mistake goes into ``problems`` when given (that mount left out), else it is raised."""
    own: list[tuple[str, dict[str, Any]]] = []
    for position, volume in enumerate(container.volumes):
        field = f"volumes[{position}].target"
        if volume.kind == VolumeKind.TMPFS:
            options = ["nosuid", "nodev"]
            if volume.read_only:
                options.append("ro")
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
        field = f"tmpfs[{position}].path"
        given = _noted(problems, partial(_tmpfs_options, tmpfs, f"tmpfs[{position}]"))
        if given is not None:
            own.append((field, _mount(tmpfs.path, "tmpfs", "tmpfs", given)))
    secret_fields = {
        s.mount_path: f"secrets[{i}].mountPath" for i, s in enumerate(container.secrets)
    }
    for target, source in sorted(secret_files.items()):
        options = ["rbind", "ro", "nosuid", "nodev", "noexec"]
        field = secret_fields.get(target, "secrets")
        own.append((field, _mount(target, "bind", source, options)))
    kept: list[tuple[str, dict[str, Any]]] = []
    for field, mount in own:
        try:
            _check_destination(field, mount, secret=field.startswith("secrets"))
        except FieldError as error:
            if problems is None:
                raise
            problems.append(error)
            continue
        kept.append((field, mount))
    own = kept
    if tty_state_dir is not None:
        # The tty wrapper's state (the onInit create marker): kept on the host, writable
        # even on a read-only root filesystem, surviving task restarts.
        options = ["rbind", "rw", "nosuid", "nodev"]
        own.append(("tty", _mount(ttyinit.STATE_MOUNT, "bind", tty_state_dir, options)))
    return own


def _check_destination(field: str, mount: Mapping[str, Any], *, secret: bool = False) -> None:
    """Refuse a mount at a path the runtime itself owns, where runc cannot make it or it
    would hide what runc or kukeon put there (the field names the path: ``volumes[0].target``,
    ``tmpfs[1].path``, ``secrets[2].mountPath``). ``secret``: a staged secret, one read-only
    file bound at its path.

    Refused, whatever the mount: the container's root (it would hide the /dev and /proc
    runc mounts), /proc (runc mounts only a proc filesystem there), /sys and
    /sys/fs/cgroup or under it (the container's sysfs and cgroup filesystem: one mounted
    there took them away, and a ``nestedCgroupRuntime`` container could no longer see its
    cgroup), and ``ttyinit.STATE_MOUNT`` or under it (the tty wrapper's state: a mount there
    collides with it, or with the wrapper turned on later). A bind inside /proc but at
    ``RUNC_PROC_MOUNTS`` (runc refuses it; a tmpfs over /proc/sys works). A tmpfs or a
    secret at /dev, /dev/pts, or a node or link runc makes in /dev (``RUNC_DEV_ENTRIES``):
    a tmpfs at /dev/null fails the start ("error reopening /dev/null ... is a directory"),
    a secret there is a read-only file where a device should be, one at /dev hides every
    device, and one over /dev/pts leaves no terminals. A bind volume may stand in there
    (the host's /dev, a host device node, as with docker's ``-v``). Other paths under /dev
    (a tmpfs at /dev/shm, say) and under /sys (masking /sys/firmware) work and are kept.
    """
    destination = mount["destination"]
    is_bind = mount["type"] == "bind"
    if destination == "/":
        raise FieldError(field, "cannot mount over the container's root directory /")
    if destination == "/proc":
        raise FieldError(field, "cannot mount over /proc (the container's own proc filesystem)")
    inside_proc = destination.startswith("/proc/") and destination not in RUNC_PROC_MOUNTS
    if inside_proc and is_bind:
        why = (
            f"cannot bind at {destination}, inside /proc: runc refuses it (only at "
            f"{', '.join(sorted(RUNC_PROC_MOUNTS))})"
        )
        raise FieldError(field, why)
    if destination in ("/sys", "/sys/fs/cgroup") or destination.startswith("/sys/fs/cgroup/"):
        why = (
            f"cannot mount at {destination}: it would hide the container's sysfs or cgroup "
            "filesystem, which the runtime mounts there"
        )
        raise FieldError(field, why)
    if inside_proc and PROC_OF_A_PROCESS.match(destination):
        why = (
            f"cannot mount a tmpfs at {destination}: that part of /proc is a process's own, "
            "and runc would mount it in its own process's directory, unseen by the "
            "container's other processes; a tmpfs in /proc can mask a directory the kernel "
            "makes, such as /proc/sys or /proc/acpi"
        )
        raise FieldError(field, why)
    state = ttyinit.STATE_MOUNT
    if destination == state or destination.startswith(state + "/"):
        why = f"cannot mount at {destination}: kukeon keeps the tty wrapper's state at {state}"
        raise FieldError(field, why)
    if destination == "/dev" and not is_bind:
        why = "a tmpfs cannot replace /dev (it would hide the device nodes, /dev/null first)"
        raise FieldError(field, why)
    if destination in RUNC_DEV_ENTRIES and (secret or not is_bind):
        what = "a secret (a read-only file)" if secret else "a tmpfs (a directory)"
        made = "the container's devices" if destination == "/dev" else "a device, link or devpts"
        why = f"{what} cannot stand at {destination}, where runc makes {made}"
        raise FieldError(field, why)


def _check_proc_directory(field: str, mount: Mapping[str, Any], host_proc: Path) -> None:
    """A tmpfs inside /proc masks a directory there, one this node's kernel makes (which
    ones depends on its configuration: /proc/acpi, /proc/scsi...): runc cannot make one in a
    proc filesystem, nor mount a tmpfs over a file, and the start would fail."""
    destination = mount["destination"]
    if mount["type"] != "tmpfs" or not destination.startswith("/proc/"):
        return
    try:
        mode = os.lstat(host_proc / destination.removeprefix("/proc/")).st_mode
    except OSError:
        found = "nothing"
    else:
        if stat.S_ISDIR(mode):
            return
        found = "a link" if stat.S_ISLNK(mode) else "a file"
    why = (
        f"cannot mount a tmpfs at {destination}: this node's /proc has {found} there, not a "
        "directory (a tmpfs in /proc can mask a directory the kernel makes, such as "
        "/proc/sys or /proc/acpi)"
    )
    raise FieldError(field, why)


def _cell_file_mounts(
    cell_files: Mapping[str, str | None], own: Sequence[tuple[str, dict[str, Any]]]
) -> list[tuple[str, dict[str, Any]]]:
    """The cell's rendered files, each where no mount of the container's own is."""
    mounts: list[tuple[str, dict[str, Any]]] = []
    for target in CELL_FILES:
        rendered_file = cell_files.get(target)
        # The cell's files are shared by its containers: read-only, so one cannot rewrite
        # its siblings' view. A volume the user mounts there wins.
        if rendered_file is not None and not any(m["destination"] == target for _, m in own):
            mounts.append(("", _mount(target, "bind", rendered_file, ["rbind", "ro"])))
    return mounts


def _destinations(own: Sequence[tuple[str, dict[str, Any]]]) -> set[str]:
    """The destinations of the container's own mounts; one used twice is a FieldError."""
    seen: dict[str, str] = {}
    for origin, mount in own:
        destination = mount["destination"]
        if destination in seen:
            raise FieldError(
                origin or seen[destination],
                f"mount point {destination} is used twice (also by {seen[destination]})",
            )
        seen[destination] = origin or destination
    return set(seen)


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


_TMPFS_FLAGS: Final = frozenset(
    {
        *_OPPOSITE_FLAGS,
        *("ro", "rw", "sync", "async", "dirsync", "mand", "nomand"),
        *("atime", "noatime", "diratime", "nodiratime", "relatime", "norelatime"),
        *("strictatime", "nostrictatime", "inode32", "inode64", "noswap", "tmpcopyup"),
    }
)
"""The flags a tmpfs entry may carry: mount(8)'s generic ones, tmpfs(5)'s own, and runc's
``tmpcopyup`` (the image's files at that path copied into the tmpfs)."""

_SIZE: Final = r"[0-9]+[kKmMgGtTpPeE]?"
_TMPFS_VALUES: Final = {
    "size": re.compile(_SIZE + "%?"),
    "nr_blocks": re.compile(_SIZE),
    "nr_inodes": re.compile(_SIZE),
    "mode": re.compile(r"0?[0-7]{1,4}"),
    "uid": re.compile(r"[0-9]{1,10}"),
    "gid": re.compile(r"[0-9]{1,10}"),
    "huge": re.compile(r"never|always|within_size|advise"),
    "mpol": re.compile(r"(default|local|prefer|bind|interleave)(=(static|relative))?(:[0-9,-]+)?"),
}
"""tmpfs(5)'s options with a value, and the shape of the value the kernel takes (only
``size`` takes a percentage; ``huge=deny`` and ``force`` are for the sysfs knob only)."""

TMPFS_COUNT_MAX: Final = {
    "size": (2**63 - 1, "bytes, as sizeBytes: above 2^64 the kernel's count wraps round"),
    "nr_blocks": (2**63 - 1, "blocks, the kernel's own bound"),
    "nr_inodes": (2**54 - 1, "inodes, the kernel's own bound (2^64 / 1024)"),
    "uid": (4294967294, "(4294967295 is no id)"),
    "gid": (4294967294, "(4294967295 is no id)"),
}
"""The largest value of each tmpfs option the kernel takes as written, a decimal number
without leading 0s: it refuses more (EINVAL, a failed start), or, for ``size``, wraps it
round (2^64 bytes became no limit)."""
TMPFS_PERCENT_MAX: Final = 10_000
"""The largest ``size=N%``, 100 times the host's RAM: the kernel counts N% as N times the
RAM's bytes over 100 in 64 bits, which wraps round from about 7 * 10^8 % on a 24 GiB host
(a wrapped size is any size, no limit included)."""
_SHIFTS: Final = {letter: 10 * (index + 1) for index, letter in enumerate("kmgtpe")}


def _tmpfs_count_error(key: str, value: str) -> str | None:
    """Why the kernel would not take ``value`` as written for ``key`` (its shape checked)."""
    bound = TMPFS_COUNT_MAX.get(key)
    if bound is None:
        return None
    percent = value.endswith("%")
    digits = value.rstrip("%")
    shift = _SHIFTS.get(digits[-1:].lower(), 0)
    number = digits.rstrip("kKmMgGtTpPeE")
    if len(number) > 1 and number.startswith("0"):
        # The kernel reads the number in C's base 0: size=0100k was a 64k tmpfs.
        return "written with a leading 0, which the kernel reads as octal: drop the 0s"
    # More digits than any bound has (and Python's int() refuses over 4300).
    count = int(number) << shift if len(number) <= 24 else 2**80
    if percent:
        if count > TMPFS_PERCENT_MAX:
            return f"at most {TMPFS_PERCENT_MAX}% (above it the kernel's count can wrap round)"
        return None
    return f"at most {bound[0]} {bound[1]}" if count > bound[0] else None


def _check_tmpfs_option(option: str, field: str) -> None:
    """An option the kernel would refuse makes runc fail at create with a bare EINVAL."""
    key, has_value, value = option.partition("=")
    shape = _TMPFS_VALUES.get(key)
    if has_value and shape is not None:
        if not shape.fullmatch(value):
            raise FieldError(
                field, f"{quote(option, 80)}: not a valid value for the tmpfs option {key}"
            )
        beyond = _tmpfs_count_error(key, value)
        if beyond is not None:
            raise FieldError(field, f"{quote(option, 80)}: {key} is {beyond}")
        return
    if has_value or option not in _TMPFS_FLAGS:
        raise FieldError(field, f"{quote(option, 80)} is not a tmpfs mount option")


def _tmpfs_options(tmpfs: TmpfsMount, field: str) -> list[str]:
    """Docker's ``--tmpfs`` defaults (noexec, nosuid, nodev) with the user's overrides."""
    options = ["nosuid", "nodev", "noexec"]
    for position, option in enumerate(tmpfs.options):
        _check_tmpfs_option(option, f"{field}.options[{position}]")
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
