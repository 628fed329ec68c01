"""The embedded etcd listens on unix sockets in its 0700 directory, and there too serves
mutually-authenticated TLS clients only.

No TCP listener at all: no port a local user could take while kukeond is down, nothing a
local user can open (the directory is root's alone). Behind that, with no certificate, a
certificate of another CA, or plain HTTP, etcd refuses, and the peer listener accepts
etcd's own member certificate and nothing else.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
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
from kukeon.store.embedded import PEER_SOCKET
from kukeon.store.pki import EtcdPki, ensure_pki
from tests.fixtures.etcd import etcdctl_tls_args
from tests.fixtures.procsockets import tcp_listeners, unix_listeners
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


async def _refused(config: EtcdConfig) -> None:
    async def read() -> None:
        async with await Registry.connect(config) as registry:
            await registry.get(Kind.REALM, ("anything",))

    with pytest.raises(REFUSED):
        await read()


async def test_the_embedded_etcd_listens_on_its_sockets_only(embedded: EmbeddedEtcd) -> None:
    pid = embedded.member.pid
    assert pid is not None
    tcp = await asyncio.to_thread(tcp_listeners, pid)
    assert tcp == [], f"etcd listens on TCP: {tcp}"
    # etcd binds the names relative to its working directory, the data directory.
    unix = await asyncio.to_thread(unix_listeners, pid)
    assert sorted(unix) == sorted(["client:0", PEER_SOCKET])
    for name in ("client:0", PEER_SOCKET):
        assert stat.S_ISSOCK((embedded.data_dir / name).stat().st_mode)
    assert embedded.endpoint == f"unixs://{embedded.data_dir}/client:0"


async def test_the_embedded_etcd_speaks_mutual_tls(embedded: EmbeddedEtcd) -> None:
    assert embedded.endpoint.startswith("unixs:///")
    config = embedded.config()
    assert config.ca_file == embedded.pki.ca_file
    assert config.cert_file == embedded.pki.client_cert_file
    async with await Registry.connect(config) as registry:
        created = await registry.create(realm("tls"))
        assert await registry.get(Kind.REALM, ("tls",)) == created


async def test_clients_without_the_client_certificate_are_refused(
    embedded: EmbeddedEtcd, tmp_path: Path
) -> None:
    fast: dict[str, Any] = {"retry_timeout": 1.0, "dial_timeout": 1.0, "request_timeout": 1.0}
    # Plaintext gRPC on the TLS socket.
    await _refused(EtcdConfig(endpoints=[f"unix://{embedded.client_socket}"], **fast))
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


def _peer_members(path: Path, context: ssl.SSLContext) -> bytes:
    """GET /members on the peer socket (what another member would ask)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.settimeout(5)
        raw.connect(str(path))
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET /members HTTP/1.0\r\nHost: localhost\r\n\r\n")
            reply = b""
            while chunk := tls.recv(65536):
                reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.0 200") and not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(head[:100].decode(errors="replace"))
    return body


def _context(pki: EtcdPki, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


async def test_the_peer_socket_takes_no_connection(embedded: EmbeddedEtcd) -> None:
    """Not even with etcd's own member certificate: etcd 3.4 checks a peer certificate's
    names against the peer's address, which a unix socket has none of ("address @:
    missing port in address"). A lone member is never dialed by a peer, so this costs
    nothing; a client certificate or none would be refused anyway (--peer-cert-allowed-cn)."""
    pki = embedded.pki
    peer = embedded.data_dir / PEER_SOCKET
    assert embedded.member.peer_url == f"unixs://{PEER_SOCKET}"
    for cert, key in (
        (pki.member_cert_file, pki.member_key_file),
        (None, None),
        (pki.client_cert_file, pki.client_key_file),
    ):
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            await asyncio.to_thread(_peer_members, peer, _context(pki, cert, key))
    assert "missing port in address" in await embedded.member.log_tail()
    # The member serves on (the refusals are about the connections).
    async with await Registry.connect(embedded.config()) as registry:
        await registry.create(realm("peerless"))


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
    timeouts = ("--dial-timeout", "2s", "--command-timeout", "4s")
    plain = f"unix://{embedded.client_socket}"
    attempts = [
        [etcdctl, "--endpoints", plain, *timeouts, "get", "/", "--prefix"],
        [etcdctl, "--endpoints", embedded.endpoint, "--insecure-skip-tls-verify", *timeouts,
         "get", "/", "--prefix"],
        [etcdctl, "--endpoints", embedded.endpoint, "--insecure-skip-tls-verify", *timeouts,
         "put", "/kukeon/registry/realms/evil", "{}"],
    ]  # fmt: skip
    # Nor can nobody borrow the client certificate: the key is root's alone.
    borrowing = [etcdctl, "--endpoints", embedded.endpoint, *etcdctl_tls_args(embedded.pki),
                 *timeouts, "get", "/", "--prefix"]  # fmt: skip
    # Nor open either socket at all: the data directory is root's, 0700.
    opening = [
        "python3", "-c", "import socket, sys\n"
        "for path in sys.argv[1:]:\n"
        "    try:\n"
        "        socket.socket(socket.AF_UNIX).connect(path)\n"
        "    except PermissionError:\n"
        "        print('refused', path)\n",
        str(embedded.client_socket), str(embedded.data_dir / PEER_SOCKET),
    ]  # fmt: skip
    # At once: each refusal waits out etcdctl's dial or command timeout (2-4 s apiece).
    answers = await asyncio.gather(
        *(asyncio.to_thread(_as_nobody, *argv) for argv in [*attempts, borrowing, opening])
    )
    for argv, done in zip([*attempts, borrowing], answers[:-1], strict=True):
        assert done.returncode != 0, (argv, done.stdout)
        assert "private" not in done.stdout
    opened = answers[-1]
    assert f"refused {embedded.client_socket}\n" in opened.stdout, opened
    assert f"refused {embedded.data_dir / PEER_SOCKET}\n" in opened.stdout, opened
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
