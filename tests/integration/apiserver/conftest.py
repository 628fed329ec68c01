"""A real API server over a real registry (etcd), on a private unix socket and TCP+TLS."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import pytest
import yaml
from prometheus_client import CollectorRegistry

from kukeon.apiserver import ApiServerRunner, ApiSettings, serve_api
from kukeon.runtime.containerd.speccheck import runnable_problems
from kukeon.store import EmbeddedEtcd, Registry
from kukeon.store.realmquota import QuotaLimits, RealmQuotas
from tests.fixtures.services import free_tcp_port, require_binary

REPO = Path(__file__).resolve().parents[3]
_SCRATCH = "/dev/shm" if Path("/dev/shm").is_dir() else None

ADMIN_TOKEN = "admin-" + uuid.uuid4().hex
VIEWER_TOKEN = "viewer-" + uuid.uuid4().hex
EDITOR_TOKEN = "editor-" + uuid.uuid4().hex


class Certs(NamedTuple):
    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="session")
def certs() -> Iterator[Certs]:
    """A local CA and a server certificate for 127.0.0.1/localhost, made by hack/make-ca.sh."""
    require_binary("openssl", "openssl")
    with tempfile.TemporaryDirectory(prefix="kukeon-ca-") as directory:
        out = Path(directory)
        subprocess.run(
            ["bash", str(REPO / "hack" / "make-ca.sh"), "--out", str(out), "--quiet"],
            check=True,
            capture_output=True,
        )
        yield Certs(out / "ca.crt", out / "server.crt", out / "server.key")


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "tokens": [
                    {"token": ADMIN_TOKEN, "user": "alice", "role": "admin"},
                    {"token": VIEWER_TOKEN, "user": "victor", "role": "viewer"},
                    {"token": EDITOR_TOKEN, "user": "eddie", "role": "editor", "realms": ["team"]},
                ]
            }
        )
    )
    return path


class Api(NamedTuple):
    runner: ApiServerRunner
    registry: Registry
    socket: Path
    https: str
    ca: Path
    metrics: CollectorRegistry


@contextlib.asynccontextmanager
async def enforced_quotas(registry: Registry) -> AsyncIterator[RealmQuotas]:
    """The realms' quotas as kukeond enforces them on ``registry`` (no default limits): the
    usage index followed in a task, synced before the block, stopped after it."""
    quotas = RealmQuotas(
        client=registry.client,
        config=registry.config,
        layout=registry.layout,
        defaults=QuotaLimits(None, None),
    )
    task = asyncio.create_task(quotas.run())
    try:
        await quotas.wait_synced()
        registry.enforce_quotas(quotas)
        yield quotas
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def running_api(
    registry: Registry, certs: Certs, tokens_file: Path, **overrides: Any
) -> AsyncIterator[Api]:
    """Serve ``registry`` on a private unix socket and a loopback TLS port."""
    directory = Path(tempfile.mkdtemp(prefix="kukeon-api-"))
    socket = directory / "kukeond.sock"
    options: dict[str, Any] = {
        "socket_path": socket,
        "socket_group": None,
        "tcp_address": f"127.0.0.1:{free_tcp_port()}",
        "tls_cert_file": certs.cert,
        "tls_key_file": certs.key,
        "tokens_file": tokens_file,
        "bookmark_interval": 0.5,
        "request_timeout": 10,
    }
    options.update(overrides)
    metrics = CollectorRegistry()
    # The containers no node could run are refused as kukeond's API server does.
    runner = await serve_api(
        ApiSettings(**options),
        registry,
        metrics_registry=metrics,
        container_check=runnable_problems,
    )
    try:
        yield Api(
            runner, registry, socket, f"https://127.0.0.1:{runner.tcp_port}", certs.ca, metrics
        )
    finally:
        await runner.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def api(registry: Registry, certs: Certs, tokens_file: Path) -> AsyncIterator[Api]:
    async with running_api(registry, certs, tokens_file) as running:
        yield running


@pytest.fixture
async def private_registry() -> AsyncIterator[Registry]:
    """A registry on an etcd of its own, for tests that compact etcd's history."""
    binary = require_binary("etcd", "etcd-server")
    root = Path(tempfile.mkdtemp(prefix="kukeon-api-etcd-", dir=_SCRATCH))
    try:
        async with EmbeddedEtcd(data_dir=root, binary=binary) as etcd:
            async with await Registry.connect(etcd.config()) as registry:
                yield registry
            await etcd.kill()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def tls_session(api: Api, token: str | None) -> aiohttp.ClientSession:
    context = ssl.create_default_context(cafile=str(api.ca))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return aiohttp.ClientSession(
        base_url=api.https, connector=aiohttp.TCPConnector(ssl=context), headers=headers
    )


@pytest.fixture
async def http(api: Api) -> AsyncIterator[aiohttp.ClientSession]:
    """A session on the unix socket (the trusted local admin path)."""
    connector = aiohttp.UnixConnector(path=str(api.socket))
    async with aiohttp.ClientSession(connector=connector, base_url="http://kukeond") as session:
        yield session


def realm_doc(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Realm",
        "metadata": {"name": name, "labels": labels},
    }


def space_doc(name: str, realm: str | None = None) -> dict[str, Any]:
    spec = {"realmId": realm} if realm else {}
    return {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Space",
        "metadata": {"name": name},
        "spec": spec,
    }


def stack_doc(name: str) -> dict[str, Any]:
    return {"apiVersion": "kukeon.io/v1beta1", "kind": "Stack", "metadata": {"name": name}}


def cell_doc(name: str, image: str = "busybox:latest", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Cell",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"id": "main", "image": image, "root": True}]},
    }


async def create_tree(
    session: aiohttp.ClientSession,
    realm: str = "team",
    *,
    stack: str | None = "st",
    cells: Sequence[dict[str, Any]] = (),
    realm_spec: dict[str, Any] | None = None,
) -> None:
    """Create realm (with ``realm_spec``), its space s and (unless ``stack`` is None) the
    stack in it and ``cells`` in that, through ``session``, each a 201."""
    realms = "/apis/kukeon.io/v1beta1/realms"
    realm_document = realm_doc(realm)
    if realm_spec is not None:
        realm_document["spec"] = realm_spec
    writes = [(realms, realm_document), (f"{realms}/{realm}/spaces", space_doc("s"))]
    if stack is not None:
        stacks = f"{realms}/{realm}/spaces/s/stacks"
        writes.append((stacks, stack_doc(stack)))
        writes.extend((f"{stacks}/{stack}/cells", cell) for cell in cells)
    for path, document in writes:
        async with session.post(path, json=document) as response:
            assert response.status == 201, await response.text()
