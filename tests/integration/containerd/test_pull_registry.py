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
from kukeon.runtime.containerd.oci import MEDIA_TYPE_OCI_INDEX, Platform, host_platform
from kukeon.runtime.containerd.pull import pull_image
from kukeon.runtime.containerd.reference import parse_reference
from kukeon.runtime.containerd.registry import RegistryClient
from kukeon.runtime.containerd.registryaccess import RegistryRefusedError
from kukeon.runtime.containerd.registryerrors import (
    ManifestUnknownError,
    RegistryUnauthorizedError,
)
from kukeon.runtime.containerd.spec import ImageLayer, read_image_user_database
from kukeon.runtime.containerd.types import RegistryCredential
from tests.fixtures.services import free_tcp_port, require_binary, unavailable
from tests.fixtures.sessions import spawn_service

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


MEDIA_TYPE_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _descriptor(media_type: str, data: bytes, **extra: object) -> dict[str, object]:
    return {"mediaType": media_type, "digest": digest_of(data), "size": len(data), **extra}


def _tiny_image(architecture: str) -> tuple[dict[str, object], dict[str, bytes]]:
    """A one-file image for ``architecture``: its manifest descriptor and its blobs."""
    layer_tar = io.BytesIO()
    with tarfile.open(fileobj=layer_tar, mode="w") as tar:
        for name, payload in (
            ("hello.txt", f"hello from kukeon on {architecture}\n".encode()),
            ("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),
            ("etc/group", b"root:x:0:\n"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    layer = gzip.compress(layer_tar.getvalue(), mtime=0)
    config = json.dumps(
        {
            "architecture": architecture,
            "os": "linux",
            "config": {"Cmd": ["/hello"]},
            "rootfs": {"type": "layers", "diff_ids": [digest_of(layer_tar.getvalue())]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": _descriptor("application/vnd.oci.image.config.v1+json", config),
            "layers": [_descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer)],
        }
    ).encode()
    blobs = {digest_of(blob): blob for blob in (layer, config, manifest)}
    return _descriptor(MEDIA_TYPE_MANIFEST, manifest), blobs


def _read_archive(path: Path) -> tuple[dict[str, object], dict[str, bytes]]:
    """The layout's index.json and every blob of an OCI image archive."""
    blobs: dict[str, bytes] = {}
    index: dict[str, object] = {}
    with tarfile.open(path) as tar:
        for member in tar.getmembers():
            name = member.name.removeprefix("./")
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is None:
                continue
            if name == "index.json":
                index = json.loads(handle.read())
            elif name.startswith("blobs/sha256/"):
                blobs["sha256:" + name.rsplit("/", 1)[1]] = handle.read()
    return index, blobs


def _write_archive(path: Path, entries: list[dict[str, object]], blobs: dict[str, bytes]) -> None:
    layout_index = json.dumps({"schemaVersion": 2, "manifests": entries}).encode()
    files = {
        "oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
        "index.json": layout_index,
        **{f"blobs/sha256/{digest[7:]}": data for digest, data in blobs.items()},
    }
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _describe_archive(path: Path) -> PushedImage:
    index, blobs = _read_archive(path)
    entries = index["manifests"]
    assert isinstance(entries, list)
    manifest_digest = entries[0]["digest"]
    manifest = json.loads(blobs[manifest_digest])
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
    else:  # the helper script is another part of the project: do without it if missing
        descriptor, blobs = _tiny_image(host_platform().architecture)
        _write_archive(out, [descriptor], blobs)
    return _describe_archive(out)


@dataclass(frozen=True)
class MultiPlatformImage:
    archive: Path
    index_digest: str
    host_manifest_digest: str
    foreign_manifest_digest: str
    foreign: Platform


@pytest.fixture(scope="module")
def multi_platform_image(
    tmp_path_factory: pytest.TempPathFactory, test_image: PushedImage
) -> MultiPlatformImage:
    """An OCI index: the test image for this host, and a tiny image for another platform."""
    host = host_platform()
    foreign = Platform("linux", "s390x" if host.architecture != "s390x" else "amd64")
    _, blobs = _read_archive(test_image.archive)
    foreign_descriptor, foreign_blobs = _tiny_image(foreign.architecture)
    blobs.update(foreign_blobs)
    host_platform_json = {"os": "linux", "architecture": host.architecture}
    if host.variant:
        host_platform_json["variant"] = host.variant
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_INDEX,
            "manifests": [
                {
                    **foreign_descriptor,
                    "platform": {"os": "linux", "architecture": foreign.architecture},
                },
                {
                    **_descriptor(MEDIA_TYPE_MANIFEST, blobs[test_image.manifest_digest]),
                    "platform": host_platform_json,
                },
            ],
        }
    ).encode()
    blobs[digest_of(index)] = index
    out = tmp_path_factory.mktemp("image") / "multi.tar"
    _write_archive(out, [_descriptor(MEDIA_TYPE_INDEX, index)], blobs)
    return MultiPlatformImage(
        archive=out,
        index_digest=digest_of(index),
        host_manifest_digest=test_image.manifest_digest,
        foreign_manifest_digest=str(foreign_descriptor["digest"]),
        foreign=foreign,
    )


# --- the registry ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Registry:
    host: str
    password: str
    reference: str
    skopeo: str

    @property
    def listed(self) -> list[str]:
        """kukeond's insecureRegistries for it: a registry on loopback is pulled from (over
        plain HTTP) only when listed."""
        return [self.host]

    def credentials(self, password: str | None = None) -> list[RegistryCredential]:
        return [RegistryCredential(f"http://{self.host}", USERNAME, password or self.password)]

    def push(self, archive: Path, reference: str, *, all_platforms: bool = False) -> None:
        command = [
            self.skopeo,
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--dest-creds",
            f"{USERNAME}:{self.password}",
            f"oci-archive:{archive}",
            f"docker://{reference}",
        ]
        if all_platforms:
            command.insert(2, "--all")
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, f"skopeo push failed: {result.stderr}"


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
        process = spawn_service([binary, "serve", str(workdir / "config.yml")], stdout=log_file)
    try:
        _wait_for_http(f"http://{host}/v2/", process, log)
        pushed = Registry(
            host=host, password=password, reference=f"{host}/kukeon/busybox:test", skopeo=skopeo
        )
        pushed.push(test_image.archive, pushed.reference)
        yield pushed
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
    async with RegistryClient(
        insecure_registries=registry.listed, credentials=registry.credentials()
    ) as client:
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
    async with RegistryClient(
        insecure_registries=registry.listed, credentials=registry.credentials()
    ) as client:
        pulled = await client.pull(by_digest, store=MemoryBlobStore())
    assert pulled.manifest.digest == test_image.manifest_digest


async def test_wrong_credentials_fail_naming_the_registry(registry: Registry) -> None:
    async with RegistryClient(
        insecure_registries=registry.listed, credentials=registry.credentials("wrong-password")
    ) as client:
        with pytest.raises(RegistryUnauthorizedError) as info:
            await client.pull(registry.reference, store=MemoryBlobStore())
    message = str(info.value)
    assert f"registry {registry.host}" in message
    assert f"user {USERNAME!r}" in message
    assert "refused the credentials" in message


async def test_missing_credentials_fail_naming_the_registry(registry: Registry) -> None:
    async with RegistryClient(insecure_registries=registry.listed) as client:
        with pytest.raises(RegistryUnauthorizedError) as info:
            await client.pull(registry.reference, store=MemoryBlobStore())
    assert f"registry {registry.host}" in str(info.value)
    assert "no credentials are configured" in str(info.value)


async def test_unknown_tag(registry: Registry) -> None:
    ref = parse_reference(registry.reference)
    async with RegistryClient(
        insecure_registries=registry.listed, credentials=registry.credentials()
    ) as client:
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
        client,
        namespace,
        registry.reference,
        credentials=registry.credentials(),
        insecure_registries=registry.listed,
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

    # the image's user database, read from its layers in the content store, resolves users
    manifest = await images.manifest(registry.reference)
    layers = [ImageLayer(layer.media_type, layer.digest) for layer in manifest.layers]
    passwd, group = await read_image_user_database(content, layers)
    assert passwd is not None
    assert group is not None
    assert passwd.startswith("root:")

    # a second pull fetches nothing and unpacks nothing new
    second = await pull_image(
        client,
        namespace,
        registry.reference,
        credentials=registry.credentials(),
        insecure_registries=registry.listed,
    )
    assert second.pulled.fetched == ()
    assert second.chain_id == first.chain_id

    # Unlisted, a registry on the node gets no request (a realm editor's reference could
    # name any service on the node's loopback).
    with pytest.raises(RegistryRefusedError, match="is a loopback address"):
        await pull_image(client, namespace, registry.reference, credentials=registry.credentials())

    with pytest.raises(RegistryUnauthorizedError, match=registry.host):
        await pull_image(
            client,
            namespace,
            registry.reference,
            credentials=registry.credentials("wrong"),
            insecure_registries=registry.listed,
        )


async def test_multi_platform_index(
    registry: Registry,
    multi_platform_image: MultiPlatformImage,
    containerd_client: ContainerdClient,
    containerd_namespace: str,
) -> None:
    image = multi_platform_image
    reference = f"{registry.host}/kukeon/multi:1"
    registry.push(image.archive, reference, all_platforms=True)

    # the registry client picks the entry of the platform it is asked for
    async with RegistryClient(
        insecure_registries=registry.listed,
        credentials=registry.credentials(),
        platform=image.foreign,
    ) as client:
        foreign = await client.pull(reference, store=MemoryBlobStore())
    assert foreign.target.digest == image.index_digest
    assert foreign.manifest.digest == image.foreign_manifest_digest

    # pull_image takes this host's entry, records the index and unpacks the host's layers
    result = await pull_image(
        containerd_client,
        containerd_namespace,
        reference,
        credentials=registry.credentials(),
        insecure_registries=registry.listed,
    )
    assert result.image.target.media_type == MEDIA_TYPE_OCI_INDEX
    assert result.image.target.digest == image.index_digest
    assert result.pulled.manifest.digest == image.host_manifest_digest
    assert result.chain_id is not None
    content = containerd_client.content(containerd_namespace)
    assert not await content.has_blob(image.foreign_manifest_digest)
