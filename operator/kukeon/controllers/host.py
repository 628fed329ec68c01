"""What the controllers act through: the host adapters and the daemon's host settings.

One record built by kukeond at start and handed to every controller, so a controller's
collaborators are explicit (and a test can build the same record around real adapters
pointed at private roots: a private containerd, a unique cgroup root, a unique nft table).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kukeon.api import Realm
from kukeon.api.realm import SecurityLevel
from kukeon.runtime.cgroups import CgroupDriver
from kukeon.runtime.containerd.client import ContainerdClient
from kukeon.runtime.containerd.crilog import LogRotation
from kukeon.runtime.containerd.namespaces import realm_namespace
from kukeon.runtime.idranges import DEFAULT_CLAIMS_DIR, PoolSettings, RangeAllocator
from kukeon.runtime.network import SpaceNetworks

ID_RANGES_FILE = "userns-ranges.json"
"""In the state directory: which realm has which user-namespace range on this node."""


@dataclass(frozen=True, kw_only=True)
class HostSettings:
    node_name: str
    state_dir: Path
    cni_conf_dir: Path
    insecure_registries: tuple[str, ...] = ()
    stop_grace_seconds: float = 10.0
    """SIGTERM, then SIGKILL after this long (`sh` as PID 1 ignores SIGTERM)."""
    parent_wait_seconds: float = 1.0
    """How soon a child whose parent is not Ready yet looks again."""
    realm_pids_limit: int | None = None
    """`pids.max` of a realm's cgroup whose `spec.limits.pids` is unset; None: no limit."""
    root_pids_limit: int | None = None
    """`pids.max` of the kukeon root cgroup, the parent of every realm's: what all realms
    together may have (the host's limit less `hostReservedPids`); None: no limit."""
    log_rotation: LogRotation = field(default_factory=LogRotation)
    """When a container's logger starts a new log file, and how many it keeps."""
    id_pool: PoolSettings = field(default_factory=PoolSettings)
    """The host ids the realms' user-namespace ranges (`hostUsers: false`) are taken from."""
    id_claims_dir: Path = DEFAULT_CLAIMS_DIR
    """Where every kukeon installation on the host claims the ranges it hands out."""
    allowed_host_paths: tuple[str, ...] = ()
    """kukeond's `allowedHostPaths`: a bind source under one, in a realm below privileged,
    is opened by kukeond without following a link below it (`runtime.bindpins`)."""

    def bind_roots(self, realm: Realm) -> tuple[str, ...]:
        """The allowed directories whose bind sources are pinned in ``realm``'s cells: none
        in a privileged realm, where an editor may bind any host path anyway."""
        if realm.spec.level == SecurityLevel.PRIVILEGED:
            return ()
        return self.allowed_host_paths

    def id_ranges(self) -> RangeAllocator:
        """The realms' user-namespace ranges on this node (kept in the state directory,
        claimed in the host-wide claims directory)."""
        return RangeAllocator(
            self.state_dir / ID_RANGES_FILE,
            self.id_pool,
            claims_dir=self.id_claims_dir,
            node=self.node_name,
        )


@dataclass(frozen=True, kw_only=True)
class Host:
    """The adapters of this host, one real implementation each."""

    settings: HostSettings
    containerd: ContainerdClient
    cgroups: CgroupDriver
    networks: SpaceNetworks

    @property
    def instance(self) -> str:
        """This control plane's tag in host-wide names (``runtime.network.instance_tag``)."""
        return self.networks.settings.instance

    def namespace_of(self, realm: Realm) -> str:
        """The realm's containerd namespace on this host: ``spec.namespace``, except that a
        second control plane on the host puts its tag into the default name, so two
        installations' realms of the same name never share a namespace, container ids and
        images in one containerd."""
        name = realm.metadata.name
        if not realm.spec.namespace or realm.spec.namespace == realm_namespace(name):
            return realm_namespace(name, self.instance)
        return realm.spec.namespace
