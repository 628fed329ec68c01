"""TLS with client certificates and username/password authentication, on real etcd."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kukeon.api import Kind
from kukeon.store import EmbeddedEtcd, EtcdConfig, EtcdProcess, Registry, StoreError, Unavailable
from tests.fixtures.etcd import etcdctl_tls_args
from tests.fixtures.services import free_tcp_port, require_binary

from .objects import realm

pytestmark = pytest.mark.integration


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_pki(root: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate."""
    new_ca = "req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=kukeon-test-ca"
    _openssl(*new_ca.split(), "-keyout", "ca.key", "-out", "ca.pem", cwd=root)
    for name, extension in (
        ("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
        ("client", "extendedKeyUsage=clientAuth"),
    ):
        (root / f"{name}.ext").write_text(extension + "\n")
        request = f"req -newkey rsa:2048 -nodes -subj /CN={name} -keyout {name}.key -out {name}.csr"
        _openssl(*request.split(), cwd=root)
        sign = (
            f"x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
            f"-extfile {name}.ext -out {name}.pem"
        )
        _openssl(*sign.split(), cwd=root)


@pytest.fixture
def scratch() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="kukeon-etcd-opts-", dir="/dev/shm"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def tls_etcd(scratch: Path) -> AsyncIterator[EtcdProcess]:
    binary = require_binary("etcd", "etcd-server")
    require_binary("openssl", "openssl")
    await asyncio.to_thread(_make_pki, scratch)
    health = ssl.create_default_context(cafile=str(scratch / "ca.pem"))
    health.load_cert_chain(str(scratch / "client.pem"), str(scratch / "client.key"))
    member = EtcdProcess(
        name="tls",
        data_dir=scratch / "data",
        client_port=free_tcp_port(),
        peer_port=free_tcp_port(),
        binary=binary,
        client_tls=health,
        extra_args=[
            "--cert-file",
            str(scratch / "server.pem"),
            "--key-file",
            str(scratch / "server.key"),
            "--trusted-ca-file",
            str(scratch / "ca.pem"),
            "--client-cert-auth",
        ],
    )
    try:
        await member.start()
        yield member
    finally:
        await member.kill()


async def test_tls_with_client_certificates(tls_etcd: EtcdProcess, scratch: Path) -> None:
    assert tls_etcd.client_url.startswith("https://")
    config = EtcdConfig(
        endpoints=[tls_etcd.client_url],
        ca_file=scratch / "ca.pem",
        cert_file=scratch / "client.pem",
        key_file=scratch / "client.key",
    )
    async with await Registry.connect(config) as registry:
        created = await registry.create(realm("secure"))
        assert await registry.get(Kind.REALM, ("secure",)) == created

    without_client_cert = EtcdConfig(
        endpoints=[tls_etcd.client_url], ca_file=scratch / "ca.pem", retry_timeout=1.0
    )
    with pytest.raises(Unavailable):
        await Registry.connect(without_client_cert)


async def test_username_and_password(scratch: Path) -> None:
    etcdctl = require_binary("etcdctl", "etcd-client")
    binary = require_binary("etcd", "etcd-server")
    async with EmbeddedEtcd(data_dir=scratch, binary=binary) as etcd:

        def enable_auth() -> None:
            for command in (
                ["user", "add", "root", "--new-user-password", "s3cret"],
                ["auth", "enable"],
            ):
                subprocess.run(
                    [etcdctl, "--endpoints", etcd.endpoint, *etcdctl_tls_args(etcd.pki), *command],
                    check=True,
                    capture_output=True,
                    env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"},
                    timeout=30,
                )

        await asyncio.to_thread(enable_auth)
        config = etcd.config(username="root", password="s3cret")
        async with await Registry.connect(config) as registry:
            created = await registry.create(realm("authed"))
            assert await registry.get(Kind.REALM, ("authed",)) == created
            # A token etcd no longer knows (expired) is renewed transparently.
            registry.client.metadata = (("hasleader", "true"), ("token", "expired.token"))
            assert await registry.get(Kind.REALM, ("authed",)) == created

        with pytest.raises(StoreError):
            await Registry.connect(etcd.config(retry_timeout=1.0))
        with pytest.raises(StoreError):
            await Registry.connect(
                etcd.config(username="root", password="wrong", retry_timeout=1.0)
            )
