"""The container: one OCI process tree of a cell, declared inside the cell's `spec.containers`.

A container is not stored on its own; it lives in its cell's document and its status in the
cell's `status.containers`. The field names and meanings follow kukeon's v1beta1
`ContainerSpec`, so a cell manifest written for kukeon loads here unchanged. The rules that
concern one field (absolute paths, `KEY=VALUE` env entries, restart knobs that need a
restarting policy) are validators on that field, so each error names its exact path; the
rules across containers (unique ids, the root container) live in `validation`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from enum import StrEnum
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import AfterValidator, BeforeValidator, Field, ValidationInfo, field_validator

# The status models lived here; kept importable from here for their callers.
from kukeon.api.containerstatus import ContainerStatus as ContainerStatus
from kukeon.api.containerstatus import ContainerTerminated as ContainerTerminated
from kukeon.api.containerstatus import PublishedPort as PublishedPort
from kukeon.api.meta import (
    INT64_MAX,
    AbsolutePath,
    Bool,
    DnsLabel,
    FileName,
    Int,
    KukeonModel,
    MountPath,
    NullableList,
    OptionalString,
    check_absolute_path,
    quote,
)
from kukeon.api.probes import Probe, ProbeKind
from kukeon.api.secret import SecretKeyRef
from kukeon.api.signals import parse_signal as parse_signal
from kukeon.api.signals import signal_name

CONTAINERD_IDENTIFIER_MAX = 76
"""containerd's longest identifier (its ``identifiers`` package: container, task, namespace)."""
_CONTAINERD_IDENTIFIER = re.compile(r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*")
_SEPARATOR_RUNS = re.compile(r"[._-]{2,}")
_DIGEST_HEX = 16


def is_containerd_identifier(name: str) -> bool:
    """Whether containerd takes ``name`` as a container, task or namespace identifier: at
    most 76 characters, runs of letters and digits joined by single ``.``, ``_`` or ``-``."""
    return len(name) <= CONTAINERD_IDENTIFIER_MAX and bool(_CONTAINERD_IDENTIFIER.fullmatch(name))


def containerd_identifier(natural: str, *, mark: str, suffix: str = "") -> str:
    """``natural + suffix`` when containerd takes it as an identifier; else a form it takes,
    the same for the same ``natural``: its readable start (runs of separators made one
    ``-``), ``mark``, 16 hex digits of its SHA-256, then ``suffix``.

    Valid names can still make invalid identifiers: DNS labels may hold ``--``, and four
    of them joined pass 76 characters. ``mark`` is a character the natural forms never
    hold, so a shortened identifier cannot equal another object's natural one."""
    if is_containerd_identifier(natural + suffix):
        return natural + suffix
    digest = hashlib.sha256(natural.encode()).hexdigest()[:_DIGEST_HEX]
    room = CONTAINERD_IDENTIFIER_MAX - len(suffix) - len(mark) - _DIGEST_HEX
    head = _SEPARATOR_RUNS.sub("-", natural)[:room].strip("._-")
    return f"{head}{mark}{digest}{suffix}" if head else f"{digest}{suffix}"


def containerd_container_id(*, space: str, stack: str, cell: str, container: str) -> str:
    """containerd's id of a cell's container, `<space>_<stack>_<cell>_<container>` as in
    kukeon, shortened as ``containerd_identifier`` says when containerd would refuse that
    (a `.` marks it: no name holds one).

    The realm is the containerd namespace, so it is not repeated in the id.
    """
    return containerd_identifier(f"{space}_{stack}_{cell}_{container}", mark=".")


def _empty_as_none(value: Any) -> Any:
    return None if value == "" else value


def _one_program(value: Any) -> Any:
    # kubectl's habit, `command: [sh, -c, ...]`, is refused with the fix, not a bare type error.
    if isinstance(value, list):
        raise ValueError(
            "must be one string, the program (it replaces the image's entrypoint); its "
            "arguments go in args, e.g. command: sh with args: [-c, 'echo hi']"
        )
    return _empty_as_none(value)


OptionalDnsLabel = Annotated[DnsLabel | None, BeforeValidator(_empty_as_none)]
ProgramString = Annotated[str | None, BeforeValidator(_one_program)]
OptionalAbsolutePath = Annotated[AbsolutePath | None, BeforeValidator(_empty_as_none)]
OptionalMountPath = Annotated[MountPath | None, BeforeValidator(_empty_as_none)]

# --- numeric bounds, each what the kernel or runc accepts -------------------------------------

MEMORY_LIMIT_MIN = 1024 * 1024
"""What a stored document may hold (the floor before ``MEMORY_LIMIT_START_MIN``); below
it runc's init alone is over the limit."""
MEMORY_LIMIT_START_MIN = 6 * 1024 * 1024
"""The least container memory limit a write may ask for, docker's floor: runc's init is
charged about 2.5 MiB to the container's cgroup before runc sets the limit, so below
that runc fails the start ("unable to set memory limit ... current usage") and a little
above it the container is OOM-killed as soon as it runs (2 MiB was, on this host)."""
MEMORY_LIMIT_MAX = INT64_MAX
"""memory.max is a page count the kernel caps at LONG_MAX bytes; the OCI field is an int64."""
CPU_SHARES_MIN = 2
CPU_SHARES_MAX = 262144
CPU_PERIOD_US = 100_000
"""The CFS period a CPU limit is counted in (the kernel's default, docker's and Kubernetes')."""
CPU_LIMIT_MIN = 10
"""The smallest CPU limit in millicores: a 1 ms quota, the kernel's least, per 100 ms."""
CPU_LIMIT_MAX = 1_000_000
"""cgroup v1 ``cpu.shares`` accepts [2, 262144]; v2 ``cpu.weight`` [1, 10000] is mapped from it."""
EPHEMERAL_STORAGE_MIN = 1024 * 1024
"""The least ephemeral-storage limit: an image's own small writes (a pid file, a cache)."""
PIDS_LIMIT_MAX = 4 * 1024 * 1024
"""``pids.max`` refuses anything above PID_MAX_LIMIT (4,194,304 on 64-bit kernels)."""
RESTART_BACKOFF_MIN = 1
"""The least pause between two restarts: below it a crashing container is a hot loop."""
RESTART_BACKOFF_MAX = 300
"""The longest pause between two restarts, Kubernetes' CrashLoopBackOff cap (5 minutes)."""
RESTART_MAX_RETRIES_MAX = 1000
"""At most this many restarts under on-failure (at the floor, over a quarter of an hour)."""


def memory_limit_too_low(value: int) -> str:
    """Why a container memory limit below ``MEMORY_LIMIT_START_MIN`` is refused."""
    return (
        f"must be 0 (unset) or at least {MEMORY_LIMIT_START_MIN} bytes (6 MiB), got {value}: "
        "runc's own init is charged about 2.5 MiB to the container before the limit is set, "
        "so below that floor (docker's too) the container cannot start or is OOM-killed at once"
    )


def _unset_or_within(value: int | None, low: int, high: int, unit: str = "") -> int | None:
    # Zero means "not set" for these limits, as in kukeon (a zero limit is never meant).
    if value is None or value == 0:
        return value
    if not low <= value <= high:
        raise ValueError(f"must be 0 (unset) or between {low}{unit} and {high}{unit}, got {value}")
    return value


_UNSET_AT_ZERO: dict[str, tuple[int, int, str]] = {
    "memory_limit_bytes": (MEMORY_LIMIT_START_MIN, MEMORY_LIMIT_MAX, " bytes"),
    "cpu_shares": (CPU_SHARES_MIN, CPU_SHARES_MAX, ""),
    "pids_limit": (1, PIDS_LIMIT_MAX, ""),
    "cpu_limit_millicores": (CPU_LIMIT_MIN, CPU_LIMIT_MAX, " millicores"),
    "ephemeral_storage_limit_bytes": (EPHEMERAL_STORAGE_MIN, INT64_MAX, " bytes"),
}
"""The limits of Resources where 0 means unset: the range of a set one, as a negative's
error states it."""


# --- ports ---------------------------------------------------------------------------------


class PortMapping(NamedTuple):
    """One parsed entry of ``ports``, docker's ``[hostIP:][hostPort:]containerPort[/proto]``."""

    host_ip: str | None
    host_port: int | None
    """None when not given or empty (``127.0.0.1::80``: any free port)."""
    container_port: int
    protocol: str


def _port_number(text: str, value: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 5:
        where = "" if text == value else f" in {quote(value, 40)}"
        raise ValueError(f"{quote(text)}{where} is not a port number")
    number = int(text)
    if not 1 <= number <= 65535:
        raise ValueError(f"port {number} of {quote(value)} is not between 1 and 65535")
    return number


def parse_port(value: str) -> PortMapping:
    """Parse docker's ``[hostIP:][hostPort:]containerPort[/tcp|udp]``; ValueError says why.

    An IPv6 host address is written in brackets (``[::1]:53:53/udp``); an empty host port
    after an address (``127.0.0.1::80``) means any free port, as in docker.
    """
    body, slash, protocol = value.partition("/")
    if slash and protocol not in ("tcp", "udp"):
        raise ValueError(f"the protocol of {quote(value)} must be tcp or udp")
    host_ip: str | None = None
    if body.startswith("["):
        address, bracket, rest = body[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"{quote(value)} has an unclosed or unterminated [IPv6] address")
        host_ip, parts = address, rest[1:].split(":")
        if len(parts) != 2:
            raise ValueError(f"{quote(value)}: an address is followed by hostPort:containerPort")
    else:
        parts = body.split(":")
        if len(parts) == 3:
            host_ip, parts = parts[0], parts[1:]
        elif len(parts) > 3:
            raise ValueError(
                f"{quote(value)} is not [hostIP:][hostPort:]containerPort[/tcp|udp] "
                "(write an IPv6 address in brackets)"
            )
    if host_ip is not None:
        try:
            address_ = ipaddress.ip_address(host_ip)
        except ValueError:
            raise ValueError(f"{quote(host_ip)} in {quote(value)} is not an IP address") from None
        if address_.version == 6 and not body.startswith("["):
            raise ValueError(f"write the IPv6 address of {quote(value)} in brackets")
    host_port: int | None = None
    if len(parts) == 2 and (parts[0] or host_ip is None):
        host_port = _port_number(parts[0], value)
    container_port = _port_number(parts[-1], value)
    return PortMapping(host_ip, host_port, container_port, protocol or "tcp")


def _check_port(value: str) -> str:
    parse_port(value)
    return value


PortSpec = Annotated[
    str,
    AfterValidator(_check_port),
    Field(json_schema_extra={"pattern": r"^(.+:)?[0-9]{1,5}(/(tcp|udp))?$"}),
]


def check_env_entry(value: str) -> str:
    """An environment entry is `KEY=VALUE` with a non-empty key (the value may be empty)."""
    key, sep, _ = value.partition("=")
    if not sep or not key:
        raise ValueError(f"must be KEY=VALUE, got {quote(value)}")
    if any(ch.isspace() for ch in key):
        raise ValueError(f"the key of {quote(value)} must not contain whitespace")
    return value


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


EnvEntry = Annotated[
    str, AfterValidator(check_env_entry), Field(json_schema_extra={"pattern": "^[^=\\s]+="})
]
NonEmptyString = Annotated[
    str, AfterValidator(_non_empty), Field(json_schema_extra={"minLength": 1})
]


class RestartPolicy(StrEnum):
    """When the cell controller starts an exited container again. Empty means never."""

    ALWAYS = "always"
    ON_FAILURE = "on-failure"
    NEVER = "never"


class VolumeKind(StrEnum):
    """The mount type a volume entry asks for. Empty means bind, as in kukeon."""

    BIND = "bind"
    TMPFS = "tmpfs"


def _restart_policy_default(value: Any) -> Any:
    return RestartPolicy.NEVER if value in ("", None) else value


def _volume_kind_default(value: Any) -> Any:
    return VolumeKind.BIND if value in ("", None) else value


class VolumeMount(KukeonModel):
    """A host directory bound into the container, or an in-memory tmpfs at `target`."""

    kind: Annotated[VolumeKind, BeforeValidator(_volume_kind_default)] = VolumeKind.BIND
    """bind (a host path) or tmpfs (in memory); empty means bind."""
    source: OptionalString = Field(default=None, validate_default=True)
    """Absolute host path of a bind volume; must be empty for tmpfs."""
    target: MountPath
    """Absolute path in the container; no '..' component; not over what the runtime
    owns (/, /proc, /sys, /dev and its nodes...: docs/kukectl.md, Mounts)."""
    read_only: Bool = False
    """Mount it read-only."""
    size_bytes: Int | None = Field(default=None, ge=0, le=INT64_MAX)
    """Size of a tmpfs volume in bytes, up to 2^63-1 (0 or unset: the kernel's default,
    half the node's RAM); a bind volume refuses it."""
    mode: Int | None = Field(default=None, ge=0, le=0o7777)
    """Permissions of a tmpfs root, e.g. 0755; a bind volume refuses it (its source's)."""

    @field_validator("source")
    @classmethod
    def _source_matches_kind(cls, source: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")
        if kind == VolumeKind.TMPFS and source is not None:
            raise ValueError("must be empty for a tmpfs volume")
        if kind == VolumeKind.BIND:
            if source is None:
                raise ValueError("required for a bind volume")
            check_absolute_path(source)
        return source


class TmpfsMount(KukeonModel):
    """A tmpfs mounted at `path` (the short form of a tmpfs volume)."""

    path: MountPath
    """Absolute path in the container; no '..' component; not over what the runtime
    owns (/, /proc, /sys, /dev and its nodes...: docs/kukectl.md, Mounts)."""
    size_bytes: Int | None = Field(default=None, ge=0, le=INT64_MAX)
    """Size in bytes, up to 2^63-1 (1 is one 4 KiB page); 0 or unset: the kernel's
    default, half the node's RAM."""
    options: NullableList[str] = Field(default_factory=list)
    """Mount options, as `mount -t tmpfs -o` takes them (e.g. `noexec`, `mode=1777`);
    counts in decimal without a leading 0 (the kernel reads that as octal), `size` at
    most 2^63-1 bytes or 10000%, `nr_inodes` 2^54-1; `size=0`: no limit
    (docs/kukectl.md, Mounts)."""


class Capabilities(KukeonModel):
    """Linux capabilities dropped from and added to the image's default set."""

    drop: NullableList[str] = Field(default_factory=list)
    """Names to drop (`NET_RAW` or `CAP_NET_RAW`; `ALL` drops every one)."""
    add: NullableList[str] = Field(default_factory=list)
    """Names to add; beyond the default set only `SYS_PTRACE` and `IPC_LOCK` (baseline)
    below the realm's privileged level."""


class Resources(KukeonModel):
    """The cgroup limits of one container; unset means unlimited."""

    memory_limit_bytes: Int | None = Field(default=None, ge=0, le=MEMORY_LIMIT_MAX)
    """memory.max (v1 memory.limit_in_bytes) in bytes: 0 (unset) or 6 MiB (6291456, below
    it runc's own init does not fit, docker's floor too) to 2^63-1; the scheduler needs
    that much free memory on the node (more than any node has: Unschedulable)."""
    cpu_shares: Int | None = Field(default=None, ge=0, le=CPU_SHARES_MAX)
    """cgroup v1 cpu.shares: 0 (unset) or 2 to 262144 (mapped onto cgroup v2 cpu.weight)."""
    pids_limit: Int | None = Field(default=None, ge=0, le=PIDS_LIMIT_MAX)
    """pids.max: 0 (unset) or 1 to 4194304 (the kernel's PID_MAX_LIMIT)."""
    cpu_limit_millicores: Int | None = Field(default=None, ge=0, le=CPU_LIMIT_MAX)
    """At most this much CPU time, in thousandths of a CPU: 500 is half a CPU, 2000 two
    (Kubernetes' `limits.cpu`, docker's `--cpus`; the CFS quota per 100 ms: cpu.max on
    cgroup v2, cpu.cfs_quota_us on v1); 0 (unset) or 10 to 1000000."""
    ephemeral_storage_limit_bytes: Int | None = Field(default=None, ge=0, le=INT64_MAX)
    """At most this many bytes written into the container's own root filesystem (its
    writable layer), as Kubernetes' `limits.ephemeral-storage`: kukeond measures it
    periodically and stops a container over it (SIGTERM, its grace, SIGKILL; reason
    `Evicted`, a Warning Event) and does not restart it; 0 (unset) or 1 MiB (1048576) to
    2^63-1."""

    @field_validator(*_UNSET_AT_ZERO, mode="before")
    @classmethod
    def _not_negative(cls, value: Any, info: ValidationInfo) -> Any:
        # Before the field's own ge=0: its "must be greater than or equal to 0" read as if
        # 0 to 5 were limits, where 0 means unset and the floor is higher.
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            _unset_or_within(value, *_UNSET_AT_ZERO[str(info.field_name)])
        return value

    @field_validator("memory_limit_bytes")
    @classmethod
    def _memory_floor(cls, value: int | None) -> int | None:
        # Stored documents down to 1 MiB still load; a write is held to the start floor
        # (speccheck), and both say the same.
        if value and value < MEMORY_LIMIT_MIN:
            raise ValueError(memory_limit_too_low(value))
        return value

    @field_validator("ephemeral_storage_limit_bytes")
    @classmethod
    def _storage_floor(cls, value: int | None) -> int | None:
        return _unset_or_within(value, EPHEMERAL_STORAGE_MIN, INT64_MAX, " bytes")

    @field_validator("cpu_shares")
    @classmethod
    def _shares_range(cls, value: int | None) -> int | None:
        return _unset_or_within(value, CPU_SHARES_MIN, CPU_SHARES_MAX)

    @field_validator("cpu_limit_millicores")
    @classmethod
    def _cpu_limit_floor(cls, value: int | None) -> int | None:
        return _unset_or_within(value, CPU_LIMIT_MIN, CPU_LIMIT_MAX, " millicores")


class ContainerSecret(KukeonModel):
    """A credential the daemon resolves when the container starts.

    Without `mountPath` it becomes the environment variable `name`; with it, a read-only
    file (0400, owned by the container's user). Only the reference is stored, never the
    value. The value comes from exactly one of `secretRef` (a Secret, looked up in the
    cell's stack, then its space, then its realm), `fromFile` or `fromEnv`.
    """

    name: FileName
    """The variable's or file's name: letters, digits, '-', '_' and '.'; not '.' or '..'."""
    from_file: OptionalAbsolutePath = None
    """Host file the daemon reads the value from."""
    secret_ref: SecretKeyRef | None = None
    """A key of a Secret; the cell waits (reason SecretUnavailable) until it exists."""
    from_env: OptionalString = Field(default=None, validate_default=True)
    """A variable of kukeond's own environment the value is taken from (below the privileged
    level, only names in kukeond's `allowedSecretEnv`)."""
    mount_path: OptionalMountPath = None
    """Mount the value read-only at this path instead of setting an env variable; not over
    what the runtime owns (/, /proc, /sys, /dev and its nodes...: docs/kukectl.md, Mounts)."""

    @field_validator("from_env")
    @classmethod
    def _exactly_one_source(cls, from_env: str | None, info: ValidationInfo) -> str | None:
        if "from_file" not in info.data or "secret_ref" not in info.data:
            return from_env  # fromFile/secretRef is invalid; that error is reported already
        given = [
            source
            for source, value in (
                ("fromFile", info.data["from_file"]),
                ("secretRef", info.data["secret_ref"]),
                ("fromEnv", from_env),
            )
            if value is not None
        ]
        if not given:
            raise ValueError("exactly one of secretRef, fromFile or fromEnv is required")
        if len(given) > 1:
            raise ValueError(f"exactly one of secretRef, fromFile or fromEnv, got {given}")
        return from_env


class TtyStage(KukeonModel):
    """One script of an attachable container's `tty.onInit`, run in its TTY before the command.

    `runOn: start` (the default) runs it at every start of the container's task, restarts
    included; `runOn: create` only at the first start after the container was created with
    this spec. A stage without a script does nothing.
    """

    script: OptionalString = None
    """Shell commands, run by `/bin/sh` in the container's terminal."""
    run_on: Annotated[Literal["start", "create"] | None, BeforeValidator(_empty_as_none)] = None
    """`start` (default): at every start of the task; `create`: at the first start only."""


class ContainerTty(KukeonModel):
    """Shell niceties of an attachable container (prompt, init scripts, wrapper log).

    kukeond implements them without adding anything to the image: `prompt` becomes `PS1`;
    `onInit` and `logFile` run the container's command under a small `/bin/sh` wrapper
    (see `kukeon.runtime.containerd.ttyinit`), so they need a POSIX shell at `/bin/sh`.
    """

    prompt: OptionalString = None
    """The TTY's shell prompt (`PS1`)."""
    on_init: NullableList[TtyStage] = Field(default_factory=list)
    """Scripts run in the TTY, in order, before the command starts; the first that fails
    stops the start (the command does not run, the container exits with its status)."""
    log_file: OptionalAbsolutePath = None
    """Where, inside the container, the wrapper logs what it ran, exit codes and timings."""
    log_level: Annotated[
        Literal["debug", "info", "warn", "error"] | None, BeforeValidator(_empty_as_none)
    ] = None
    """The least level written to `logFile` (default info); requires `logFile`."""

    @field_validator("log_level")
    @classmethod
    def _level_needs_a_file(cls, level: str | None, info: ValidationInfo) -> str | None:
        if level is not None and "log_file" in info.data and info.data["log_file"] is None:
            raise ValueError("requires tty.logFile (it filters that file)")
        return level

    def set_fields(self) -> list[str]:
        """The options this block sets, in manifest spelling (empty: as if it were absent)."""
        found: list[str] = []
        if self.prompt:
            found.append("tty.prompt")
        if any(stage.script for stage in self.on_init):
            found.append("tty.onInit")
        if self.log_file is not None:
            found.append("tty.logFile")
        if self.log_level is not None:
            found.append("tty.logLevel")
        return found


def _stop_signal_name(value: str | None) -> str | None:
    if value is None:
        return None
    found = parse_signal(value)
    if found is None:
        raise ValueError(
            f"{quote(value)} is not a signal: a name (SIGINT, QUIT, SIGRTMIN+3) or a number"
        )
    return signal_name(found)


class ContainerSpec(KukeonModel):
    """One container of a cell, in kukeon's v1beta1 field names.

    The parent ids (`realmId` ... `cellId`) may be omitted: a container inherits them from
    its cell. Fields that a space can default (`user`, `readOnlyRootFilesystem`,
    `capabilities`, `securityOpts`, `tmpfs`, `resources`) are "unset" when None or empty,
    see `defaults.apply_space_defaults_to_container`.
    """

    id: DnsLabel
    """The container's name, unique in its cell."""
    containerd_id: OptionalString = None
    """containerd's id of the container, `<space>_<stack>_<cell>_<id>`, set by kukeon."""
    realm_id: OptionalDnsLabel = None
    """The cell's realm; may be omitted (taken from the cell), must match it if given."""
    space_id: OptionalDnsLabel = None
    """The cell's space; may be omitted (taken from the cell), must match it if given."""
    stack_id: OptionalDnsLabel = None
    """The cell's stack; may be omitted (taken from the cell), must match it if given."""
    cell_id: OptionalDnsLabel = None
    """The cell's name; may be omitted (taken from the cell), must match it if given."""
    root: Bool = False
    """Marks the root container, which owns the cell's network namespace."""
    image: NonEmptyString
    """OCI image reference."""
    command: ProgramString = None
    """The program to run; the image's entrypoint when unset."""
    args: NullableList[str] = Field(default_factory=list)
    """The arguments: they replace the image's cmd, after `command` (or after the image's
    entrypoint when `command` is unset)."""
    working_dir: OptionalAbsolutePath = None
    """The process's working directory; the image's when unset."""
    env: NullableList[EnvEntry] = Field(default_factory=list)
    """Environment entries, `KEY=VALUE`."""
    ports: NullableList[PortSpec] = Field(default_factory=list)
    """Host ports published on the cell's node, docker's
    `[hostIP:]hostPort:containerPort[/tcp|udp]` (ports 1-65535): DNAT from the node's IPv4
    addresses (or `hostIP` only), 127.0.0.1 included, to the cell's address. Refused: no host
    port, an IPv6 `hostIP`, a `hostNetwork` container, a host port another cell holds."""
    volumes: NullableList[VolumeMount] = Field(default_factory=list)
    """Host directories bound into the container (`kind: bind`) or in-memory tmpfs mounts
    (`kind: tmpfs`); below the realm's privileged level a bind's source must be under
    kukeond's `allowedHostPaths`."""
    networks: NullableList[str] = Field(default_factory=list)
    """Other spaces of the cell's realm whose networks the cell joins: one more interface
    each (`eth1`, `eth2`...), under that space's egress policy. Merged over the containers
    (they share the root container's network namespace)."""
    networks_aliases: NullableList[str] = Field(default_factory=list)
    """More names of the cell, in its own /etc/hosts and in those of the cells of its node
    that share one of its networks (docs/cell-networks.md)."""
    privileged: Bool = False
    """Every capability and device, no seccomp or AppArmor confinement: root on the host.
    Needs the realm's privileged level for non-admins."""
    host_network: Bool = False
    """Run in the host's network namespace (no CNI attachment)."""
    host_pid: Bool = Field(default=False, alias="hostPID")
    """Run in the host's PID namespace."""
    host_cgroup: Bool = False
    """Stay in the parent's cgroup namespace instead of a private one."""
    user: OptionalString = None
    """The process's user: `user`, `uid`, `user:group` or `uid:gid` (names from the image's
    /etc/passwd and /etc/group; an id is digits, 0 to 4294967294; a name has no whitespace,
    `/` or `:` and does not begin with `-` or `+`, so `-1` is refused); the image's when unset
    (a space may default it)."""
    read_only_root_filesystem: Bool | None = None
    """Mount the root filesystem read-only; unset inherits the space default."""
    capabilities: Capabilities | None = None
    """Linux capabilities dropped from and added to the default set (a space may default it)."""
    security_opts: NullableList[str] = Field(default_factory=list)
    """docker's `--security-opt` values; below privileged only `no-new-privileges`."""
    devices: NullableList[AbsolutePath] = Field(default_factory=list)
    """Host device nodes made available at the same path, e.g. `/dev/kvm`."""
    tmpfs: NullableList[TmpfsMount] = Field(default_factory=list)
    """In-memory filesystems mounted in the container (the short form of tmpfs volumes)."""
    resources: Resources | None = None
    """The container's cgroup limits (memory, CPU shares, pids); unset means unlimited."""
    secrets: NullableList[ContainerSecret] = Field(default_factory=list)
    """Credentials given to the container as environment variables or read-only files;
    only references are stored."""
    cni_config_path: OptionalAbsolutePath = None
    """A CNI conflist file the cell's first interface is attached with instead of its
    space's network: the root container's only (refused on the others); needs the realm's
    privileged level for non-admins."""
    restart_policy: Annotated[RestartPolicy, BeforeValidator(_restart_policy_default)] = (
        RestartPolicy.NEVER
    )
    """always, on-failure or never; empty means never."""
    restart_backoff_seconds: Int | None = Field(default=None)
    """A fixed pause before every restart, 1 to 300 seconds; needs always or on-failure.
    Unset: Kubernetes' CrashLoopBackOff, the first restart at once, then 10 s doubling for
    each exit in a row after a run under 10 minutes, up to 300 s (a run of 10 minutes or
    more starts over at once)."""
    restart_max_retries: Int | None = Field(default=None)
    """Restarts before giving up under on-failure (default 5), 1 to 1000."""
    stop_signal: Annotated[OptionalString, AfterValidator(_stop_signal_name)] = None
    """The signal that asks the container to stop (`SIGINT`, `QUIT`, `3`, `SIGRTMIN+3`;
    docker's `--stop-signal`, Kubernetes' `lifecycle.stopSignal`), before SIGKILL after the
    cell's grace; unset: the image's `StopSignal`, else SIGTERM. Changing it replaces the
    container."""
    attachable: Bool = False
    """Run the process under a terminal wrapper that `attach` can connect to."""
    tty: ContainerTty | None = None
    """The terminal's prompt, init scripts and wrapper log; requires `attachable: true`."""
    startup_probe: Probe | None = None
    """Until it succeeds, liveness and readiness wait; failing it stops the container."""
    readiness_probe: Probe | None = None
    """While it fails the container, and the cell, are not Ready (nothing is restarted)."""
    liveness_probe: Probe | None = None
    """Failing it stops the container; the restart policy decides what follows."""

    @field_validator("startup_probe", "liveness_probe")
    @classmethod
    def _stops_on_one_result(cls, probe: Probe | None, info: ValidationInfo) -> Probe | None:
        if probe is not None and probe.success_threshold != 1:
            kind = "startup" if info.field_name == "startup_probe" else "liveness"
            raise ValueError(
                f"successThreshold must be 1 for a {kind} probe, got {probe.success_threshold}"
            )
        return probe

    @field_validator("readiness_probe")
    @classmethod
    def _readiness_stops_nothing(cls, probe: Probe | None) -> Probe | None:
        if probe is not None and probe.termination_grace_period_seconds is not None:
            raise ValueError(
                "terminationGracePeriodSeconds is for liveness and startup probes: a "
                "readiness probe never stops the container"
            )
        return probe

    def probes(self) -> dict[ProbeKind, Probe]:
        """The probes this container has, startup first."""
        given = {
            ProbeKind.STARTUP: self.startup_probe,
            ProbeKind.READINESS: self.readiness_probe,
            ProbeKind.LIVENESS: self.liveness_probe,
        }
        return {kind: probe for kind, probe in given.items() if probe is not None}

    @field_validator("restart_backoff_seconds")
    @classmethod
    def _backoff_needs_restarting_policy(
        cls, value: int | None, info: ValidationInfo
    ) -> int | None:
        if value is None:
            return value
        if not RESTART_BACKOFF_MIN <= value <= RESTART_BACKOFF_MAX:
            raise ValueError(
                f"must be between {RESTART_BACKOFF_MIN} and {RESTART_BACKOFF_MAX} seconds, "
                f"got {value}"
            )
        policy = info.data.get("restart_policy")
        if policy is not None and policy not in (RestartPolicy.ALWAYS, RestartPolicy.ON_FAILURE):
            raise ValueError("requires restartPolicy always or on-failure")
        return value

    @field_validator("restart_max_retries")
    @classmethod
    def _retries_need_on_failure(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is None:
            return value
        if not 1 <= value <= RESTART_MAX_RETRIES_MAX:
            raise ValueError(f"must be between 1 and {RESTART_MAX_RETRIES_MAX}, got {value}")
        policy = info.data.get("restart_policy")
        if policy is not None and policy != RestartPolicy.ON_FAILURE:
            raise ValueError("requires restartPolicy on-failure")
        return value

    @field_validator("tty")
    @classmethod
    def _tty_needs_attachable(
        cls, tty: ContainerTty | None, info: ValidationInfo
    ) -> ContainerTty | None:
        # As in kukeon: an empty block is as good as none; any option needs a TTY.
        if tty is not None and info.data.get("attachable") is False:
            used = tty.set_fields()
            if used:
                name = info.data.get("id")
                who = f"container {name!r}" if name else "the container"
                raise ValueError(
                    f"{', '.join(used)} of {who} requires attachable: true "
                    "(only an attachable container has a TTY)"
                )
        return tty
