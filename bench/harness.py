"""What the end-to-end benchmarks share: a private control plane and ways to wait on it.

`control_plane()` starts a containerd (own root, state and socket), an etcd and kukeond as
a subprocess (own state dir, cgroup root, nft table, netns dir and subnet pool), creates
the realm, space and stack, imports the busybox test image (hack/make-test-image.sh) into
the realm's namespace, and on the way out removes all of it again, whatever it got to
(also after a failure or a cancellation).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
# A tree named in PYTHONPATH (an earlier commit's operator/, measured against this one) is
# the one measured: the benchmark's own etcd and clients must speak as its kukeond does.
if not any(
    (Path(entry) / "kukeon").is_dir()
    for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep)
    if entry
):
    sys.path.insert(0, str(REPO_ROOT / "operator"))
sys.path.insert(0, str(REPO_ROOT))

from kukeon.api import Kind, parse_resource  # noqa: E402
from kukeon.daemon.config import DaemonConfig  # noqa: E402
from kukeon.runtime.containerd import ContainerdClient  # noqa: E402
from kukeon.runtime.containerd.namespaces import realm_namespace  # noqa: E402
from kukeon.store import EmbeddedEtcd, EtcdConfig, NotFound, Registry  # noqa: E402
from kukeon.store.encryption import Keyring  # noqa: E402
from tests.fixtures.containerd import PrivateContainerd, clean_namespace  # noqa: E402
from tests.fixtures.kukeond import bearer_headers, sweep_host  # noqa: E402

IMAGE = "kukeon.io/test/busybox:latest"
REALM, SPACE, STACK = "bench", "s1", "st1"
KEEPER = "keeper"  # the cell that keeps the hierarchy materialised between rounds
# `sh` as PID 1 ignores SIGTERM unless it traps it: this one stops within a second.
SLEEPER = ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"]
KUKEOND = Path(sys.executable).parent / "kukeond"

# Starts kukeond for a config, its output appended to a log file.
Launcher = Callable[[DaemonConfig, Path], "subprocess.Popen[bytes]"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def key(name: str) -> tuple[str, str, str, str]:
    return (REALM, SPACE, STACK, name)


def cell_document(name: str, containers: Sequence[Mapping[str, Any]]) -> Any:
    """A cell of the benchmark's stack."""
    return parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {"name": name},
            "spec": {
                "realmId": REALM,
                "spaceId": SPACE,
                "stackId": STACK,
                "containers": [dict(container) for container in containers],
            },
        }
    )


async def wait_gone(
    registry: Registry, kind: Kind, object_key: tuple[str, ...], within: float = 120
) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            await registry.get(kind, object_key)
        except NotFound:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{kind.value} {'/'.join(object_key)} was not deleted within {within}s")


async def wait_ready(
    registry: Registry, kind: Kind, object_key: tuple[str, ...], within: float = 60
) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(NotFound):
            if (await registry.get(kind, object_key)).status.state == "Ready":
                return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{kind.value} {'/'.join(object_key)} did not become Ready")


def daemon_config(base: Path, *, etcd: EtcdConfig, prefix: str, containerd: str) -> DaemonConfig:
    token = secrets.token_hex(3)
    return DaemonConfig(
        etcd_endpoints=tuple(etcd.endpoints),
        etcd_ca_file=etcd.ca_file,
        etcd_cert_file=etcd.cert_file,
        etcd_key_file=etcd.key_file,
        etcd_prefix=prefix,
        containerd_address=Path(containerd),
        state_dir=base / "state",
        run_dir=base / "run",
        node_name=f"bench-{token}",
        cgroup_root=f"/kukeon-bench-{token}",
        cni_conf_dir=base / "cni",
        netns_dir=base / "netns",
        nft_table=f"kukeon_bench_{token}",
        subnet_pool=IPv4Network(f"10.{176 + secrets.randbelow(16)}.0.0/20"),
        metrics_address=f"127.0.0.1:{free_port()}",
        bootstrap=False,
        stop_grace_seconds=1.0,
        # A plane is torn down without releasing its realms: its user-namespace claims stay
        # out of the host's claims directory (start_daemon passes it on).
        user_namespace_claims_dir=base / "idclaims",
    )


def scrape_metrics(metrics_address: str, token_file: Path | None, *, timeout: float = 10) -> str:
    """kukeond's /metrics at ``metrics_address``, asked with the bearer token in
    ``token_file`` (``DaemonConfig.metrics_token_path``: by default the token the daemon
    generated in its state directory)."""
    request = urllib.request.Request(
        f"http://{metrics_address}/metrics", headers=bearer_headers(token_file)
    )
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        body: bytes = answer.read()
    return body.decode()


def daemon_argv(config: DaemonConfig, *, log_level: str = "warning") -> list[str]:
    tls = [
        (flag, str(path))
        for flag, path in (
            ("--etcd-ca-file", config.etcd_ca_file),
            ("--etcd-cert-file", config.etcd_cert_file),
            ("--etcd-key-file", config.etcd_key_file),
        )
        if path is not None
    ]
    return [
        str(KUKEOND),
        "--etcd-endpoints", ",".join(config.etcd_endpoints),
        *(part for pair in tls for part in pair),
        "--etcd-prefix", config.etcd_prefix,
        "--containerd-address", str(config.containerd_address),
        "--state-dir", str(config.state_dir),
        "--run-dir", str(config.run_dir),
        "--node-name", config.node_name,
        "--cgroup-root", config.cgroup_root,
        "--cni-conf-dir", str(config.cni_conf_dir),
        "--netns-dir", str(config.netns_dir),
        "--nft-table", config.nft_table,
        "--subnet-pool", str(config.subnet_pool),
        "--metrics-address", config.metrics_address,
        "--stop-grace-seconds", str(config.stop_grace_seconds),
        "--log-level", log_level,
        "--no-bootstrap",
    ]  # fmt: skip


def start_daemon(
    config: DaemonConfig,
    log: Path,
    *,
    environment: Mapping[str, str] | None = None,
    log_level: str = "warning",
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    # kukeond has no flag for it; one set in the caller's environment is kept.
    env.setdefault("KUKEON_USER_NAMESPACE_CLAIMS_DIR", str(config.user_namespace_claims_dir))
    with log.open("ab") as output:
        return subprocess.Popen(
            daemon_argv(config, log_level=log_level),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**env, **(environment or {})},
        )


async def create_hierarchy(registry: Registry, *, within: float = 60) -> None:
    documents: list[dict[str, Any]] = [
        {"kind": "Realm", "metadata": {"name": REALM}, "spec": {}},
        {"kind": "Space", "metadata": {"name": SPACE}, "spec": {"realmId": REALM}},
        {
            "kind": "Stack",
            "metadata": {"name": STACK},
            "spec": {"realmId": REALM, "spaceId": SPACE},
        },
    ]
    for document in documents:
        await registry.create(parse_resource({"apiVersion": "kukeon.io/v1beta1", **document}))
    await wait_ready(registry, Kind.STACK, (REALM, SPACE, STACK), within=within)


async def make_test_image(archive: Path) -> Path:
    """The busybox test image as an OCI archive (hack/make-test-image.sh)."""
    await asyncio.to_thread(
        subprocess.run,
        [str(REPO_ROOT / "hack" / "make-test-image.sh"), str(archive), IMAGE],
        check=True,
        capture_output=True,
    )
    return archive


@dataclass
class ControlPlane:
    base: Path
    config: DaemonConfig
    registry: Registry
    containerd: ContainerdClient
    daemon: subprocess.Popen[bytes]
    log: Path
    version: str  # containerd's
    image_archive: Path


@dataclass
class _Started:
    """What `control_plane` got to, for its teardown."""

    config: DaemonConfig | None = None
    daemon: subprocess.Popen[bytes] | None = None
    registry: Registry | None = None
    client: ContainerdClient | None = None


@contextlib.asynccontextmanager
async def control_plane(
    name: str,
    *,
    launch: Launcher = start_daemon,
    keyring: bool = False,
    image_namespaces: Sequence[str] = (),
    ready_within: float = 60,
) -> AsyncIterator[ControlPlane]:
    """containerd, etcd and kukeond of our own with the realm, space and stack Ready and the
    test image in the realm's namespace (and in `image_namespaces`, for direct baselines).

    `keyring`: the registry writes Secrets (kukeond's encryption keys are made first);
    `ready_within`: how long the hierarchy may take (a traced kukeond starts slowly)."""
    binary = shutil.which("containerd")
    if binary is None:
        raise SystemExit("containerd is needed (Debian package containerd)")
    base = Path(tempfile.mkdtemp(prefix=f"kukeon-{name}-"))
    containerd_daemon = PrivateContainerd(base / "containerd", binary=binary)
    etcd = EmbeddedEtcd(data_dir=base / "etcd")
    started = _Started()
    try:
        await asyncio.to_thread(containerd_daemon.start)
        await etcd.start()
        archive = await make_test_image(base / "busybox.tar")
        prefix = f"/kukeon-{name}-{secrets.token_hex(3)}"
        config = started.config = daemon_config(
            base, etcd=etcd.config(), prefix=prefix, containerd=containerd_daemon.address
        )
        keys = None
        if keyring:
            config.state_dir.mkdir(parents=True, exist_ok=True)
            keys, _ = Keyring.load_or_create(config.encryption_keys_path)
        log = base / "kukeond.log"
        started.daemon = launch(config, log)
        registry = started.registry = await Registry.connect(
            etcd.config(key_prefix=prefix), keyring=keys
        )
        client = started.client = ContainerdClient(containerd_daemon.address)
        version = (await client.wait_ready(within=30)).version
        await create_hierarchy(registry, within=ready_within)
        # This kukeond is not the host's default installation: its realm's namespace
        # carries its instance tag.
        for namespace in (realm_namespace(REALM, config.instance), *image_namespaces):
            await client.namespaces.ensure(namespace)
            await client.images(namespace).import_archive(archive)
        yield ControlPlane(base, config, registry, client, started.daemon, log, version, archive)
    finally:
        await _teardown(base, started, containerd_daemon, etcd, image_namespaces)


async def _teardown(
    base: Path,
    started: _Started,
    containerd_daemon: PrivateContainerd,
    etcd: EmbeddedEtcd,
    image_namespaces: Sequence[str],
) -> None:
    config, process, registry, client = (
        started.config,
        started.daemon,
        started.registry,
        started.client,
    )
    if registry is not None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(240):
                await registry.delete(Kind.REALM, (REALM,), cascade=True)
                await wait_gone(registry, Kind.REALM, (REALM,), within=230)
        await registry.close()
    if process is not None and process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(process.wait, 30)
        if process.poll() is None:
            process.kill()
    if client is not None:
        realm_ns = [realm_namespace(REALM, config.instance)] if config is not None else []
        for namespace in (*realm_ns, *image_namespaces):
            with contextlib.suppress(Exception):
                await clean_namespace(client, namespace)
        await client.close()
    if config is not None:
        await sweep_host(config, realm=REALM, spaces=[SPACE])
        await asyncio.to_thread(
            subprocess.run,
            ["nft", "delete", "table", "inet", config.nft_table],
            check=False,
            capture_output=True,
        )
    await asyncio.to_thread(containerd_daemon.teardown)
    with contextlib.suppress(Exception):
        await etcd.stop()
    shutil.rmtree(base, ignore_errors=True)
