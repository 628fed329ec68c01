"""Pulling from a real registry: Debian's docker-registry on loopback with htpasswd basic auth.

The test image is pushed there with skopeo, then pulled by kukeon's registry client into
an in-memory blob store and, through ``pull_image``, into the session's private containerd
(tests/fixtures/containerd.py) where it is recorded and unpacked.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import secrets
import signal
import subprocess
import tarfile
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from kukeon.runtime.containerd.client import ContainerdClient
from kukeon.runtime.containerd.pull import pull_image
from kukeon.runtime.containerd.registry import (
    ManifestUnknownError,
    RegistryClient,
    RegistryUnauthorizedError,
    parse_reference,
)
from kukeon.runtime.containerd.types import RegistryCredential
from tests.fixtures.services import free_tcp_port, require_binary, unavailable

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[3]
USERNAME = "kukeon"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash for htpasswd (docker-registry accepts only bcrypt there)."""
    try:
        import bcrypt  # type: ignore[import-not-found]  # optional, not a dependency
    except ImportError:
        pass
    else:
        hashed: bytes = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4))
        return hashed.decode()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # Python < 3.13; glibc's libxcrypt makes $2b$ hashes
    except ImportError:
        unavailable("a bcrypt hash needs Python's crypt module (< 3.13) or the bcrypt package")
        raise AssertionError("unreachable") from None
    hashed_text = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    if not hashed_text or not hashed_text.startswith("$2"):
        unavailable("this libc's crypt() cannot make bcrypt hashes")
    return hashed_text


# --- the test image -----------------------------------------------------------------------


@dataclass(frozen=True)
class PushedImage:
    archive: Path
    manifest_digest: str
    config_digest: str
    layer_digests: tuple[str, ...]


def _tiny_oci_archive(path: Path) -> None:
    """A one-file OCI image archive, for when hack/make-test-image.sh is not there."""
    layer_tar = io.BytesIO()
    with tarfile.open(fileobj=layer_tar, mode="w") as tar:
        payload = b"hello from kukeon\n"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(payload)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(payload))
    diff_id = digest_of(layer_tar.getvalue())
    layer = gzip.compress(layer_tar.getvalue(), mtime=0)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["/hello"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest_of(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest_of(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest_of(manifest),
                    "size": len(manifest),
                }
            ],
        }
    ).encode()
    files = {
        "oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
        "index.json": index,
        **{f"blobs/sha256/{digest_of(b)[7:]}": b for b in (layer, config, manifest)},
    }
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _describe_archive(path: Path) -> PushedImage:
    with tarfile.open(path) as tar:

        def read(name: str) -> bytes:
            for candidate in (name, f"./{name}"):
                try:
                    member = tar.extractfile(candidate)
                except KeyError:
                    continue
                if member is not None:
                    return member.read()
            raise AssertionError(f"{name} missing from {path}")

        index = json.loads(read("index.json"))
        manifest_digest = index["manifests"][0]["digest"]
        manifest = json.loads(read(f"blobs/sha256/{manifest_digest[7:]}"))
    return PushedImage(
        archive=path,
        manifest_digest=manifest_digest,
        config_digest=manifest["config"]["digest"],
        layer_digests=tuple(layer["digest"] for layer in manifest["layers"]),
    )


@pytest.fixture(scope="module")
def test_image(tmp_path_factory: pytest.TempPathFactory) -> PushedImage:
    out = tmp_path_factory.mktemp("image") / "busybox.tar"
    script = REPO_ROOT / "hack" / "make-test-image.sh"
    if script.is_file() and Path("/bin/busybox").is_file():
        subprocess.run(["bash", str(script), str(out)], check=True, capture_output=True)
    else:
        _tiny_oci_archive(out)
    return _describe_archive(out)


# --- the registry ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Registry:
    host: str
    password: str
    reference: str

    def credentials(self, password: str | None = None) -> list[RegistryCredential]:
        return [RegistryCredential(f"http://{self.host}", USERNAME, password or self.password)]


def _wait_for_http(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"docker-registry exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # 401: it is up and asking for credentials
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"docker-registry did not answer on {url}: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def registry(
    tmp_path_factory: pytest.TempPathFactory, test_image: PushedImage
) -> Iterator[Registry]:
    binary = require_binary("docker-registry", "docker-registry")
    skopeo = require_binary("skopeo", "skopeo")
    workdir = tmp_path_factory.mktemp("registry")
    password = secrets.token_hex(8)
    (workdir / "htpasswd").write_text(f"{USERNAME}:{bcrypt_hash(password)}\n")
    port = free_tcp_port()
    host = f"127.0.0.1:{port}"
    (workdir / "config.yml").write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'data'}\n"
        f"http:\n  addr: {host}\n  secret: {secrets.token_hex(16)}\n"
        f"auth:\n  htpasswd:\n    realm: kukeon-test\n    path: {workdir / 'htpasswd'}\n"
    )
    log = workdir / "registry.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [binary, "serve", str(workdir / "config.yml")],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for_http(f"http://{host}/v2/", process, log)
        reference = f"{host}/kukeon/busybox:test"
        subprocess.run(
            [
                skopeo,
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                "--dest-creds",
                f"{USERNAME}:{password}",
                f"oci-archive:{test_image.archive}",
                f"docker://{reference}",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        yield Registry(host=host, password=password, reference=reference)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class MemoryBlobStore:
    """A BlobStore in a dict, verifying digests like containerd's content store."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.labels: dict[str, dict[str, str]] = {}

    async def has_blob(self, digest: str) -> bool:
        return digest in self.blobs

    async def write_blob(
        self,
        *,
        digest: str,
        size: int,
        chunks: AsyncIterator[bytes],
        labels: Mapping[str, str] | None = None,
    ) -> None:
        data = b"".join([chunk async for chunk in chunks])
        assert len(data) == size
        assert digest_of(data) == digest
        self.blobs[digest] = data
        self.labels[digest] = dict(labels or {})

    async def read_blob(self, digest: str) -> bytes:
        return self.blobs[digest]


# --- registry client against the real registry -----------------------------------------------


async def test_pull_with_basic_auth(registry: Registry, test_image: PushedImage) -> None:
    store = MemoryBlobStore()
    async with RegistryClient(credentials=registry.credentials()) as client:
        pulled = await client.pull(registry.reference, store=store)
        again = await client.pull(registry.reference, store=store)

    assert pulled.name == registry.reference
    assert pulled.manifest.digest == test_image.manifest_digest
    assert pulled.config.digest == test_image.config_digest
    assert tuple(layer.digest for layer in pulled.layers) == test_image.layer_digests
    assert set(store.blobs) == {
        test_image.manifest_digest,
        test_image.config_digest,
        *test_image.layer_digests,
    }
    assert len(pulled.diff_ids) == len(test_image.layer_digests)
    assert again.fetched == ()


async def test_pull_by_digest(registry: Registry, test_image: PushedImage) -> None:
    ref = parse_reference(registry.reference)
    by_digest = f"{ref.name}@{test_image.manifest_digest}"
    async with RegistryClient(credentials=registry.credentials()) as client:
        pulled = await client.pull(by_digest, store=MemoryBlobStore())
    assert pulled.manifest.digest == test_image.manifest_digest


async def test_wrong_credentials_fail_naming_the_registry(registry: Registry) -> None:
    async with RegistryClient(credentials=registry.credentials("wrong-password")) as client:
        with pytest.raises(RegistryUnauthorizedError) as info:
            await client.pull(registry.reference, store=MemoryBlobStore())
    message = str(info.value)
    assert f"registry {registry.host}" in message
    assert f"user {USERNAME!r}" in message
    assert "refused the credentials" in message


async def test_missing_credentials_fail_naming_the_registry(registry: Registry) -> None:
    async with RegistryClient() as client:
        with pytest.raises(RegistryUnauthorizedError) as info:
            await client.pull(registry.reference, store=MemoryBlobStore())
    assert f"registry {registry.host}" in str(info.value)
    assert "no credentials are configured" in str(info.value)


async def test_unknown_tag(registry: Registry) -> None:
    ref = parse_reference(registry.reference)
    async with RegistryClient(credentials=registry.credentials()) as client:
        with pytest.raises(ManifestUnknownError) as info:
            await client.pull(f"{ref.name}:no-such-tag", store=MemoryBlobStore())
    assert "MANIFEST_UNKNOWN" in str(info.value)
    assert f"{ref.name}:no-such-tag" in str(info.value)


# --- pull_image into a private containerd ---------------------------------------------------


async def test_pull_image_into_containerd(
    registry: Registry,
    test_image: PushedImage,
    containerd_client: ContainerdClient,
    containerd_namespace: str,
) -> None:
    client, namespace = containerd_client, containerd_namespace
    first = await pull_image(
        client, namespace, registry.reference, credentials=registry.credentials()
    )
    assert first.name == registry.reference
    assert first.image.target.digest == test_image.manifest_digest
    assert first.chain_id is not None

    images = client.images(namespace)
    record = await images.get(registry.reference)
    assert record.target.digest == test_image.manifest_digest
    config = await images.config(registry.reference)
    assert config.entrypoint or config.cmd
    assert await client.snapshots(namespace).exists(first.chain_id)
    content = client.content(namespace)
    for digest in (test_image.config_digest, *test_image.layer_digests):
        assert await content.has_blob(digest)

    # a second pull fetches nothing and unpacks nothing new
    second = await pull_image(
        client, namespace, registry.reference, credentials=registry.credentials()
    )
    assert second.pulled.fetched == ()
    assert second.chain_id == first.chain_id

    with pytest.raises(RegistryUnauthorizedError, match=registry.host):
        await pull_image(
            client, namespace, registry.reference, credentials=registry.credentials("wrong")
        )
