"""Admission: what a caller other than an admin may ask of the host, by realm security level.

kukeond runs as root and turns documents into root-owned host state, so a token that can
write a cell could otherwise act as root (a privileged container, a bind of ``/``, a host
file read as a "secret"). Authorization (``auth``) decides who may write in which realm;
admission decides *what* that write may ask for. It runs in the handlers after the body is
parsed (and, for a merge patch, applied to the stored object) and before anything is
written, on every spec write of a Realm, Space, Cell or CellSet (its template, checked as one
of its cells) by a role other than ``admin``.
Admins, and with them the unix socket, are never checked.

Each realm carries ``spec.securityLevel`` (unset means ``restricted``), modelled on the
Kubernetes Pod Security Standards; docs/kukectl.md has the table and says where it
differs. In short:

- ``restricted``: no privileged, no host network/PID namespace, no host ports, no host
  cgroup namespace, no container ``cniConfigPath`` (a conflist of the cell's own: its
  plugins run as root and it picks any bridge or host interface), no devices, no
  capability beyond the runtime's default set, no ``securityOpts`` but
  ``no-new-privileges``, no ``nestedCgroupRuntime``; host paths only under kukeond's
  ``allowedHostPaths``, ``fromFile`` secrets only under ``secretDirs``, ``fromEnv`` only
  of names in ``allowedSecretEnv`` (all three empty by default, so: none).
- ``baseline``: the same, plus ``hostCgroup`` and the capabilities ``SYS_PTRACE`` and
  ``IPC_LOCK``.
- ``privileged``: everything (the host-path, secret-dir and env lists no longer apply).

A cell is checked as it will run: each container with its space's defaults merged in
(``kukeon.api.defaults``), so a space default the realm's level refuses is refused in the
cells that would inherit it, not only in the space. Paths are compared as written after
normalisation (repeated and ``.`` components removed); a ``..`` component is refused
outright, because the node resolves it after following symlinks, which the API server
(possibly on another host) cannot see. For the same reason a symlink a tenant leaves
below an allowed directory is the node's to refuse: it opens such a bind source itself,
following no link below the directory (``kukeon.runtime.bindpins``).

This module imports only ``kukeon.api`` and the API server's own modules.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

from kukeon.api import (
    AnyResource,
    Cell,
    CellSet,
    ContainerSpec,
    Realm,
    Space,
    VolumeKind,
    key_of,
)
from kukeon.api.defaults import DEFAULTABLE_FIELDS, apply_space_defaults_to_container
from kukeon.api.meta import Kind, quote
from kukeon.api.realm import SecurityLevel, default_namespace
from kukeon.api.space import SpaceContainerDefaults
from kukeon.apiserver.auth import Principal, Role
from kukeon.apiserver.boundaries import refuse_cordoned_node, refuse_unlisted_registries
from kukeon.apiserver.protocols import RegistryApi
from kukeon.apiserver.status import ApiError, Cause
from kukeon.client.paths import display_key
from kukeon.store import NotFound

log = logging.getLogger(__name__)

RUNTIME_DEFAULT_CAPABILITIES: Final = frozenset(
    {
        "CAP_AUDIT_WRITE",
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FOWNER",
        "CAP_FSETID",
        "CAP_KILL",
        "CAP_MKNOD",
        "CAP_NET_BIND_SERVICE",
        "CAP_NET_RAW",
        "CAP_SETFCAP",
        "CAP_SETGID",
        "CAP_SETPCAP",
        "CAP_SETUID",
        "CAP_SYS_CHROOT",
    }
)
"""What every non-privileged container gets (containerd's and Docker's default set). The
runtime's own copy is ``kukeon.runtime.containerd.spec.DEFAULT_CAPABILITIES``; the API
server may not import the runtime, so a unit test keeps the two equal."""

BASELINE_CAPABILITIES: Final = frozenset({"CAP_SYS_PTRACE", "CAP_IPC_LOCK"})
"""Added capabilities ``baseline`` allows beyond the default set. ``SYS_PTRACE`` reaches
only the container's own PID namespace (host PID stays refused) and kernels since 4.8 no
longer let it bypass seccomp; ``IPC_LOCK`` locks memory the cell's cgroup still limits.
Others that are often asked for stay ``privileged``: ``NET_ADMIN`` opens the whole netfilter
and routing code of the kernel to the container (the source of many container escapes),
``SYS_NICE`` lets realtime threads starve the host's CPUs, ``SYS_ADMIN`` is nearly root."""

_LEVEL_ORDER: Final = (SecurityLevel.RESTRICTED, SecurityLevel.BASELINE, SecurityLevel.PRIVILEGED)


def _allows(level: SecurityLevel, needed: SecurityLevel) -> bool:
    return _LEVEL_ORDER.index(level) >= _LEVEL_ORDER.index(needed)


class Violation(NamedTuple):
    """One thing a write asks for that the realm's level refuses, at a field path."""

    field: str
    message: str


REALM_PLACEHOLDER = "{realm}"
"""A component of an allowed directory that stands for the realm of the cell asking:
``/srv/secrets/{realm}`` lets realm ``team`` read under ``/srv/secrets/team`` only."""


@dataclass(frozen=True, slots=True)
class HostAllowances:
    """What kukeond's configuration lets non-admins reach on the host below ``privileged``.

    Directories are normalised absolute paths (see ``normalize_directory``); one with a
    ``{realm}`` component is each realm's own (``for_realm``), one without is shared by
    every realm.
    """

    host_paths: tuple[str, ...] = ()
    """``allowedHostPaths``: bind-volume sources (and a space's ``cniConfigPath``) must be
    one of these directories or under one."""
    secret_dirs: tuple[str, ...] = ()
    """``secretDirs``: a ``fromFile`` secret must be a file under one of these."""
    secret_env: frozenset[str] = frozenset()
    """``allowedSecretEnv``: the names of kukeond's environment a ``fromEnv`` secret may read."""
    secret_roots: tuple[str, ...] = ()
    """Where every realm's secret directories lie (``secret_dirs`` as configured, each cut
    before its ``{realm}``): no bind may reach into or over one (``for_realm`` sets it)."""

    def for_realm(self, realm: str) -> HostAllowances:
        """The directories as a cell of ``realm`` may use them: ``{realm}`` replaced."""
        return HostAllowances(
            host_paths=tuple(_for_realm(path, realm) for path in self.host_paths),
            secret_dirs=tuple(_for_realm(path, realm) for path in self.secret_dirs),
            secret_env=self.secret_env,
            secret_roots=tuple(realm_root(path) for path in self.secret_dirs),
        )


def _for_realm(directory: str, realm: str) -> str:
    parts = directory.split("/")
    return "/".join(realm if part == REALM_PLACEHOLDER else part for part in parts)


def realm_root(directory: str) -> str:
    """``directory`` cut before its ``{realm}`` component (every realm's lie below it)."""
    parts = directory.split("/")
    if REALM_PLACEHOLDER not in parts:
        return directory
    return "/".join(parts[: parts.index(REALM_PLACEHOLDER)]) or "/"


# --- paths ----------------------------------------------------------------------------------


def normalize_host_path(path: str) -> str:
    """``path`` with repeated slashes and ``.`` components removed.

    Raises ValueError for a relative path or one with a ``..`` component: the node resolves
    ``..`` after following symlinks, so its meaning cannot be decided here.
    """
    if not path.startswith("/"):
        raise ValueError(f"{quote(path)} is not an absolute path")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"{quote(path)} has a '..' component")
    return "/" + "/".join(parts)


def normalize_directory(path: str) -> str:
    """A configured directory (``allowedHostPaths``, ``secretDirs``), normalised.

    The configuration is refused, rather than guessed at, when a directory is relative,
    has a ``..`` component, or braces other than a whole ``{realm}`` component.
    """
    try:
        normalized = normalize_host_path(path)
    except ValueError as exc:
        raise ValueError(f"{exc}: give an absolute path without '..'") from None
    for part in normalized.split("/"):
        if ("{" in part or "}" in part) and part != REALM_PLACEHOLDER:
            raise ValueError(
                f"{quote(path)}: {REALM_PLACEHOLDER} must be a whole component of the path "
                "(e.g. /srv/secrets/{realm}), and no other braces are allowed"
            )
    return normalized


def is_under(path: str, directory: str) -> bool:
    """Whether normalised ``path`` is ``directory`` or inside it (both normalised)."""
    return directory == "/" or path == directory or path.startswith(directory + "/")


def _path_problem(path: str, allowed: Sequence[str], what: str) -> str | None:
    """Why ``path`` may not be used for ``what``, or None when it is under ``allowed``."""
    try:
        normalized = normalize_host_path(path)
    except ValueError as exc:
        return f"{exc}; the node would resolve it past symlinks, so it is refused"
    if any(is_under(normalized, directory) for directory in allowed):
        return None
    if not allowed:
        return f"{what} {quote(normalized)} is not allowed: kukeond allows no such host path"
    return f"{what} {quote(normalized)} is not under one of {', '.join(allowed)}"


# --- checks ---------------------------------------------------------------------------------


def _needs(needed: SecurityLevel, what: str) -> str:
    return f"{what} needs security level {needed.value}"


def normalize_capability(name: str) -> str:
    """``sys_admin``, ``SYS_ADMIN`` and ``CAP_SYS_ADMIN`` are one capability (as the runtime)."""
    upper = name.strip().upper()
    if upper == "ALL" or upper.startswith("CAP_"):
        return upper
    return f"CAP_{upper}"


def _capability_level(name: str) -> SecurityLevel:
    full = normalize_capability(name)
    if full in RUNTIME_DEFAULT_CAPABILITIES:
        return SecurityLevel.RESTRICTED
    if full in BASELINE_CAPABILITIES:
        return SecurityLevel.BASELINE
    return SecurityLevel.PRIVILEGED


def _security_option_allowed(option: str) -> bool:
    """Only ``no-new-privileges`` (Docker's spellings) below privileged: it only takes away."""
    text = option.strip()
    positions = [p for p in (text.find(":"), text.find("=")) if p >= 0]
    key = text[: min(positions)] if positions else text
    return key == "no-new-privileges"


def _capability_violations(
    adds: Iterable[str], *, field: str, level: SecurityLevel
) -> list[Violation]:
    found: list[Violation] = []
    for position, name in enumerate(adds):
        needed = _capability_level(name)
        if _allows(level, needed):
            continue
        full = normalize_capability(name)
        if full == "ALL":
            why = "adding ALL capabilities"
        elif needed == SecurityLevel.BASELINE:
            why = f"adding {full} (beyond the runtime's default set)"
        else:
            why = f"adding {quote(full)} (beyond the runtime's default set and baseline's)"
        found.append(Violation(f"{field}[{position}]", _needs(needed, why)))
    return found


def _security_opt_violations(
    options: Iterable[str], *, field: str, level: SecurityLevel
) -> list[Violation]:
    if _allows(level, SecurityLevel.PRIVILEGED):
        return []
    found: list[Violation] = []
    for position, option in enumerate(options):
        if not _security_option_allowed(option):
            found.append(
                Violation(
                    f"{field}[{position}]",
                    _needs(
                        SecurityLevel.PRIVILEGED,
                        f"security option {quote(option)} (only no-new-privileges is allowed below "
                        "privileged; seccomp=unconfined turns the syscall filter off)",
                    ),
                )
            )
    return found


_OWN_CNI: Final = (
    "a CNI configuration of the cell's own (kukeond runs its plugins as root, and the file "
    "chooses what the cell is attached to: another realm's bridge, the host's interfaces; "
    "a file under allowedHostPaths is no safer, since a bind volume may write there)"
)


_HOST_PORT: Final = (
    "a host port (the node forwards it on each of its addresses, 127.0.0.1 included, to "
    "the cell: connections meant for the host's own programs reach the cell whenever "
    "nothing listens there; PSS baseline refuses hostPorts too)"
)


_SPACE_CNI: Final = (
    "kukeond runs, as root, the plugins of the conflist it reads back there for each cell, "
    "and a read-write bind of the directory lets a container choose them: another "
    "realm's bridge, the host's interfaces"
)


def check_container(
    container: ContainerSpec,
    *,
    field: str,
    level: SecurityLevel,
    allowances: HostAllowances,
) -> list[Violation]:
    """Every host power ``container`` asks for beyond ``level``, at paths under ``field``."""
    if _allows(level, SecurityLevel.PRIVILEGED):
        return []
    found: list[Violation] = []
    flags = (
        (container.privileged, "privileged", SecurityLevel.PRIVILEGED, "a privileged container"),
        (container.host_network, "hostNetwork", SecurityLevel.PRIVILEGED, "the host's network"),
        (container.host_pid, "hostPID", SecurityLevel.PRIVILEGED, "the host's PID namespace"),
        (
            container.host_cgroup,
            "hostCgroup",
            SecurityLevel.BASELINE,
            "the host's cgroup namespace",
        ),
    )
    for value, name, needed, what in flags:
        if value and not _allows(level, needed):
            found.append(Violation(f"{field}.{name}", _needs(needed, what)))
    found += _host_object_violations(container, field)
    if container.capabilities is not None:
        found += _capability_violations(
            container.capabilities.add, field=f"{field}.capabilities.add", level=level
        )
    found += _security_opt_violations(
        container.security_opts, field=f"{field}.securityOpts", level=level
    )
    for position, volume in enumerate(container.volumes):
        if volume.kind != VolumeKind.BIND or volume.source is None:
            continue
        where = f"{field}.volumes[{position}].source"
        problem = _path_problem(volume.source, allowances.host_paths, "the host path")
        if problem is None:
            secret_dirs = allowances.secret_roots or allowances.secret_dirs
            problem = _secret_dir_overlap(volume.source, secret_dirs)
        if problem is not None:
            found.append(Violation(where, f"{problem} (allowedHostPaths, below privileged)"))
    for position, secret in enumerate(container.secrets):
        where = f"{field}.secrets[{position}]"
        if secret.from_file is not None:
            problem = _path_problem(secret.from_file, allowances.secret_dirs, "the host file")
            if problem is not None:
                found.append(Violation(f"{where}.fromFile", f"{problem} (secretDirs)"))
        if secret.from_env is not None and secret.from_env not in allowances.secret_env:
            allowed = ", ".join(sorted(allowances.secret_env)) or "none"
            found.append(
                Violation(
                    f"{where}.fromEnv",
                    f"kukeond's environment variable {quote(secret.from_env)} is not one of "
                    f"allowedSecretEnv ({allowed})",
                )
            )
    return found


def _host_object_violations(container: ContainerSpec, field: str) -> list[Violation]:
    """The node's own objects, which only ``privileged`` may ask for: a CNI configuration
    of the cell's own, host devices, host ports."""
    found: list[Violation] = []
    if container.cni_config_path is not None:
        found.append(
            Violation(f"{field}.cniConfigPath", _needs(SecurityLevel.PRIVILEGED, _OWN_CNI))
        )
    for position, device in enumerate(container.devices):
        found.append(
            Violation(
                f"{field}.devices[{position}]",
                _needs(SecurityLevel.PRIVILEGED, f"the host device {quote(device.split(':')[0])}"),
            )
        )
    for position in range(len(container.ports)):
        found.append(
            Violation(f"{field}.ports[{position}]", _needs(SecurityLevel.PRIVILEGED, _HOST_PORT))
        )
    return found


def _secret_dir_overlap(source: str, secret_dirs: Sequence[str]) -> str | None:
    """A bind of a secret directory (or of a directory holding one) would hand every realm's
    host-file secrets to the container, and let a writer plant files there."""
    normalized = normalize_host_path(source)
    for directory in secret_dirs:
        if is_under(normalized, directory) or is_under(directory, normalized):
            return f"the host path {quote(normalized)} overlaps the secret directory {directory}"
    return None


def check_cell(
    cell: Cell, *, level: SecurityLevel, allowances: HostAllowances, space: Space | None
) -> list[Violation]:
    """Everything ``cell`` asks of the host beyond ``level``, as it will run.

    Each container is checked with ``space``'s defaults merged in, because that is what the
    node runs; a violation whose value the container inherits says so.
    """
    if _allows(level, SecurityLevel.PRIVILEGED):
        return []
    allowances = allowances.for_realm(cell.spec.realm_id)
    found: list[Violation] = []
    if cell.spec.nested_cgroup_runtime:
        found.append(
            Violation(
                "spec.nestedCgroupRuntime",
                _needs(SecurityLevel.PRIVILEGED, "delegating every cgroup controller"),
            )
        )
    for position, container in enumerate(cell.spec.containers):
        field = f"spec.containers[{position}]"
        effective = container
        taken: set[str] = set()
        if space is not None:
            effective = apply_space_defaults_to_container(space, container)
            taken = {
                _camel(name)
                for name in DEFAULTABLE_FIELDS
                if getattr(effective, name) != getattr(container, name)
            }
        for violation in check_container(
            effective, field=field, level=level, allowances=allowances
        ):
            # Say where a value the container does not set itself comes from.
            own_field = re.split(r"[.\[]", violation.field[len(field) + 1 :], maxsplit=1)[0]
            if own_field in taken and space is not None:
                violation = violation._replace(
                    message=f"{violation.message} (inherited from "
                    f"spec.defaults.container.{own_field} of space "
                    f"{display_key(key_of(space))!r})"
                )
            found.append(violation)
    return found


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def check_space(
    space: Space, *, level: SecurityLevel, allowances: HostAllowances
) -> list[Violation]:
    """What ``space`` asks of the host beyond ``level``: its container defaults (which
    flow into every cell of the space) and a CNI directory of its own.

    ``allowances`` does not make a ``cniConfigPath`` acceptable: kukeond reads the conflist
    back from that directory for every cell it attaches and runs the plugins it names as
    root, and any directory under ``allowedHostPaths`` may be bound read-write into a
    container, whose writer then picks them (``host-device`` takes a host interface)."""
    del allowances  # kept for the callers: every rule of a space is the level's
    if _allows(level, SecurityLevel.PRIVILEGED):
        return []
    found: list[Violation] = []
    if space.spec.cni_config_path is not None:
        found.append(
            Violation(
                "spec.cniConfigPath",
                _needs(
                    SecurityLevel.PRIVILEGED, f"a CNI directory of the space's own ({_SPACE_CNI})"
                ),
            )
        )
    defaults: SpaceContainerDefaults | None = (
        space.spec.defaults.container if space.spec.defaults is not None else None
    )
    if defaults is not None:
        field = "spec.defaults.container"
        if defaults.capabilities is not None:
            found += _capability_violations(
                defaults.capabilities.add, field=f"{field}.capabilities.add", level=level
            )
        found += _security_opt_violations(
            defaults.security_opts, field=f"{field}.securityOpts", level=level
        )
    return found


def check_realm(new: Realm, current: Realm | None) -> list[Violation]:
    """What a non-admin may not do to a realm itself, whatever its level.

    The level, the quota and the limits are the admin's decisions, so they may not be set
    (on create) or changed (on update). Nor may the containerd namespace: naming another
    realm's (or another program's, such as ``k8s.io``) would put the realm's containers,
    images and teardown there.
    """
    found: list[Violation] = []
    if current is None:
        if new.spec.level != SecurityLevel.RESTRICTED:
            found.append(
                Violation(
                    "spec.securityLevel",
                    f"only an admin may set a realm's security level; a realm created by "
                    f"another role is restricted, not {new.spec.level.value}",
                )
            )
        for field, value in (("quota", new.spec.quota), ("limits", new.spec.limits)):
            if value is not None:
                found.append(
                    Violation(
                        f"spec.{field}",
                        f"only an admin may set a realm's {field}; leave it unset (kukeond's "
                        "defaults then apply)",
                    )
                )
        expected = default_namespace(new.metadata.name)
        if new.spec.namespace != expected:
            found.append(
                Violation(
                    "spec.namespace",
                    f"only an admin may choose a realm's containerd namespace; leave it unset "
                    f"(it is then {expected!r})",
                )
            )
        return found
    if new.spec.level != current.spec.level:
        found.append(
            Violation(
                "spec.securityLevel",
                f"only an admin may change a realm's security level: it is "
                f"{current.spec.level.value}, the request asks for {new.spec.level.value}",
            )
        )
    for field in ("quota", "limits"):
        if getattr(new.spec, field) != getattr(current.spec, field):
            found.append(Violation(f"spec.{field}", f"only an admin may change a realm's {field}"))
    if new.spec.namespace != current.spec.namespace:
        found.append(
            Violation(
                "spec.namespace",
                f"only an admin may change a realm's containerd namespace (it is "
                f"{current.spec.namespace!r})",
            )
        )
    return found


ADMISSION_ANNOTATION: Final = "kukeon.io/admission"
"""Put on a CellSet whose spec a non-admin wrote (value ``ENFORCED``): the cells its
controller creates are admitted then, at the realm's level as it is at that time
(``Admission.cell_refusal``), as a non-admin's write of each cell would be; a level
lowered after the set was written holds for its new cells. A set an admin wrote has none
(admins keep full power, their sets' cells with it). Only the API server sets it: a
non-admin's write neither adds nor removes it but by writing the spec."""
ENFORCED: Final = "enforced"


def mark_enforced(res: CellSet, current: AnyResource | None) -> None:
    """Put or keep ``ADMISSION_ANNOTATION`` on a set a non-admin writes: a new spec is
    marked, a write of the stored spec keeps the mark as stored (present or not)."""
    notes = res.metadata.annotations
    if not isinstance(current, CellSet) or current.spec != res.spec:
        notes[ADMISSION_ANNOTATION] = ENFORCED
    elif (kept := current.metadata.annotations.get(ADMISSION_ANNOTATION)) is not None:
        notes[ADMISSION_ANNOTATION] = kept
    else:
        notes.pop(ADMISSION_ANNOTATION, None)


def forbidden(
    res: AnyResource, *, realm: str, level: SecurityLevel, violations: Sequence[Violation]
) -> ApiError:
    """The 403 Status: the realm, its level, and every violation with its field path."""
    name = display_key(key_of(res))
    message = (
        f'{res.kind} "{name}" is forbidden by the {level.value} security level of realm '
        f'"{realm}": ' + "; ".join(f"{v.field}: {v.message}" for v in violations)
    )
    return ApiError(
        403,
        message,
        reason="Forbidden",
        kind=str(res.kind),
        name=name,
        causes=[Cause(v.field, v.message) for v in violations],
    )


class Admission:
    """Checks the writes of non-admins against their realm's security level.

    ``admit`` reads what the check needs (the realm for its level, a cell's space for its
    defaults) from the registry; a missing one counts as the most restrictive answer (a
    missing realm is ``restricted``, a missing space has no defaults), and the write then
    fails in the store for its missing parent anyway.
    """

    def __init__(
        self,
        *,
        registry: RegistryApi,
        allowances: HostAllowances,
        listed_registries: Sequence[str] = (),
    ) -> None:
        self._registry = registry
        self.allowances = allowances
        self.listed_registries = tuple(listed_registries)
        """kukeond's ``insecureRegistries``: the only registries on the node it pulls from."""

    async def admit(
        self, principal: Principal, res: AnyResource, current: AnyResource | None
    ) -> None:
        """Return when ``principal`` may write ``res`` (replacing ``current``, None on create);
        raise a 403 ApiError naming every violation otherwise. Store errors propagate.
        A non-admin's CellSet is marked on the way (``mark_enforced``)."""
        if principal.role == Role.ADMIN:
            return  # admins, the unix socket included, keep full power
        if isinstance(res, CellSet):
            mark_enforced(res, current)
        # What no security level lets a non-admin do (``boundaries``).
        refuse_unlisted_registries(principal, res, current, listed=self.listed_registries)
        await refuse_cordoned_node(self._registry, principal, res, current)
        violations: list[Violation] = []
        if isinstance(res, Realm):
            previous = current if isinstance(current, Realm) else None
            violations = check_realm(res, previous)
            level = (previous or res).spec.level
            realm = res.metadata.name
        elif isinstance(res, Cell | Space):
            if current is not None and current.spec == res.spec:
                return  # metadata only: nothing new is asked of the host
            realm = key_of(res)[0]
            level = await self._level(realm)
            if isinstance(res, Space):
                violations = check_space(res, level=level, allowances=self.allowances)
            else:
                space = await self._space(realm, res.spec.space_id)
                violations = check_cell(res, level=level, allowances=self.allowances, space=space)
        elif isinstance(res, CellSet):
            if current is not None and current.spec == res.spec:
                return  # metadata only: nothing new is asked of the host
            realm = key_of(res)[0]
            level = await self._level(realm)
            violations = await self._template_violations(res, level)
        else:
            return  # stacks and nodes ask nothing of the host
        if violations:
            log.info(
                "admission refused %s %s of user %r (%s) at level %s: %s",
                res.kind,
                display_key(key_of(res)),
                principal.user,
                principal.role.value,
                level.value,
                "; ".join(v.field for v in violations),
            )
            raise forbidden(res, realm=realm, level=level, violations=violations)

    async def cell_refusal(self, cellset: CellSet) -> str | None:
        """Why the cells ``cellset``'s controller would create now are refused, None when
        they may be: a set a non-admin wrote (``ADMISSION_ANNOTATION``) has its template
        checked at its realm's current level, as that user's write of each cell would be
        (Kubernetes admits a ReplicaSet's new pods when they are created, so a Pod
        Security level lowered since refuses them)."""
        if cellset.metadata.annotations.get(ADMISSION_ANNOTATION) != ENFORCED:
            return None
        realm = cellset.spec.realm_id
        level = await self._level(realm)
        violations = await self._template_violations(cellset, level)
        if not violations:
            return None
        return (
            f'its cells are forbidden by the {level.value} security level of realm "{realm}": '
            + "; ".join(f"{v.field}: {v.message}" for v in violations)
            + "; change the template, or ask an admin to raise the realm's level"
        )

    async def _template_violations(self, res: CellSet, level: SecurityLevel) -> list[Violation]:
        """A set's template checked exactly as one of its cells would be (one from a
        profile as resolved by ``cellsetprofiles``, the message naming the profile)."""
        cell = Cell.model_validate(res.cell_document(res.metadata.name, res.template_hash()))
        space = await self._space(res.spec.realm_id, res.spec.space_id)
        found = check_cell(cell, level=level, allowances=self.allowances, space=space)
        origin = f" (from profile {quote(res.spec.profile)})" if res.spec.profile else ""
        return [Violation("spec.template." + v.field, v.message + origin) for v in found]

    async def _level(self, realm: str) -> SecurityLevel:
        try:
            stored = await self._registry.get(Kind.REALM, (realm,))
        except NotFound:
            return SecurityLevel.RESTRICTED
        return stored.spec.level if isinstance(stored, Realm) else SecurityLevel.RESTRICTED

    async def _space(self, realm: str, space: str) -> Space | None:
        try:
            stored = await self._registry.get(Kind.SPACE, (realm, space))
        except NotFound:
            return None
        return stored if isinstance(stored, Space) else None
