"""The registry client against an in-process fake registry on loopback and an in-memory store.

The fake speaks just enough of the distribution API (manifests, blobs, basic auth, a bearer
token service) to drive every branch of the client; the real docker-registry is exercised
by tests/integration/containerd/test_pull_registry.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from kukeon.runtime.containerd.oci import (
    MEDIA_TYPE_DOCKER_LIST,
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
    Platform,
)
from kukeon.runtime.containerd.registry import (
    LABEL_DISTRIBUTION_SOURCE,
    LABEL_UNCOMPRESSED,
    RegistryClient,
    ResolvedImage,
)
from kukeon.runtime.containerd.registryerrors import (
    BlobUnknownError,
    DigestMismatchError,
    ManifestUnknownError,
    NoMatchingPlatformError,
    RegistryUnauthorizedError,
    RegistryUnreachableError,
    UnsupportedManifestError,
)
from kukeon.runtime.containerd.types import RegistryCredential
from tests.fixtures.services import free_tcp_port
from tests.unit.runtime.platform_cases import PLATFORM_CASES, PlatformCase

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64", "v8")
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class MemoryBlobStore:
    """A BlobStore that keeps blobs in a dict and verifies digests like containerd does."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.labels: dict[str, dict[str, str]] = {}
        self.writes: list[str] = []

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
        if len(data) != size or digest_of(data) != digest:
            raise ValueError(f"store: {digest} does not match its content")
        self.blobs[digest] = data
        self.labels[digest] = dict(labels or {})
        self.writes.append(digest)

    async def read_blob(self, digest: str) -> bytes:
        return self.blobs[digest]


@dataclass
class FakeImage:
    manifest: bytes
    manifest_digest: str
    config: bytes
    layers: list[bytes]
    diff_ids: list[str]
    media_type: str

    @property
    def config_digest(self) -> str:
        return digest_of(self.config)

    @property
    def layer_digests(self) -> list[str]:
        return [digest_of(layer) for layer in self.layers]


def make_image(
    *,
    layer_count: int = 2,
    docker: bool = False,
    cmd: list[str] | None = None,
    declare_media_type: bool = True,
) -> FakeImage:
    layers = [secrets.token_bytes(300_000 + i) for i in range(layer_count)]
    diff_ids = [digest_of(b"uncompressed" + layer[:10]) for layer in layers]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": cmd or ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    media_type = MEDIA_TYPE_DOCKER_MANIFEST if docker else MEDIA_TYPE_OCI_MANIFEST
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "config": {
            "mediaType": MEDIA_TYPE_OCI_CONFIG,
            "digest": digest_of(config),
            "size": len(config),
        },
        "layers": [
            {"mediaType": LAYER_TYPE, "digest": digest_of(layer), "size": len(layer)}
            for layer in layers
        ],
    }
    if declare_media_type:
        document["mediaType"] = media_type
    manifest = json.dumps(document).encode()
    return FakeImage(manifest, digest_of(manifest), config, layers, diff_ids, media_type)


def make_index(entries: list[tuple[FakeImage, Platform]], *, docker: bool = False) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_DOCKER_LIST if docker else MEDIA_TYPE_OCI_INDEX,
            "manifests": [
                {
                    "mediaType": image.media_type,
                    "digest": image.manifest_digest,
                    "size": len(image.manifest),
                    "platform": {
                        "os": plat.os,
                        "architecture": plat.architecture,
                        **({"variant": plat.variant} if plat.variant else {}),
                    },
                }
                for image, plat in entries
            ],
        }
    ).encode()


@dataclass
class FakeRegistry:
    """State and knobs of the fake registry."""

    manifests: dict[tuple[str, str], tuple[str, bytes]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    auth: str = "none"  # none | basic | bearer
    username: str = "alice"
    password: str = "s3cret"
    issued_tokens: set[str] = field(default_factory=set)
    token_requests: list[Mapping[str, str]] = field(default_factory=list)
    blob_gets: Counter[str] = field(default_factory=Counter)
    corrupt: set[str] = field(default_factory=set)
    failures_before_success: dict[str, int] = field(default_factory=dict)
    content_type_override: str | None = None
    token_body: bytes | None = None
    base: str = ""
    accept_encodings: set[str] = field(default_factory=set)

    def add_image(self, repo: str, tag: str, image: FakeImage) -> None:
        self.manifests[(repo, tag)] = (image.media_type, image.manifest)
        self.manifests[(repo, image.manifest_digest)] = (image.media_type, image.manifest)
        self.blobs[image.config_digest] = image.config
        for layer in image.layers:
            self.blobs[digest_of(layer)] = layer

    def add_index(self, repo: str, tag: str, index: bytes, media_type: str) -> None:
        self.manifests[(repo, tag)] = (media_type, index)
        self.manifests[(repo, digest_of(index))] = (media_type, index)

    def _basic_ok(self, header: str) -> bool:
        expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return header == f"Basic {expected}"

    def _authorized(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization", "")
        if self.auth == "basic" and not self._basic_ok(header):
            return _error(
                401,
                "UNAUTHORIZED",
                "authentication required",
                {"WWW-Authenticate": 'Basic realm="fake"'},
            )
        if self.auth == "bearer":
            token = header.removeprefix("Bearer ")
            if not header.startswith("Bearer ") or token not in self.issued_tokens:
                repo = request.match_info["repo"]
                challenge = (
                    f'Bearer realm="{self.base}/token",service="fake-registry",'
                    f'scope="repository:{repo}:pull"'
                )
                return _error(
                    401, "UNAUTHORIZED", "token required", {"WWW-Authenticate": challenge}
                )
        return None

    async def token(self, request: web.Request) -> web.Response:
        self.token_requests.append(dict(request.query))
        if not self._basic_ok(request.headers.get("Authorization", "")):
            return web.json_response({"details": "bad credentials"}, status=401)
        if self.token_body is not None:
            return web.Response(body=self.token_body, content_type="text/plain")
        token = secrets.token_hex(8)
        self.issued_tokens.add(token)
        return web.json_response({"access_token": token, "expires_in": 300})

    async def manifest(self, request: web.Request) -> web.Response:
        self.accept_encodings.add(request.headers.get("Accept-Encoding", ""))
        if (denied := self._authorized(request)) is not None:
            return denied
        key = (request.match_info["repo"], request.match_info["ref"])
        if key not in self.manifests:
            return _error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        media_type, body = self.manifests[key]
        headers = {"Docker-Content-Digest": digest_of(body)}
        return web.Response(
            body=body, content_type=self.content_type_override or media_type, headers=headers
        )

    async def blob(self, request: web.Request) -> web.StreamResponse:
        if (denied := self._authorized(request)) is not None:
            return denied
        digest = request.match_info["digest"]
        self.blob_gets[digest] += 1
        if self.failures_before_success.get(digest, 0) > 0:
            self.failures_before_success[digest] -= 1
            return _error(503, "UNAVAILABLE", "try again")
        if digest not in self.blobs:
            return _error(404, "BLOB_UNKNOWN", "blob unknown to registry")
        data = self.blobs[digest]
        if digest in self.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        return web.Response(body=data, content_type="application/octet-stream")


def _error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {"errors": [{"code": code, "message": message}]}, status=status, headers=headers
    )


@pytest.fixture
async def registry() -> AsyncIterator[tuple[FakeRegistry, str]]:
    fake = FakeRegistry()
    app = web.Application()
    app.router.add_get("/token", fake.token)
    app.router.add_get(r"/v2/{repo:.+}/manifests/{ref}", fake.manifest)
    app.router.add_get(r"/v2/{repo:.+}/blobs/{digest}", fake.blob)
    server = TestServer(app, host="127.0.0.1", port=free_tcp_port())
    await server.start_server()
    host = f"127.0.0.1:{server.port}"
    fake.base = f"http://{host}"
    try:
        yield fake, host
    finally:
        await server.close()


async def pull(
    host: str,
    reference: str,
    store: MemoryBlobStore,
    *,
    credentials: list[RegistryCredential] | None = None,
    platform: Platform = AMD64,
    before_fetch: Callable[[ResolvedImage], Awaitable[None]] | None = None,
) -> Any:
    # The fake registry is on loopback: listed, as kukeond's configuration must list it.
    async with RegistryClient(
        credentials=credentials or [], platform=platform, insecure_registries=[host]
    ) as client:
        return await client.pull(f"{host}/{reference}", store=store, before_fetch=before_fetch)


async def test_anonymous_pull_stores_every_blob_with_gc_labels(
    registry: tuple[FakeRegistry, str],
) -> None:
    fake, host = registry
    image = make_image(cmd=["echo", "hi"])
    fake.add_image("team/app", "v1", image)
    store = MemoryBlobStore()

    pulled = await pull(host, "team/app:v1", store)

    assert pulled.name == f"{host}/team/app:v1"
    assert pulled.target == pulled.manifest
    assert pulled.manifest.digest == image.manifest_digest
    assert pulled.manifest.media_type == MEDIA_TYPE_OCI_MANIFEST
    assert pulled.config.digest == image.config_digest
    assert [layer.digest for layer in pulled.layers] == image.layer_digests
    assert pulled.diff_ids == tuple(image.diff_ids)
    assert pulled.image_config.cmd == ("echo", "hi")
    assert set(pulled.fetched) == {image.manifest_digest, image.config_digest, *image.layer_digests}
    assert pulled.reused == ()
    assert store.blobs[image.manifest_digest] == image.manifest
    # children are written before the manifest that references them
    assert store.writes[-1] == image.manifest_digest
    manifest_labels = store.labels[image.manifest_digest]
    assert manifest_labels["containerd.io/gc.ref.content.config"] == image.config_digest
    for position, layer_digest in enumerate(image.layer_digests):
        assert manifest_labels[f"containerd.io/gc.ref.content.l.{position}"] == layer_digest
        assert store.labels[layer_digest][LABEL_UNCOMPRESSED] == image.diff_ids[position]
        assert store.labels[layer_digest][f"{LABEL_DISTRIBUTION_SOURCE}.{host}"] == "team/app"


async def test_a_pull_offers_no_zstd_coding(registry: tuple[FakeRegistry, str]) -> None:
    # aiohttp's default offers zstd once backports.zstd is installed: a registry's zstd
    # answer would be decoded with a window it chose, outside the node's zstd budget.
    fake, host = registry
    fake.add_image("app", "latest", make_image())
    await pull(host, "app", MemoryBlobStore())
    assert fake.accept_encodings == {"gzip, deflate"}


async def test_second_pull_fetches_nothing_again(registry: tuple[FakeRegistry, str]) -> None:
    fake, host = registry
    image = make_image()
    fake.add_image("app", "latest", image)
    store = MemoryBlobStore()
    await pull(host, "app", store)
    gets_after_first = sum(fake.blob_gets.values())

    again = await pull(host, "app", store)

    assert sum(fake.blob_gets.values()) == gets_after_first
    assert again.fetched == ()
    assert set(again.reused) == {image.manifest_digest, image.config_digest, *image.layer_digests}
    assert again.image_config.cmd == ("sh",)  # read back from the store


async def test_before_fetch_sees_every_blob_and_may_refuse_before_any_is_fetched(
    registry: tuple[FakeRegistry, str],
) -> None:
    seen: list[dict[str, int]] = []

    async def refuse(resolved: ResolvedImage) -> None:
        seen.append(resolved.blob_sizes())
        raise PermissionError("no room")

    fake, host = registry
    image = make_image()
    fake.add_image("app", "latest", image)
    store = MemoryBlobStore()
    with pytest.raises(PermissionError, match="no room"):
        await pull(host, "app", store, before_fetch=refuse)
    assert set(seen[0]) == {image.manifest_digest, image.config_digest, *image.layer_digests}
    assert all(size > 0 for size in seen[0].values())
    assert sum(fake.blob_gets.values()) == 0
    assert store.blobs == {}


async def test_interrupted_pull_resumes_with_missing_blobs_only(
    registry: tuple[FakeRegistry, str],
) -> None:
    fake, host = registry
    image = make_image(layer_count=3)
    fake.add_image("app", "latest", image)
    store = MemoryBlobStore()
    first_layer = image.layer_digests[0]
    store.blobs[first_layer] = image.layers[0]

    pulled = await pull(host, "app:latest", store)

    assert fake.blob_gets[first_layer] == 0
    assert first_layer in pulled.reused
    assert set(image.layer_digests[1:]) <= set(pulled.fetched)


async def test_index_picks_the_host_platform(registry: tuple[FakeRegistry, str]) -> None:
    fake, host = registry
    amd, arm = make_image(cmd=["amd"]), make_image(cmd=["arm"])
    fake.add_image("multi", amd.manifest_digest, amd)
    fake.add_image("multi", arm.manifest_digest, arm)
    index = make_index([(amd, AMD64), (arm, ARM64)])
    fake.add_index("multi", "latest", index, MEDIA_TYPE_OCI_INDEX)
    store = MemoryBlobStore()

    pulled = await pull(host, "multi", store, platform=ARM64)

    assert pulled.target.digest == digest_of(index)
    assert pulled.target.media_type == MEDIA_TYPE_OCI_INDEX
    assert pulled.manifest.digest == arm.manifest_digest
    assert pulled.image_config.cmd == ("arm",)
    assert store.blobs[digest_of(index)] == index
    assert store.labels[digest_of(index)] == {
        "containerd.io/gc.ref.content.m.1": arm.manifest_digest
    }
    assert store.writes[-1] == digest_of(index)
    assert amd.config_digest not in store.blobs


@pytest.mark.parametrize("case", PLATFORM_CASES.values(), ids=PLATFORM_CASES.keys())
async def test_pull_chooses_as_archive_import_does(
    registry: tuple[FakeRegistry, str], case: PlatformCase
) -> None:
    """The table tests/unit/runtime/test_oci.py runs through the archive import's choice."""
    fake, host = registry
    images = [make_image(layer_count=1, cmd=[str(n)]) for n in range(len(case.offered))]
    entries: list[dict[str, Any]] = []
    for image, platform in zip(images, case.offered, strict=True):
        fake.add_image("multi", image.manifest_digest, image)
        entry: dict[str, Any] = {
            "mediaType": image.media_type,
            "digest": image.manifest_digest,
            "size": len(image.manifest),
        }
        if platform is not None:
            entry["platform"] = {"os": platform.os, "architecture": platform.architecture}
            if platform.variant:
                entry["platform"]["variant"] = platform.variant
        entries.append(entry)
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": MEDIA_TYPE_OCI_INDEX, "manifests": entries}
    )
    fake.add_index("multi", "latest", index.encode(), MEDIA_TYPE_OCI_INDEX)

    if case.chosen is None:
        with pytest.raises(NoMatchingPlatformError, match=f"no image for platform {case.wanted}"):
            await pull(host, "multi", MemoryBlobStore(), platform=case.wanted)
        return
    pulled = await pull(host, "multi", MemoryBlobStore(), platform=case.wanted)
    assert pulled.manifest.digest == images[case.chosen].manifest_digest
    assert pulled.manifest.platform == case.offered[case.chosen]


async def test_docker_manifest_list(registry: tuple[FakeRegistry, str]) -> None:
    fake, host = registry
    image = make_image(docker=True)
    fake.add_image("dock", image.manifest_digest, image)
    index = make_index([(image, AMD64)], docker=True)
    fake.add_index("dock", "1", index, MEDIA_TYPE_DOCKER_LIST)

    pulled = await pull(host, "dock:1", MemoryBlobStore())

    assert pulled.target.media_type == MEDIA_TYPE_DOCKER_LIST
    assert pulled.manifest.media_type == MEDIA_TYPE_DOCKER_MANIFEST


async def test_no_matching_platform_names_what_is_offered(
    registry: tuple[FakeRegistry, str],
) -> None:
    fake, host = registry
    arm = make_image()
    fake.add_image("multi", arm.manifest_digest, arm)
    fake.add_index("multi", "latest", make_index([(arm, ARM64)]), MEDIA_TYPE_OCI_INDEX)

    with pytest.raises(NoMatchingPlatformError) as info:
        await pull(host, "multi", MemoryBlobStore(), platform=AMD64)

    assert "linux/amd64" in str(info.value)
    assert "linux/arm64/v8" in str(info.value)
    assert info.value.registry == host


async def test_pull_by_digest_and_manifest_without_media_type(
    registry: tuple[FakeRegistry, str],
) -> None:
    fake, host = registry
    image = make_image(declare_media_type=False)
    fake.add_image("app", "latest", image)
    fake.content_type_override = "application/json"

    pulled = await pull(host, f"app@{image.manifest_digest}", MemoryBlobStore())

    assert pulled.manifest.digest == image.manifest_digest
    assert pulled.manifest.media_type == MEDIA_TYPE_OCI_MANIFEST
    assert pulled.name == f"{host}/app@{image.manifest_digest}"


async def test_pull_by_digest_refuses_a_different_manifest(
    registry: tuple[FakeRegistry, str],
) -> None:
    fake, host = registry
    image, other = make_image(), make_image()
    fake.add_image("app", "latest", image)
    fake.manifests[("app", image.manifest_digest)] = (other.media_type, other.manifest)

    with pytest.raises(DigestMismatchError) as info:
        await pull(host, f"app@{image.manifest_digest}", MemoryBlobStore())

    assert info.value.expected == image.manifest_digest
    assert host in str(info.value)


async def test_corrupt_blob_is_refused_and_not_stored(registry: tuple[FakeRegistry, str]) -> None:
    fake, host = registry
    image = make_image()
    fake.add_image("app", "latest", image)
    bad_layer = image.layer_digests[1]
    fake.corrupt.add(bad_layer)
    store = MemoryBlobStore()

    with pytest.raises(DigestMismatchError) as info:
        await pull(host, "app", store)

    message = str(info.value)
    assert f"registry {host}" in message
    assert f"{host}/app:latest" in message
    assert bad_layer in message
    assert bad_layer not in store.blobs
    assert image.manifest_digest not in store.blobs


async def test_manifest_unknown(registry: tuple[FakeRegistry, str]) -> None:
    _, host = registry
    with pytest.raises(ManifestUnknownError) as info:
        await pull(host, "nothing:here", MemoryBlobStore())
    assert f"registry {host}: {host}/nothing:here" in str(info.value)
    assert "MANIFEST_UNKNOWN" in str(info.value)


async def test_missing_blob(registry: tuple[FakeRegistry, str]) -> None:
    fake, host = registry
    image = make_image()
    fake.add_image("app", "latest", image)
    del fake.blobs[image.layer_digests[0]]
    with pytest.raises(BlobUnknownError, match="BLOB_UNKNOWN"):
        await pull(host, "app", MemoryBlobStore())


async def test_transient_server_errors_are_retried(registry: tuple[FakeRegistry, str]) -> None:
    fake, host = registry
    image = make_image()
    fake.add_image("app", "latest", image)
    fake.failures_before_success[image.layer_digests[0]] = 1
    pulled = await pull(host, "app", MemoryBlobStore())
    assert fake.blob_gets[image.layer_digests[0]] == 2
    assert image.layer_digests[0] in pulled.fetched


async def test_persistent_server_errors_give_up(registry: tuple[FakeRegistry, str]) -> None:
    fake, host = registry
    image = make_image()
    fake.add_image("app", "latest", image)
    fake.failures_before_success[image.config_digest] = 10
    with pytest.raises(Exception, match="HTTP 503") as info:
        await pull(host, "app", MemoryBlobStore())
    assert host in str(info.value)
    assert fake.blob_gets[image.config_digest] == 3


async def test_schema1_is_unsupported(registry: tuple[FakeRegistry, str]) -> None:
    fake, host = registry
    fake.manifests[("old", "latest")] = (
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        b'{"schemaVersion": 1, "fsLayers": []}',
    )
    with pytest.raises(UnsupportedManifestError, match="schema 1"):
        await pull(host, "old", MemoryBlobStore())


async def test_a_layer_listed_many_times_is_fetched_once(
    registry: tuple[FakeRegistry, str],
) -> None:
    """A manifest may name one layer many times (a registry's editor can list it up to the
    500 layers allowed): each listing started a fetch of its own, as none was stored yet
    when the others looked, so the registry was asked for the same bytes again and again."""
    fake, host = registry
    layer = secrets.token_bytes(300_000)
    repeats = 20
    diff_ids = [digest_of(b"uncompressed" + layer[:10])] * repeats
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    ).encode()
    descriptor = {"mediaType": LAYER_TYPE, "digest": digest_of(layer), "size": len(layer)}
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_OCI_MANIFEST,
            "config": {
                "mediaType": MEDIA_TYPE_OCI_CONFIG,
                "digest": digest_of(config),
                "size": len(config),
            },
            "layers": [descriptor] * repeats,
        }
    ).encode()
    image = FakeImage(
        manifest, digest_of(manifest), config, [layer], diff_ids, MEDIA_TYPE_OCI_MANIFEST
    )
    fake.add_image("app", "latest", image)
    store = MemoryBlobStore()

    await pull(host, "app", store)

    assert fake.blob_gets[digest_of(layer)] == 1
    assert store.blobs[digest_of(layer)] == layer


async def test_layer_count_must_match_diff_ids(registry: tuple[FakeRegistry, str]) -> None:
    fake, host = registry
    image = make_image(layer_count=2)
    document = json.loads(image.manifest)
    document["layers"] = document["layers"][:1]
    manifest = json.dumps(document).encode()
    fake.add_image("app", "latest", image)
    fake.manifests[("app", "latest")] = (image.media_type, manifest)
    with pytest.raises(UnsupportedManifestError, match="1 layers but the config has 2"):
        await pull(host, "app", MemoryBlobStore())


async def test_malformed_descriptor(registry: tuple[FakeRegistry, str]) -> None:
    fake, host = registry
    fake.manifests[("bad", "latest")] = (
        MEDIA_TYPE_OCI_MANIFEST,
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": MEDIA_TYPE_OCI_MANIFEST,
                "config": {"mediaType": MEDIA_TYPE_OCI_CONFIG, "digest": "sha256:12", "size": 3},
                "layers": [],
            }
        ).encode(),
    )
    with pytest.raises(
        UnsupportedManifestError,
        match=r"manifest sha256:[0-9a-f]{64}: config: sha256 digest must be",
    ):
        await pull(host, "bad", MemoryBlobStore())


async def test_basic_auth(registry: tuple[FakeRegistry, str]) -> None:
    fake, host = registry
    fake.auth = "basic"
    image = make_image()
    fake.add_image("private", "latest", image)
    good = [RegistryCredential(f"http://{host}", "alice", "s3cret")]

    pulled = await pull(host, "private", MemoryBlobStore(), credentials=good)

    assert pulled.manifest.digest == image.manifest_digest


async def test_basic_auth_wrong_password_names_registry_and_user(
    registry: tuple[FakeRegistry, str],
) -> None:
    fake, host = registry
    fake.auth = "basic"
    fake.add_image("private", "latest", make_image())
    wrong = [RegistryCredential(host, "alice", "nope")]

    with pytest.raises(RegistryUnauthorizedError) as info:
        await pull(host, "private", MemoryBlobStore(), credentials=wrong)

    message = str(info.value)
    assert f"registry {host}" in message
    assert "'alice'" in message
    assert "refused the credentials" in message
    assert info.value.registry == host
    assert info.value.reference == f"{host}/private:latest"


async def test_auth_required_without_credentials(registry: tuple[FakeRegistry, str]) -> None:
    fake, host = registry
    fake.auth = "basic"
    fake.add_image("private", "latest", make_image())
    other_registry = [RegistryCredential("ghcr.io", "alice", "s3cret")]
    with pytest.raises(RegistryUnauthorizedError, match="no credentials are configured"):
        await pull(host, "private", MemoryBlobStore(), credentials=other_registry)


async def test_bearer_token_flow(registry: tuple[FakeRegistry, str]) -> None:
    fake, host = registry
    fake.auth = "bearer"
    image = make_image()
    fake.add_image("team/private", "latest", image)
    creds = [RegistryCredential(host, "alice", "s3cret")]

    pulled = await pull(host, "team/private", MemoryBlobStore(), credentials=creds)

    assert pulled.manifest.digest == image.manifest_digest
    # one token for the whole pull, asked for with the challenge's service and our scope
    assert fake.token_requests == [
        {"scope": "repository:team/private:pull", "service": "fake-registry"}
    ]


async def test_bearer_token_refused(registry: tuple[FakeRegistry, str]) -> None:
    fake, host = registry
    fake.auth = "bearer"
    fake.add_image("private", "latest", make_image())
    creds = [RegistryCredential(host, "alice", "wrong")]
    with pytest.raises(RegistryUnauthorizedError) as info:
        await pull(host, "private", MemoryBlobStore(), credentials=creds)
    assert "token service 127.0.0.1 refused user 'alice'" in str(info.value)
    assert f"registry {host}" in str(info.value)


async def test_bearer_anonymous_refused(registry: tuple[FakeRegistry, str]) -> None:
    fake, host = registry
    fake.auth = "bearer"
    fake.add_image("private", "latest", make_image())
    with pytest.raises(RegistryUnauthorizedError, match="refused anonymous access"):
        await pull(host, "private", MemoryBlobStore())


async def test_unreachable_registry() -> None:
    host = f"127.0.0.1:{free_tcp_port()}"
    with pytest.raises(RegistryUnreachableError) as info:
        await pull(host, "app", MemoryBlobStore())
    assert f"registry {host}" in str(info.value)
    assert "cannot connect" in str(info.value)


class OpaqueStore(MemoryBlobStore):
    """Like containerd's store over gRPC: a failing source surfaces as the store's own error."""

    async def write_blob(
        self,
        *,
        digest: str,
        size: int,
        chunks: AsyncIterator[bytes],
        labels: Mapping[str, str] | None = None,
    ) -> None:
        try:
            await super().write_blob(digest=digest, size=size, chunks=chunks, labels=labels)
        except Exception as exc:
            raise RuntimeError("request stream died") from exc


async def test_source_failure_wins_over_the_stores_own_error(
    registry: tuple[FakeRegistry, str],
) -> None:
    fake, host = registry
    image = make_image()
    fake.add_image("app", "latest", image)
    fake.corrupt.add(image.layer_digests[0])
    with pytest.raises(DigestMismatchError):
        await pull(host, "app", OpaqueStore())


async def test_store_failure_of_its_own_propagates(registry: tuple[FakeRegistry, str]) -> None:
    fake, host = registry
    fake.add_image("app", "latest", make_image())

    class FullStore(MemoryBlobStore):
        async def write_blob(
            self,
            *,
            digest: str,
            size: int,
            chunks: AsyncIterator[bytes],
            labels: Mapping[str, str] | None = None,
        ) -> None:
            raise OSError("no space left on device")

    with pytest.raises(OSError, match="no space left"):
        await pull(host, "app", FullStore())


async def test_chosen_manifest_carries_its_platform(registry: tuple[FakeRegistry, str]) -> None:
    fake, host = registry
    image = make_image()
    fake.add_image("multi", image.manifest_digest, image)
    fake.add_index("multi", "latest", make_index([(image, AMD64)]), MEDIA_TYPE_OCI_INDEX)
    async with RegistryClient(platform=AMD64, insecure_registries=[host]) as client:
        resolved = await client.resolve(f"{host}/multi")
    assert resolved.manifest.platform == AMD64
    assert resolved.chosen_index_position == 0


async def test_token_service_answering_garbage(registry: tuple[FakeRegistry, str]) -> None:
    fake, host = registry
    fake.auth = "bearer"
    fake.token_body = b"<html>maintenance</html>"
    fake.add_image("app", "latest", make_image())
    creds = [RegistryCredential(host, "alice", "s3cret")]
    with pytest.raises(RegistryUnauthorizedError, match="returned no token"):
        await pull(host, "app", MemoryBlobStore(), credentials=creds)


async def test_large_manifest_is_read_whole(registry: tuple[FakeRegistry, str]) -> None:
    fake, host = registry
    image = make_image()
    document = json.loads(image.manifest)
    document["annotations"] = {f"k{i}": "v" * 100 for i in range(3000)}  # ~330 KB
    manifest = json.dumps(document).encode()
    fake.add_image("app", "latest", image)
    fake.manifests[("app", "latest")] = (image.media_type, manifest)
    pulled = await pull(host, "app", MemoryBlobStore())
    assert pulled.manifest.size == len(manifest)
    assert pulled.manifest.digest == digest_of(manifest)


async def test_oversized_manifest_is_refused(registry: tuple[FakeRegistry, str]) -> None:
    fake, host = registry
    fake.manifests[("app", "latest")] = (MEDIA_TYPE_OCI_MANIFEST, b" " * (4 * 1024 * 1024 + 1))
    with pytest.raises(UnsupportedManifestError, match="larger than 4194304 bytes"):
        await pull(host, "app", MemoryBlobStore())
