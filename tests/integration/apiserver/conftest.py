"""A real API server over a real registry (etcd), on a private unix socket and TCP+TLS."""

from __future__ import annotations

import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
import pytest
import yaml
from prometheus_client import CollectorRegistry

from kukeon.apiserver import ApiServerRunner, ApiSettings, serve_api
from kukeon.store import Registry
from tests.fixtures.services import free_tcp_port, require_binary

REPO = Path(__file__).resolve().parents[3]

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


@pytest.fixture
async def api(
    registry: Registry, tmp_path: Path, certs: Certs, tokens_file: Path
) -> AsyncIterator[Api]:
    socket = Path(tempfile.mkdtemp(prefix="kukeon-api-")) / "kukeond.sock"
    port = free_tcp_port()
    settings = ApiSettings(
        socket_path=socket,
        socket_group=None,
        tcp_address=f"127.0.0.1:{port}",
        tls_cert_file=certs.cert,
        tls_key_file=certs.key,
        tokens_file=tokens_file,
        bookmark_interval=0.5,
        request_timeout=10,
    )
    metrics = CollectorRegistry()
    runner = await serve_api(settings, registry, metrics_registry=metrics)
    try:
        yield Api(
            runner, registry, socket, f"https://127.0.0.1:{runner.tcp_port}", certs.ca, metrics
        )
    finally:
        await runner.stop()
        socket.parent.rmdir() if socket.parent.exists() and not any(
            socket.parent.iterdir()
        ) else None


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
