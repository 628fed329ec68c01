"""The embedded etcd serves mutually-authenticated TLS clients only, on every listener.

A local user can reach the loopback ports (they are in every ``ps``) but cannot read the
keys: with no certificate, a certificate of another CA, or plain HTTP, etcd refuses, and
the peer listener accepts etcd's own member certificate and nothing else.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import stat
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kukeon.api import Kind
from kukeon.store import EmbeddedEtcd, EtcdConfig, Registry, StoreError
from kukeon.store.pki import EtcdPki, ensure_pki
from tests.fixtures.etcd import etcdctl_tls_args
from tests.fixtures.services import require_binary, require_root

from .objects import realm

pytestmark = pytest.mark.integration

REFUSED = (StoreError,)  # Unavailable (handshake refused) is a StoreError too


@pytest.fixture
async def embedded() -> AsyncIterator[EmbeddedEtcd]:
    binary = require_binary("etcd", "etcd-server")
    root = Path(tempfile.mkdtemp(prefix="kukeon-etcd-mtls-", dir="/dev/shm"))
    etcd = EmbeddedEtcd(data_dir=root / "etcd", binary=binary)
    try:
        await etcd.start()
        yield etcd
    finally:
        await etcd.kill()
        shutil.rmtree(root, ignore_errors=True)


def _port(endpoint: str) -> int:
    return int(endpoint.rsplit(":", 1)[1])


async def _refused(config: EtcdConfig) -> None:
    async def read() -> None:
        async with await Registry.connect(config) as registry:
            await registry.get(Kind.REALM, ("anything",))

    with pytest.raises(REFUSED):
        await read()


async def test_the_embedded_etcd_speaks_mutual_tls(embedded: EmbeddedEtcd) -> None:
    assert embedded.endpoint.startswith("https://127.0.0.1:")
    config = embedded.config()
    assert config.ca_file == embedded.pki.ca_file
    assert config.cert_file == embedded.pki.client_cert_file
    async with await Registry.connect(config) as registry:
        created = await registry.create(realm("tls"))
        assert await registry.get(Kind.REALM, ("tls",)) == created


async def test_clients_without_the_client_certificate_are_refused(
    embedded: EmbeddedEtcd, tmp_path: Path
) -> None:
    port = _port(embedded.endpoint)
    fast: dict[str, Any] = {"retry_timeout": 1.0, "dial_timeout": 1.0, "request_timeout": 1.0}
    # Plaintext gRPC on the TLS port.
    await _refused(EtcdConfig(endpoints=[f"http://127.0.0.1:{port}"], **fast))
    # TLS that trusts the server but shows no certificate.
    await _refused(EtcdConfig(endpoints=[embedded.endpoint], ca_file=embedded.pki.ca_file, **fast))
    # A client certificate of another CA (with the right CA to verify the server).
    other = await asyncio.to_thread(ensure_pki, tmp_path / "other")
    await _refused(
        EtcdConfig(
            endpoints=[embedded.endpoint],
            ca_file=embedded.pki.ca_file,
            cert_file=other.client_cert_file,
            key_file=other.client_key_file,
            **fast,
        )
    )


def _peer_members(port: int, context: ssl.SSLContext) -> bytes:
    """GET /members on the peer listener (what another member would ask)."""
    import http.client

    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    try:
        connection.request("GET", "/members")
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise ConnectionError(f"HTTP {response.status}")
        return body
    finally:
        connection.close()


def _context(pki: EtcdPki, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


async def test_the_peer_listener_takes_only_the_member_certificate(
    embedded: EmbeddedEtcd,
) -> None:
    pki = embedded.pki
    port = _port(embedded.member.peer_url)
    assert embedded.member.peer_url.startswith("https://127.0.0.1:")
    # etcd's own member certificate: served (so the refusals below are about the client).
    members = await asyncio.to_thread(
        _peer_members, port, _context(pki, pki.member_cert_file, pki.member_key_file)
    )
    assert b"kukeon" in members
    for cert, key in ((None, None), (pki.client_cert_file, pki.client_key_file)):
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            await asyncio.to_thread(_peer_members, port, _context(pki, cert, key))


async def test_pki_files_are_private_and_kept_across_restarts(embedded: EmbeddedEtcd) -> None:
    pki = embedded.pki
    assert stat.S_IMODE(embedded.data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(pki.directory.stat().st_mode) == 0o700
    keys = (pki.ca_key_file, pki.member_key_file, pki.client_key_file)
    for path in (*keys, pki.ca_file, pki.member_cert_file, pki.client_cert_file):
        info = path.stat()
        assert stat.S_IMODE(info.st_mode) == 0o600, path
        assert info.st_uid == os.geteuid()
    before = {path: path.read_bytes() for path in pki.directory.iterdir()}
    await embedded.stop()
    await embedded.start()
    assert {path: path.read_bytes() for path in pki.directory.iterdir()} == before
    async with await Registry.connect(embedded.config()) as registry:
        await registry.create(realm("after-restart"))


def _as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", "nobody", "--", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"ETCDCTL_API": "3", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        cwd="/",
    )


async def test_an_unprivileged_user_gets_nothing(embedded: EmbeddedEtcd) -> None:
    require_root()
    etcdctl = require_binary("etcdctl", "etcd-client")
    require_binary("runuser", "util-linux")
    async with await Registry.connect(embedded.config()) as registry:
        await registry.create(realm("private"))
    port = _port(embedded.endpoint)
    timeouts = ("--dial-timeout", "2s", "--command-timeout", "4s")
    attempts = [
        [etcdctl, "--endpoints", f"http://127.0.0.1:{port}", *timeouts, "get", "/", "--prefix"],
        [etcdctl, "--endpoints", embedded.endpoint, "--insecure-skip-tls-verify", *timeouts,
         "get", "/", "--prefix"],
        [etcdctl, "--endpoints", embedded.endpoint, "--insecure-skip-tls-verify", *timeouts,
         "put", "/kukeon/registry/realms/evil", "{}"],
    ]  # fmt: skip
    # Nor can nobody borrow the client certificate: the key is root's alone.
    borrowing = [etcdctl, "--endpoints", embedded.endpoint, *etcdctl_tls_args(embedded.pki),
                 *timeouts, "get", "/", "--prefix"]  # fmt: skip
    # At once: each refusal waits out etcdctl's dial or command timeout (2-4 s apiece).
    answers = await asyncio.gather(
        *(asyncio.to_thread(_as_nobody, *argv) for argv in [*attempts, borrowing])
    )
    for argv, done in zip([*attempts, borrowing], answers, strict=True):
        assert done.returncode != 0, (argv, done.stdout)
        assert "private" not in done.stdout
    for key in (embedded.pki.client_key_file, embedded.pki.ca_key_file):
        assert (await asyncio.to_thread(_as_nobody, "cat", str(key))).returncode != 0
    # Root with the certificate reads it (the refusals above are about authentication).
    allowed = await asyncio.to_thread(
        subprocess.run,
        [etcdctl, "--endpoints", embedded.endpoint, *etcdctl_tls_args(embedded.pki),
         "get", "/", "--prefix", "--keys-only"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert allowed.returncode == 0
    assert "private" in allowed.stdout


async def test_no_secret_on_the_command_line(embedded: EmbeddedEtcd) -> None:
    pid = embedded.member.pid
    assert pid is not None

    def read() -> tuple[list[str], list[str]]:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        return argv, [path.read_text() for path in embedded.pki.directory.glob("*.key")]

    argv, keys = await asyncio.to_thread(read)
    assert all(key.strip() not in argument for argument in argv for key in keys)
    assert str(embedded.pki.member_key_file) in argv
