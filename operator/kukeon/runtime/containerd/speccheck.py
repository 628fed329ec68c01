"""The runtime spec builder's checks that need nothing of the host or the image.

The builder (:mod:`.spec`) runs on the node, when a container starts: a mistake it finds
there fails the cell (``InvalidSpec``) after the API accepted it. Those of its checks that
depend only on the container's own fields (the security options, the capability names,
the shape of ``user``, the mounts' destinations and tmpfs options) are run here by the
same functions, so the API server can refuse such a write with a 422 naming the field
(``apiserver.writerules.check_runnable``, handed ``runnable_problems`` by kukeond: the API
server does not import the runtime). What depends on the host or the image (a device
node, the capability bounding set, a user name in the image's /etc/passwd) stays the
node's to report. Beside the builder's own checks, a few here refuse what the builder
would take and ignore (a bind volume's `mode`, a tmpfs size given twice, a secret's name
or mount path given twice, a secret variable set by `env` too, a capability both added
and dropped), or what would
fail later for the same reason on every node (an alias, an exec string too long, a
memory limit runc's own init does not fit in).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from functools import partial

from kukeon.api import ContainerSpec
from kukeon.api.container import (
    MEMORY_LIMIT_START_MIN,
    TmpfsMount,
    VolumeKind,
    VolumeMount,
    memory_limit_too_low,
)
from kukeon.runtime.containerd import ttyinit
from kukeon.runtime.containerd.capabilities import capability_set, security_options
from kukeon.runtime.containerd.mounts import container_mounts
from kukeon.runtime.containerd.specerrors import FieldError
from kukeon.runtime.containerd.userdb import check_user
from kukeon.runtime.network.hosts import validate_hostname


def container_errors(container: ContainerSpec) -> list[FieldError]:
    """Each host-independent mistake of ``container``, its field relative to the container
    (``user``, ``capabilities.add[0]``, ``tmpfs[1].options[0]``...); one per check."""
    checks: list[Callable[[], object]] = [
        lambda: security_options(container),
        lambda: capability_set(container, None),
    ]
    if container.user:
        user = container.user
        checks.append(lambda: check_user(user))
    checks += [partial(_alias, i, alias) for i, alias in enumerate(container.networks_aliases)]
    checks += [partial(_exec_string, field, text) for field, text in _exec_strings(container)]
    checks += [
        partial(_bind_only, i, volume, name)
        for i, volume in enumerate(container.volumes)
        for name in ("sizeBytes", "mode")
    ]
    checks += [partial(_one_tmpfs_size, i, tmpfs) for i, tmpfs in enumerate(container.tmpfs)]
    checks += [partial(_secret_once, container, i) for i in range(len(container.secrets))]
    checks.append(lambda: _added_and_dropped(container))
    checks.append(lambda: _memory_floor(container))
    if container.working_dir:
        working_dir = container.working_dir
        checks.append(lambda: check_working_dir(working_dir))
    errors = _mount_errors(container)
    for check in checks:
        try:
            check()
        except FieldError as error:
            errors.append(error)
    return errors


def runnable_problems(container: ContainerSpec) -> list[tuple[str, str]]:
    """``container_errors`` as (field, reason) pairs, the API server's ``ContainerCheck``."""
    return [(error.field, error.reason) for error in container_errors(container)]


def _alias(index: int, alias: str) -> None:
    # The node writes it into /etc/hosts files (its own cell's and its peers'), which take
    # a host name: anything else failed the cell's pass on the node.
    try:
        validate_hostname(alias, field="network alias")
    except ValueError as error:
        raise FieldError(f"networksAliases[{index}]", str(error)) from None


EXEC_STRING_MAX = 131_071
"""Linux's longest argument or environment string (``MAX_ARG_STRLEN``, 32 pages, less its
NUL): execve refuses a longer one with E2BIG, whatever the image."""


def _exec_strings(container: ContainerSpec) -> list[tuple[str, str]]:
    """The strings the container's process is exec'd with, by field."""
    found = [("command", container.command)] if container.command else []
    found += [(f"args[{i}]", arg) for i, arg in enumerate(container.args)]
    return found + [(f"env[{i}]", entry) for i, entry in enumerate(container.env)]


def _exec_string(field: str, text: str) -> None:
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > EXEC_STRING_MAX:
        raise FieldError(
            field,
            f"{size} bytes, over the {EXEC_STRING_MAX} Linux passes to a program in one "
            "argument or environment string (exec would fail: argument list too long)",
        )


def _bind_only(index: int, volume: VolumeMount, name: str) -> None:
    # The builder gives a bind mount its source's own size and permissions: these fields
    # were stored and never used. Zero is what Go writes for an unset number: let through.
    value = volume.size_bytes if name == "sizeBytes" else volume.mode
    if volume.kind == VolumeKind.BIND and value:
        why = (
            f"is for a tmpfs volume: a bind mount has the size and permissions of its "
            f"source {volume.source}; remove it (or use kind: tmpfs)"
        )
        raise FieldError(f"volumes[{index}].{name}", why)


def _one_tmpfs_size(index: int, tmpfs: TmpfsMount) -> None:
    # The builder keeps the options' size= and drops sizeBytes: one of them was ignored.
    if not tmpfs.size_bytes:
        return
    given = [option for option in tmpfs.options if option.partition("=")[0] == "size"]
    if given:
        why = f"and options {given[0]!r} both give the size (the option would win): give one"
        raise FieldError(f"tmpfs[{index}].sizeBytes", why)


def _secret_once(container: ContainerSpec, index: int) -> None:
    # The node keys a container's secrets by name (their values, their staged files) and by
    # mount path, and lays secret variables over `env`: a second of either, or an env
    # entry of the same name, was silently given another secret's value or dropped.
    secret = container.secrets[index]
    earlier = container.secrets[:index]
    field = f"secrets[{index}]"
    twin = next((i for i, other in enumerate(earlier) if other.name == secret.name), None)
    if twin is not None:
        why = f"name {secret.name!r} is also secrets[{twin}]'s: each secret needs its own name"
        raise FieldError(f"{field}.name", why)
    if secret.mount_path is not None:
        paths = [other.mount_path for other in earlier]
        if secret.mount_path in paths:
            why = f"{secret.mount_path} is also secrets[{paths.index(secret.mount_path)}]'s"
            raise FieldError(f"{field}.mountPath", why)
        return
    keys = [entry.partition("=")[0] for entry in container.env]
    if secret.name in keys:
        why = (
            f"the variable {secret.name} is also set by env[{keys.index(secret.name)}], which "
            "the secret would override: set it in one place"
        )
        raise FieldError(f"{field}.name", why)


def _added_and_dropped(container: ContainerSpec) -> None:
    # The set is built add then drop: a capability named in both was dropped, its add
    # ignored. (Adding ALL and dropping some, or dropping ALL and adding some, is how one
    # says "all but" and "only": both mean something.)
    if container.capabilities is None:
        return
    dropped = [name.strip().upper().removeprefix("CAP_") for name in container.capabilities.drop]
    for position, name in enumerate(container.capabilities.add):
        short = name.strip().upper().removeprefix("CAP_")
        if short != "ALL" and short in dropped:
            why = (
                f"{name} is dropped too (capabilities.drop[{dropped.index(short)}]), and the "
                "drop wins: name it in one list"
            )
            raise FieldError(f"capabilities.add[{position}]", why)


def check_working_dir(path: str, *, whose: str = "") -> None:
    """Refuse a working directory in /proc: runc's init starts there, and in
    /proc/self/fd it is a descriptor runc left open onto the host (CVE-2024-21626, fixed
    in runc 1.1.12, not in every host's runc). No program needs to start there; ``whose``
    names the image's WORKDIR when the container does not set its own."""
    normal = posixpath.normpath(posixpath.join("/", path))
    if normal == "/proc" or normal.startswith("/proc/"):
        raise FieldError(
            "workingDir",
            f"{whose}{path[:200]!r} is inside /proc: a container's process may not start "
            "there (a descriptor under /proc/self/fd can reach the host, CVE-2024-21626); "
            "set workingDir to a directory of the image or a volume",
        )


def _memory_floor(container: ContainerSpec) -> None:
    # The model loads limits down to 1 MiB (documents stored before this floor); runc
    # could not start such a container, or it is OOM-killed at once: a write is refused.
    limit = container.resources.memory_limit_bytes if container.resources else None
    if limit and limit < MEMORY_LIMIT_START_MIN:
        raise FieldError("resources.memoryLimitBytes", memory_limit_too_low(limit))


def _mount_errors(container: ContainerSpec) -> list[FieldError]:
    """Every mistake of the container's mounts as its node would make them (placeholder
    sources), each named: the node's builder stops at the first."""
    wrapped = container.attachable and ttyinit.wrapper_needed(container.tty)
    problems: list[FieldError] = []
    container_mounts(
        container,
        secret_files={s.mount_path: "-" for s in container.secrets if s.mount_path},
        tty_state_dir="-" if wrapped else None,
        cell_files={},
        problems=problems,
    )
    return problems
