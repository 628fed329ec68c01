"""What a container may ask of the kernel: Linux capabilities and the seccomp filter.

The capability set is Docker's (containerd's default set, all when privileged, then the
container's ``capabilities.add``/``drop``), limited to what the runtime can grant on this
host. The seccomp filter is a deny-list that follows it: syscalls of interfaces the kernel
does not namespace stay refused unless the container holds the capability that covers
them. ``securityOpts`` (``no-new-privileges``, ``seccomp=unconfined``) are parsed here too.

Pure functions over the :class:`~kukeon.api.ContainerSpec`; they raise
:class:`~.specerrors.FieldError` naming the field, which the spec builder turns into a
:class:`~.specerrors.RuntimeSpecError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from kukeon.api import ContainerSpec
from kukeon.runtime.containerd.specerrors import FieldError

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


def _normalize_capability(name: str, field: str) -> str:
    upper = name.strip().upper()
    if upper == "ALL":
        return upper
    full = upper if upper.startswith("CAP_") else f"CAP_{upper}"
    if full not in CAPABILITY_NUMBERS:
        raise FieldError(field, f"unknown capability {name!r}")
    return full


def capability_set(container: ContainerSpec, available: frozenset[str] | None) -> list[str]:
    """The capability set, Docker style: start from the defaults (all when privileged or
    when adding ALL), add, then drop; dropping ALL keeps only what is added explicitly.

    ``available`` is what the runtime can grant on this host (``None``: every capability
    kukeon knows); the result never holds more, in the kernel's order.
    """
    requested = container.capabilities
    adds = [
        _normalize_capability(name, f"capabilities.add[{i}]")
        for i, name in enumerate(requested.add if requested else [])
    ]
    drops = [
        _normalize_capability(name, f"capabilities.drop[{i}]")
        for i, name in enumerate(requested.drop if requested else [])
    ]
    known = set(CAPABILITY_NUMBERS if available is None else available & CAPABILITY_NUMBERS.keys())
    for position, name in enumerate(adds):
        # "All" means all the host can give; a named one it cannot give would only make
        # runc fail later with a bare "operation not permitted".
        if name != "ALL" and name not in known:
            raise FieldError(
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
class SecurityOptions:
    """What the container's ``securityOpts`` (and ``privileged``) ask for."""

    no_new_privileges: bool
    seccomp: bool
    """Whether kukeon's seccomp filter applies (not for privileged or unconfined)."""


def security_options(container: ContainerSpec) -> SecurityOptions:
    """The container's ``securityOpts``, Docker's spelling (``key:value`` or ``key=value``)."""
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
                raise FieldError(field, f"{option!r}: no-new-privileges takes true or false")
        elif key == "seccomp":
            if value != "unconfined":
                raise FieldError(
                    field,
                    f"{option!r}: only seccomp=unconfined is supported (kukeon applies its "
                    "own default profile)",
                )
            seccomp = False
        else:
            raise FieldError(
                field,
                f"unsupported security option {option!r} (supported: no-new-privileges, "
                "no-new-privileges:true|false, seccomp=unconfined)",
            )
    return SecurityOptions(no_new_privileges=no_new_privileges, seccomp=seccomp)


def _split_option(option: str) -> tuple[str, str, str]:
    """Docker accepts both ``key:value`` and ``key=value``."""
    positions = [p for p in (option.find(":"), option.find("=")) if p >= 0]
    if not positions:
        return option, "", ""
    at = min(positions)
    return option[:at], option[at], option[at + 1 :]


CLONE_NAMESPACE_FLAGS: Final[Mapping[str, int]] = {
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}
"""The flags of clone(2) that make a namespace (include/uapi/linux/sched.h). Refusing
``unshare`` alone left them open: ``clone(CLONE_NEWUSER|CLONE_NEWNET)`` gave a container
without any added capability every capability over a namespace of its own, CAP_NET_ADMIN
(nf_tables, routing) included, which is what the levels keep for ``privileged``."""

ENOSYS: Final = 38
"""clone3(2) is refused as not implemented, as Docker's profile does: its flags sit in
memory seccomp cannot read, and glibc falls back to clone(2) on ENOSYS (not on EPERM)."""


def _clone_flags_argument(machine: str) -> int:
    """Which argument of clone(2) holds the flags: the second on s390 (its ABI swaps the
    first two), the first everywhere else."""
    return 1 if machine.lower().startswith("s390") else 0


def _namespace_clone_rules(machine: str) -> list[dict[str, Any]]:
    """clone(2) with any namespace flag refused (EPERM, as ``unshare``), one rule per flag
    (a rule's argument conditions must all hold; rules of one syscall are alternatives);
    clone3(2) refused with ENOSYS. Plain clone(2) (fork, threads) is untouched."""
    index = _clone_flags_argument(machine)
    rules: list[dict[str, Any]] = [
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": 1,
            "args": [{"index": index, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}],
        }
        for flag in CLONE_NAMESPACE_FLAGS.values()
    ]
    rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS})
    return rules


def seccomp_profile(capabilities: set[str], machine: str) -> dict[str, Any]:
    """The runtime spec's ``linux.seccomp``: kukeon's deny-list, minus what
    ``capabilities`` cover, for the architectures of ``machine`` (``platform.machine()``).
    Without CAP_SYS_ADMIN a container makes no namespace: neither ``unshare`` nor a
    ``clone`` with a namespace flag (``_namespace_clone_rules``)."""
    denied: list[str] = []
    for names, unless_any_of in _SECCOMP_DENY:
        if not unless_any_of & capabilities:
            denied.extend(names)
    syscalls = [{"names": sorted(denied), "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    if "CAP_SYS_ADMIN" not in capabilities:
        syscalls += _namespace_clone_rules(machine)
    profile: dict[str, Any] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": syscalls}
    architectures = _SECCOMP_ARCHITECTURES.get(machine.lower())
    if architectures:
        profile["architectures"] = list(architectures)
    return profile
