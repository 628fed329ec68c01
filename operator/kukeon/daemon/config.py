"""kukeond's configuration: one typed record, merged from a YAML file, KUKEON_* and flags.

Precedence is the usual one for daemons: a flag beats the environment, the environment beats
the file, the file beats the defaults. Every source goes through the same pydantic model, so
a typo in the file (`etcdEndpoint:`) or a malformed value is refused with the field's name
instead of being silently ignored.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from ipaddress import IPv4Network, ip_address
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from kukeon.api.container import PIDS_LIMIT_MAX
from kukeon.api.labelrules import label_key_problem, label_value_problem
from kukeon.api.realm import QUOTA_BYTES_MAX, QUOTA_OBJECTS_MAX, WRITE_RATE_MAX
from kukeon.api.yamlread import load_yaml
from kukeon.apiserver.admission import normalize_directory
from kukeon.apiserver.inflight import MAX_LONG_RUNNING
from kukeon.apiserver.settings import (
    MIN_WRITE_BURST_BYTES,
    REALM_WRITE_BURST_BYTES,
    REALM_WRITE_BYTES_PER_SECOND,
)
from kukeon.fileio import warn_if_open_to_others
from kukeon.runtime.containerd.archivesize import IMAGE_IMPORT_MAX_BYTES
from kukeon.runtime.containerd.crilog import (
    MAX_KEPT_FILES,
    MAX_RECORD_BYTES,
    MIN_ROTATED_SIZE,
    LogRotation,
)
from kukeon.runtime.containerd.zstdwindow import ZSTD_WINDOW_BUDGET_BYTES
from kukeon.runtime.idranges import (
    DEFAULT_CLAIMS_DIR,
    DEFAULT_FIRST_ID,
    DEFAULT_RANGES,
    IdRangeError,
    PoolSettings,
)
from kukeon.runtime.network.bridge import instance_tag
from kukeon.runtime.network.egress import CELL_CONNECTIONS_MAX, DEFAULT_CELL_CONNECTIONS
from kukeon.store.endpoints import UNIX_SCHEMES, endpoint_scheme, split_endpoint, unix_socket_path
from kukeon.store.health import PEER_ASK_TIMEOUT_SECONDS

ENV_PREFIX = "KUKEON_"
DEFAULT_LOG_ROTATION = LogRotation()
_PARTIAL = "partial"
"""Validation context key: the file alone is validated field by field, not across fields."""
GENERATED_METRICS_TOKEN = "metrics-token"
"""The token file kukeond generates in its state directory when `metricsTokenFile` is unset."""
_NO_GID = 2**32 - 1
"""gid_t's all-ones value, chown's "leave the group as it is": the first gid out of range."""

LogLevel = Literal["debug", "info", "warning", "error"]

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
MAX_SERVER_DOMAIN = 253 - 64
"""Room for `<node>.` (a node name is a DNS label, at most 63 characters) in a DNS name."""


class ConfigError(Exception):
    """The configuration could not be read; the message names the source and the field."""


class DaemonConfig(BaseModel):
    """Everything kukeond needs to know about the host it runs on and where etcd is."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    etcd_endpoints: tuple[str, ...] = ()
    """Comma-separated in flags and env; empty means "start the embedded etcd"."""
    etcd_ca_file: Path | None = None
    etcd_cert_file: Path | None = None
    etcd_key_file: Path | None = None
    etcd_username: str | None = None
    etcd_password: str | None = None
    etcd_prefix: str = "/kukeon"
    """Root of kukeon's keys, so several installations can share one etcd."""
    etcd_allow_insecure: bool = False
    """Accept plaintext (`http://` or scheme-less, no CA or client certificate) endpoints
    that need no credential: any off loopback, and those on loopback without
    `etcdUsername` (every local account reaches loopback); refused otherwise, and warned
    about at every start when accepted: whoever reaches such an etcd reads and writes
    every document, so is root on every node."""

    containerd_address: Path = Path("/run/containerd/containerd.sock")
    state_dir: Path = Path("/var/lib/kukeon")
    run_dir: Path = Path("/run/kukeon")
    node_name: str = Field(default_factory=socket.gethostname)
    node_labels: dict[str, str] = Field(default_factory=dict)
    cgroup_root: str = "/kukeon"
    cni_bin_dirs: tuple[Path, ...] = (Path("/usr/lib/cni"), Path("/opt/cni/bin"))
    cni_conf_dir: Path = Path("/etc/cni/net.d")
    subnet_pool: IPv4Network = IPv4Network("10.88.0.0/16")
    netns_dir: Path = Path("/var/run/netns")
    nft_table: str = "kukeon"
    """The `inet` table holding the egress chains (one per kukeond sharing a host)."""
    cell_connections_limit: int = Field(
        default=DEFAULT_CELL_CONNECTIONS, ge=0, le=CELL_CONNECTIONS_MAX
    )
    """Connections (the host's conntrack entries) a bridged cell may hold; its new ones past
    it are dropped, so no cell fills the host's table, which drops every new connection of
    the host once full (0: no limit)."""
    insecure_registries: tuple[str, ...] = ()
    """Registries (`host[:port]`; no port: every port of the host) spoken to over plain
    HTTP, and the only ones on the node itself (loopback, link-local, `localhost`, the
    node's own addresses, a cell's address) pulled from at all; non-admins' images of an
    unlisted loopback, link-local or `localhost` registry are refused on write too
    (`runtime.containerd.registryaccess`)."""
    stop_grace_seconds: float = Field(default=10.0, ge=0)
    """How long a stopped task gets after SIGTERM before SIGKILL."""
    parent_wait_seconds: float = Field(default=1.0, gt=0)
    """How soon a child whose parent is not Ready yet (or a parent with children) looks again."""
    retry_backoff_initial_seconds: float = Field(default=0.5, gt=0)
    """How soon an object whose reconcile failed (a cell waiting for its Secret, an image
    that did not pull) is tried again the first time; each further failure doubles it, up
    to `retryBackoffMaxSeconds` (10 % jitter either way). A watched change (the Secret
    appears) retries it at once. Failed leader loops (the scheduler) back off alike."""
    retry_backoff_max_seconds: float = Field(default=300.0, gt=0)
    """The longest wait between two tries of an object whose reconcile keeps failing."""

    node_lease_ttl: int = Field(default=40, ge=2)
    """Seconds after the last heartbeat before the node's lease (and so the node) is lost."""
    node_heartbeat_seconds: float = Field(default=10.0, gt=0)
    """How often the node renews its lease and writes `lastHeartbeatTime`."""
    node_lost_timeout: float = Field(default=300.0, ge=0)
    """How long a node may be NotReady before its scheduler-placed cells move elsewhere."""
    fence_after_seconds: float | None = Field(default=None, gt=0)
    """Seconds without a renewed heartbeat lease after which the node stops its
    scheduler-placed cells by itself (fencing; pinned cells go on). None: `nodeLeaseTtl`.
    Must stay below `nodeLeaseTtl + nodeLostTimeout`, so a node is fenced before its cells
    are placed elsewhere (docs/fleet.md)."""
    scheduler_interval: float = Field(default=1.0, gt=0)
    """The scheduler's full pass period (new cells wake it sooner)."""
    node_release_seconds: float = Field(default=5.0, gt=0)
    """How often the scheduler leader releases what gone nodes hold on realms, spaces and
    stacks (their finalizer and `status.nodes` entry; docs/fleet.md)."""
    event_ttl_seconds: int = Field(default=3600, ge=2)
    """How long an Event lives after its last occurrence (etcd removes it by itself: it is
    attached to a lease of this TTL, up to 5 % longer)."""

    realm_quota_objects: int = Field(default=10_000, ge=0, le=QUOTA_OBJECTS_MAX)
    """Objects a realm whose `spec.quota.objects` is unset may hold (0: no limit)."""
    realm_quota_storage_bytes: int = Field(default=512 * 1024 * 1024, ge=0, le=QUOTA_BYTES_MAX)
    """Bytes of etcd a realm whose `spec.quota.storageBytes` is unset may take (0: no limit)."""
    realm_image_storage_bytes: int = Field(default=0, ge=0, le=QUOTA_BYTES_MAX)
    """Bytes of image content (containerd's blobs, as stored) a realm whose
    `spec.quota.imageStorageBytes` is unset may hold on this node; an import or pull past
    it (a cell's too) is refused (0: no limit, the default)."""
    image_storage_max_bytes: int = Field(default=0, ge=0, le=QUOTA_BYTES_MAX)
    """Bytes of image content every realm together may hold on this node; an import or pull
    past it (a cell's too) is refused (0: no limit, the default)."""

    realm_pids_limit: int | None = Field(default=None, ge=0, le=PIDS_LIMIT_MAX)
    """`pids.max` of each realm's cgroup whose `spec.limits.pids` is unset (0: no limit);
    unset: half of the host's `kernel.pid_max` or `kernel.threads-max`, the smaller."""
    host_reserved_pids: int | None = Field(default=None, ge=0, le=PIDS_LIMIT_MAX)
    """Tasks every realm together leaves the host (sshd, systemd, kukeond itself): the
    kukeon root cgroup's `pids.max` is the host's limit (`kernel.pid_max` or
    `kernel.threads-max`, the smaller) less this. 0: no ceiling on the root; unset: 10 % of
    the host's limit, at least 1024. Must stay below the host's limit (checked at start)."""

    container_log_max_size: int = DEFAULT_LOG_ROTATION.max_size
    """Bytes a container's log file may reach; before a write would take it past this, the
    container's logger renames it `<container>.log.<n>` and starts a new one (the kubelet's
    `containerLogMaxSize`, 10 MiB). At least 65536 (four of the longest records)."""
    container_log_max_files: int = DEFAULT_LOG_ROTATION.max_files
    """Files a container's log is kept in, the current one included; the oldest is removed
    at a rotation (the kubelet's `containerLogMaxFiles`, 5). At least 2, at most 100 (a
    longer history is a larger `containerLogMaxSize`: each rotation lists the log's
    directory, and a whole log is read file by file). Both apply to tasks
    started (and loggers replaced) after kukeond starts with them; a container's previous
    instance keeps as many more."""

    user_namespace_first_id: int = Field(default=DEFAULT_FIRST_ID, ge=65536)
    """The first host id of the pool the realms' user-namespace ranges (65536 ids each, one
    per realm on this node, for `hostUsers: false` cells) are taken from. No host account
    may own an id of the pool: a range overlapping a uid of /etc/passwd, a gid of /etc/group
    or another user's /etc/subuid or /etc/subgid entry is skipped (those of the user
    `kukeon` are allowed), and so is a range another kukeon installation on the host has
    claimed (`userNamespaceClaimsDir`): several kukeonds on one host may share a pool."""
    user_namespace_ranges: int = Field(default=DEFAULT_RANGES, ge=1)
    """Ranges of 65536 ids in the pool: how many realms may run `hostUsers: false` cells on
    this node."""
    user_namespace_claims_dir: Path = DEFAULT_CLAIMS_DIR
    """The directory, shared by every kukeon installation on the host, where each claims the
    user-namespace ranges it hands out (one file per state directory, under one lock), so
    two installations never give their realms the same host ids. Made 0700 root's at the
    first range; refused when others may write it. Give every installation of a host the
    same one; a private one only for tests."""

    api_max_requests_inflight: int = Field(default=400, gt=0)
    """Short API requests answered at once; more are answered 429 (kube-apiserver's
    `--max-requests-inflight`)."""
    api_max_long_running_per_user: int = Field(default=100, gt=0)
    """Watches, followed logs and exec/attach sessions one token holder may have open."""
    api_max_long_running: int = Field(default=MAX_LONG_RUNNING, gt=0)
    """Long-running API requests (watches, followed logs, exec/attach/port-forward sessions,
    copies, image imports and pulls) open at once, everyone's together, the local admin's
    included; token holders together stop a tenth short of it, the rest kept for the local
    admin and forwarding nodes, and one realm's editors together at a quarter of what token
    holders may. 429 past it (kube-apiserver's long-running budget)."""
    realm_write_bytes_per_second: int = Field(
        default=REALM_WRITE_BYTES_PER_SECOND, ge=0, le=WRITE_RATE_MAX
    )
    """Bytes a realm's non-admin writes may add to etcd a second through this API server,
    sustained; past it they are answered 429 (0: no bound). A realm's
    `spec.quota.writeBytesPerSecond` overrides it. See docs/install.md for the arithmetic."""
    realm_write_burst_bytes: int = Field(
        default=REALM_WRITE_BURST_BYTES, ge=MIN_WRITE_BURST_BYTES, le=QUOTA_BYTES_MAX
    )
    """Bytes a realm's non-admin writes may add at once before the rate applies; at least
    the largest document's cost (1 MiB and 512 bytes)."""

    image_import_max_bytes: int = Field(default=IMAGE_IMPORT_MAX_BYTES, gt=0)
    """Bytes an image archive `kukectl image import` sends may hold, as sent and once
    decompressed (a gzip, bzip2 or xz archive is measured as it arrives); past it the
    import is answered 413 and nothing of it is kept. Its blobs go whole into containerd's
    content store: keep it below the free space of the state directory and containerd's
    root (default 17179869184, 16 GiB)."""

    image_unpacked_max_bytes: int = Field(default=0, ge=0)
    """Bytes the layers one image unpack applies may take once decompressed, the layers of
    every image of one imported archive together (each layer is counted before containerd
    unpacks it, and refused past the bound without inflating it whole); 0: no bound but
    the free space of containerd's snapshotter directory less the DiskPressure reserve,
    which always applies. Past either, the import or pull is
    answered 422 and a cell naming the image fails ImageUnavailable."""
    image_zstd_window_budget_bytes: int = Field(default=ZSTD_WINDOW_BUDGET_BYTES, gt=0)
    """Bytes the windows of the zstd image layers kukeond decompresses at once (to count a
    layer before containerd unpacks it, to read a user name or /bin/sh out of an image) may
    take together: a frame holds its window, up to 128 MiB (`zstd --long=27`), in memory
    while it is read; a read waits for its window's room, first come first served, and a
    layer whose window is larger than this is refused as unreadable, naming it (an import
    or pull is answered 422, a cell fails ImageUnavailable). Default 268435456 (256 MiB:
    one read of the largest window and small ones beside it)."""

    metrics_address: str = "127.0.0.1:9464"
    metrics_token_file: Path | None = None
    """A file whose first non-empty line is the bearer token the `/metrics` listener asks
    for (`Authorization: Bearer <token>`: 401 without it, 403 for another); read at start.
    kukeond refuses to start when other local users may read or replace it (it must be
    root's, mode 0600, or 0640 with the scraper's group). Unset: the listener asks for the
    token kukeond generates at its first start in `<state-dir>/metrics-token` (root's,
    0600; kept, and judged as this file, at every later start; its path logged at start)."""
    metrics_open: bool = False
    """Serve `/metrics` without a token, as kukeond did before it asked for one by default:
    any local account reads every realm's series (a warning at every start). Refused
    beside `metricsTokenFile`."""
    api_address: str | None = None
    """Optional TCP listener (`host:port`); TLS and tokens are then required."""
    api_max_connections: int = Field(default=0, ge=0)
    """TCP connections the listener holds open at once, TLS handshakes included; a new one
    past it is closed at once (the unix socket has no such cap: the local admin's). 0:
    4096, lowered to what the open-files limit leaves once kukeond's own 1,024 and the unix
    socket's requests (`apiMaxRequestsInflight` + `apiMaxLongRunning`) are kept; kukeond
    refuses to start when a cap (or 64 by default) does not fit (see docs/install.md)."""
    api_tls_cert_file: Path | None = None
    api_tls_key_file: Path | None = None
    api_tokens_file: Path | None = None
    api_socket_group: str = "kukeon"
    """The group of the API socket (`0660`) and of the run directory: its members are
    kukeond's local admins, root on this host. A name (made a system group when missing)
    or a numeric gid; empty: root's only. A name is looked up where kukeond runs: in a
    container (the image's `kukeon` is gid 10001) give the host's gid, or empty (the
    image sets `KUKEON_API_SOCKET_GROUP=""`), else whoever has that gid on the host is
    admin."""
    allowed_host_paths: tuple[Path, ...] = ()
    """Host directories a non-admin's bind volumes may be under in realms below the
    privileged security level; empty: none; a `{realm}` component makes one each realm's
    own (see docs/kukectl.md)."""
    secret_dirs: tuple[Path, ...] = ()
    """Host directories a non-admin's `fromFile` secrets may be under below privileged
    (`{realm}`: each realm's own)."""
    allowed_secret_env: tuple[str, ...] = ()
    """Names of kukeond's environment variables a non-admin's `fromEnv` secrets may read
    below privileged."""
    encryption_key_file: Path | None = None
    """The keys Secrets and inline registry passwords are sealed with in etcd (AES-256-GCM,
    see `kukeon.store.encryption`); default `<state-dir>/encryption-keys.yaml`, generated
    (0600) at the first start when missing. Every node of a fleet needs the same file."""
    fleet_token_file: Path | None = None
    """The bearer token (first line of the file) this node sends when it forwards a request
    for a cell of another node to that node's API; the other nodes' tokens files map it to
    role `node`. Without it, such requests are answered 503."""
    fleet_ca_file: Path | None = None
    """The CA that signs the other nodes' API certificates (default: the system's CAs)."""
    fleet_tls_server_domain: str | None = None
    """When set, another node's API certificate is checked for the DNS name
    `<node>.<domain>` (`n2.nodes.kukeon`) instead of the address of its apiEndpoint, so one
    certificate for `*.<domain>` (or one per node, for its name) serves every node whatever
    its address. Unset: the certificate must name the node's InternalIP."""

    log_level: LogLevel = "info"
    bootstrap: bool = True
    api_only: bool = False

    @field_validator("api_socket_group")
    @classmethod
    def _socket_group(cls, value: str) -> str:
        value = value.strip()
        if value and not re.fullmatch(r"[0-9]+|[A-Za-z_][A-Za-z0-9_.-]*\$?", value):
            raise ValueError(f"{value!r} is neither a group name nor a numeric gid")
        if value.isdigit() and int(value) >= _NO_GID:
            raise ValueError(f"gid {value} is out of range (0 to {_NO_GID - 1})")
        return value

    @field_validator("cgroup_root")
    @classmethod
    def _cgroup_root_is_absolute(cls, value: str) -> str:
        if not value.startswith("/") or value.rstrip("/") == "":
            raise ValueError("must be an absolute path below the cgroup mount, e.g. /kukeon")
        return value.rstrip("/")

    @field_validator("container_log_max_size", mode="before")
    @classmethod
    def _log_size_in_bytes(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip().isdigit():
            raise ValueError(
                f"{value[:40]!r} is not a number of bytes: give e.g. 10485760 (10 MiB); "
                "quantities such as 10Mi are not read"
            )
        return value

    @field_validator("container_log_max_size")
    @classmethod
    def _log_size_holds_records(cls, value: int) -> int:
        if value < MIN_ROTATED_SIZE:
            raise ValueError(
                f"{value} bytes is too small: a log file must hold several of the longest "
                f"records ({MAX_RECORD_BYTES} bytes of text each); at least {MIN_ROTATED_SIZE}"
            )
        return value

    @field_validator("container_log_max_files")
    @classmethod
    def _log_files_rotate(cls, value: int) -> int:
        if value < 2:
            raise ValueError(
                f"{value} keeps no file to rotate into: at least 2 (the current file and one "
                "rotated one), as the kubelet's containerLogMaxFiles"
            )
        if value > MAX_KEPT_FILES:
            raise ValueError(
                f"{value} files are too many: at most {MAX_KEPT_FILES} (each rotation lists the "
                "log's directory, and a whole log is read file by file); keep more history "
                "with a larger containerLogMaxSize"
            )
        return value

    @field_validator("fleet_tls_server_domain")
    @classmethod
    def _server_domain_is_a_dns_name(cls, value: str | None) -> str | None:
        if value is None:
            return None
        domain = value.strip().strip(".").lower()
        if not domain:
            return None
        if len(domain) > MAX_SERVER_DOMAIN or not all(
            _DNS_LABEL.fullmatch(label) for label in domain.split(".")
        ):
            raise ValueError(
                f"{value!r} is not a DNS domain (labels of lowercase letters, digits and '-' "
                f"joined by dots, at most {MAX_SERVER_DOMAIN} characters), e.g. nodes.kukeon"
            )
        return domain

    @field_validator(
        "etcd_endpoints",
        "insecure_registries",
        "cni_bin_dirs",
        "allowed_host_paths",
        "secret_dirs",
        "allowed_secret_env",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("etcd_endpoints")
    @classmethod
    def _etcd_endpoints(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Each `host:port`, `http(s)://host:port`, or a lone `unix(s):///path`."""
        for endpoint in value:
            if unix_socket_path(endpoint) is None:
                split_endpoint(endpoint)
            elif len(value) > 1:
                raise ValueError(f"the unix socket endpoint {endpoint!r} must be the only one")
        return value

    @field_validator("allowed_host_paths", "secret_dirs")
    @classmethod
    def _admission_directories(cls, value: tuple[Path, ...]) -> tuple[Path, ...]:
        # Admission compares paths as written: a relative or `..` entry would be guessed at.
        return tuple(Path(normalize_directory(str(path))) for path in value)

    @field_validator("node_labels", mode="before")
    @classmethod
    def _parse_labels(cls, value: Any) -> Any:
        """`zone=a,disk=ssd` (env) or repeated `--node-label zone=a` (flags) -> a mapping."""
        if isinstance(value, str):
            value = [part for part in value.split(",") if part.strip()]
        if isinstance(value, list | tuple):
            labels: dict[str, str] = {}
            for item in value:
                name, sep, label_value = str(item).partition("=")
                if not sep or not name.strip():
                    raise ValueError(f"node label {item!r} must be written key=value")
                labels[name.strip()] = label_value.strip()
            return labels
        return value

    @field_validator("node_labels")
    @classmethod
    def _selectable_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        # A nodeSelector term must be a label key and value (the API refuses others), so a
        # node label of another shape could never be selected: refused, as kubelet does.
        for key, value in labels.items():
            for problem, shown in (
                (label_key_problem(key), key),
                (label_value_problem(value), value),
            ):
                if problem is not None:
                    raise ValueError(f"node label {key}={value}: {shown!r} {problem}")
        return labels

    @property
    def id_pool(self) -> PoolSettings:
        """The user-namespace pool (checked whole when the configuration is read)."""
        return PoolSettings(
            first_id=self.user_namespace_first_id, ranges=self.user_namespace_ranges
        )

    @model_validator(mode="after")
    def _id_pool_fits(self, info: ValidationInfo) -> DaemonConfig:
        if info.context and info.context.get(_PARTIAL):
            return self
        try:
            self.id_pool  # noqa: B018 - built for its checks
        except IdRangeError as error:
            raise ValueError(str(error)) from None
        return self

    @property
    def log_rotation(self) -> LogRotation:
        return LogRotation(
            max_size=self.container_log_max_size, max_files=self.container_log_max_files
        )

    @property
    def api_socket(self) -> Path:
        return self.run_dir / "kukeond.sock"

    @property
    def encryption_keys_path(self) -> Path:
        return self.encryption_key_file or self.state_dir / "encryption-keys.yaml"

    @property
    def metrics_token_path(self) -> Path | None:
        """The file of the token `/metrics` asks for: `metricsTokenFile`, else the one
        kukeond generates in its state directory; None with `metricsOpen`."""
        if self.metrics_open:
            return None
        return self.metrics_token_file or self.state_dir / GENERATED_METRICS_TOKEN

    @property
    def uses_embedded_etcd(self) -> bool:
        return not self.etcd_endpoints

    @property
    def instance(self) -> str:
        """This control plane's tag in host-wide names (``runtime.network.instance_tag``)."""
        if self.uses_embedded_etcd:
            registry = f"embedded:{os.path.abspath(self.state_dir)}"
        else:
            registry = ",".join(sorted(self.etcd_endpoints))
        return instance_tag(state_dir=self.state_dir, registry=f"{registry}|{self.etcd_prefix}")

    @property
    def plaintext_etcd_endpoints(self) -> tuple[str, ...]:
        """The endpoints reached without TLS whose users need no credential: every one off
        loopback (whoever reaches the network reads what is sent), and those on loopback
        unless etcd's own authentication is used (`etcdUsername`): every local account,
        `nobody` included, reaches loopback.

        As in ``EtcdConfig``, any `https://` or `unixs://` endpoint or any CA/client
        certificate file puts every endpoint on TLS; otherwise `http://`, `unix://` and
        scheme-less ones are plaintext (a unix socket counts as loopback: whoever may open
        it is a local account).
        """
        tls = self.etcd_ca_file is not None or self.etcd_cert_file is not None
        schemes = {endpoint_scheme(e) for e in self.etcd_endpoints}
        if tls or schemes & {"https", "unixs"}:
            return ()
        authenticated = bool(self.etcd_username)
        return tuple(
            e for e in self.etcd_endpoints if not (authenticated and _is_loopback_endpoint(e))
        )

    @property
    def fences(self) -> bool:
        """Whether this node fences itself (docs/fleet.md): not on the embedded etcd. It
        serves this kukeond alone, so no other node can take its cells, and it is away for
        every reader at once: stopping them then would stop workloads and protect nothing."""
        return not self.uses_embedded_etcd

    @property
    def fence_after(self) -> float:
        """The fencing delay in effect (``fenceAfterSeconds``, else the lease TTL)."""
        if self.fence_after_seconds is not None:
            return self.fence_after_seconds
        return float(self.node_lease_ttl)

    @model_validator(mode="after")
    def _retry_backoff_grows_to_its_cap(self, info: ValidationInfo) -> DaemonConfig:
        if info.context and info.context.get(_PARTIAL):
            return self
        if self.retry_backoff_max_seconds < self.retry_backoff_initial_seconds:
            raise PydanticCustomError(
                "retry_backoff",
                "retryBackoffMaxSeconds ({cap}) must be at least retryBackoffInitialSeconds "
                "({initial})",
                {
                    "cap": self.retry_backoff_max_seconds,
                    "initial": self.retry_backoff_initial_seconds,
                },
            )
        return self

    @model_validator(mode="after")
    def _fencing_before_replacement(self, info: ValidationInfo) -> DaemonConfig:
        if info.context and info.context.get(_PARTIAL):
            return self
        # The fence comes after its peers are asked (up to PEER_ASK_TIMEOUT_SECONDS late).
        limit = self.node_lease_ttl + self.node_lost_timeout - PEER_ASK_TIMEOUT_SECONDS
        if self.fence_after_seconds is not None and self.fence_after_seconds >= limit:
            raise PydanticCustomError(
                "fence_after",
                "fenceAfterSeconds ({fence}) must be below nodeLeaseTtl + nodeLostTimeout "
                "- {ask}s of asking the peers ({limit}): a node must be fenced before its "
                "cells are placed elsewhere",
                {
                    "fence": self.fence_after_seconds,
                    "ask": PEER_ASK_TIMEOUT_SECONDS,
                    "limit": limit,
                },
            )
        if self.fence_after_seconds is not None and not self.fences:
            raise PydanticCustomError(
                "fence_after",
                "fenceAfterSeconds ({fence}) needs etcdEndpoints: on the embedded etcd no "
                "other node can take this node's cells, so it never fences itself",
                {"fence": self.fence_after_seconds},
            )
        return self

    @model_validator(mode="after")
    def _metrics_open_or_with_a_token(self, info: ValidationInfo) -> DaemonConfig:
        if info.context and info.context.get(_PARTIAL):
            return self
        if self.metrics_open and self.metrics_token_file is not None:
            raise PydanticCustomError(
                "metrics_open",
                "metricsOpen serves /metrics without a token, metricsTokenFile ({path}) asks "
                "for one: set one of them (neither: kukeond asks for a token it generates)",
                {"path": str(self.metrics_token_file)},
            )
        return self

    @model_validator(mode="after")
    def _plaintext_etcd_needs_a_credential(self, info: ValidationInfo) -> DaemonConfig:
        if info.context and info.context.get(_PARTIAL):
            return self  # one source of several: the merged configuration is checked
        insecure = self.plaintext_etcd_endpoints
        if insecure and not self.etcd_allow_insecure:
            raise PydanticCustomError(
                "insecure_etcd",
                "etcd endpoint {endpoint} is plaintext with no credential (anyone who reaches "
                "it, on loopback every local user, reads and writes every document): use "
                "https:// with etcdCaFile, etcdCertFile and etcdKeyFile (on loopback, "
                "etcdUsername and etcdPassword also do), or accept the risk with "
                "--etcd-allow-insecure",
                {"endpoint": insecure[0]},
            )
        return self


def _is_loopback_endpoint(endpoint: str) -> bool:
    if endpoint_scheme(endpoint) in UNIX_SCHEMES:
        return True
    text = endpoint.strip()
    host = urlsplit(text if "://" in text else "http://" + text).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def _field_for_env(name: str) -> str | None:
    """`KUKEON_ETCD_ENDPOINTS` -> `etcd_endpoints` when that is a config field."""
    if not name.startswith(ENV_PREFIX):
        return None
    field = name[len(ENV_PREFIX) :].lower()
    return field if field in DaemonConfig.model_fields else None


def _describe(error: ValidationError, source: str) -> str:
    problems = []
    for item in error.errors():
        if not item["loc"]:  # a check across fields (model validator): the message says it
            problems.append(item["msg"])
            continue
        where = ".".join(str(part) for part in item["loc"])
        problems.append(f"{where}: {item['msg']}")
    return f"kukeond configuration ({source}): " + "; ".join(problems)


def load_config(
    *,
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> DaemonConfig:
    """Merge file, environment and flag overrides (None values mean "not given")."""
    merged: dict[str, Any] = {}
    if config_file is not None:
        try:
            loaded = load_yaml(config_file.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"kukeond configuration: cannot read {config_file}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"kukeond configuration: {config_file} is not YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"kukeond configuration: {config_file} must hold a mapping")
        secret = "etcdPassword" in loaded  # else readable is fine, replaceable is not
        warn_if_open_to_others(
            config_file,
            "kukeond configuration file" + (" (etcdPassword)" if secret else ""),
            if_replaced="kukeond (root) runs as their configuration says",
            secret=secret,
        )
        try:
            validated = DaemonConfig.model_validate(loaded, context={_PARTIAL: True})
            merged.update(validated.model_dump(exclude_unset=True))
        except ValidationError as exc:
            raise ConfigError(_describe(exc, str(config_file))) from exc

    env = os.environ if environ is None else environ
    from_env = {field: env[name] for name in env if (field := _field_for_env(name)) is not None}
    merged.update(from_env)
    merged.update({key: value for key, value in (overrides or {}).items() if value is not None})
    try:
        config = DaemonConfig.model_validate(merged)
    except ValidationError as exc:
        source = "flags and environment" if from_env else "flags"
        raise ConfigError(_describe(exc, source)) from exc
    if config.etcd_key_file is not None:
        warn_if_open_to_others(
            config.etcd_key_file,
            "etcd client key file",
            if_replaced="kukeond presents their key to etcd",
        )
    return config
