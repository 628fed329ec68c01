"""The OCI image model shared by archive import and registry pulls: media types, documents,
platform matching and digest checks."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from kukeon.api.imageref import digest_problem
from kukeon.runtime.containerd.errors import InvalidImageArchiveError, InvalidImageError
from kukeon.runtime.containerd.imagearchive import OciArchive
from kukeon.runtime.containerd.images import parse_image_config, select_platform_manifest
from kukeon.runtime.containerd.oci import (
    ACCEPTED_MANIFEST_TYPES,
    INDEX_MEDIA_TYPES,
    MANIFEST_MEDIA_TYPES,
    MAX_LAYERS,
    MEDIA_TYPE_DOCKER_LIST,
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
    Descriptor,
    DigestVerifier,
    OciFormatError,
    Platform,
    PlatformNotFoundError,
    choose_manifest,
    compatible_platforms,
    content_mismatch,
    detect_media_type,
    digest_of,
    host_platform,
    parse_config,
    parse_descriptor,
    parse_index,
    parse_manifest,
    platform_rank,
)
from tests.unit.runtime.platform_cases import PLATFORM_CASES, PlatformCase, linux

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"


def entry_digest(position: int) -> str:
    return "sha256:" + hashlib.sha256(str(position).encode()).hexdigest()


def index_bytes(offered: tuple[Platform | None, ...]) -> bytes:
    manifests: list[dict[str, Any]] = []
    for position, platform in enumerate(offered):
        entry: dict[str, Any] = {
            "mediaType": MEDIA_TYPE_OCI_MANIFEST,
            "digest": entry_digest(position),
            "size": 100 + position,
        }
        if platform is not None:
            entry["platform"] = {"os": platform.os, "architecture": platform.architecture}
            if platform.variant:
                entry["platform"]["variant"] = platform.variant
        manifests.append(entry)
    return json.dumps({"schemaVersion": 2, "manifests": manifests}).encode()


def index_descriptor(data: bytes) -> Descriptor:
    return Descriptor(media_type=MEDIA_TYPE_OCI_INDEX, digest=digest_of(data), size=len(data))


# --- media types ----------------------------------------------------------------------------


def test_media_type_families() -> None:
    assert {MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_LIST} == INDEX_MEDIA_TYPES
    assert {MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST} == MANIFEST_MEDIA_TYPES
    assert set(ACCEPTED_MANIFEST_TYPES) == INDEX_MEDIA_TYPES | MANIFEST_MEDIA_TYPES
    assert MEDIA_TYPE_OCI_CONFIG not in ACCEPTED_MANIFEST_TYPES


@pytest.mark.parametrize(
    ("document", "content_type", "media_type"),
    [
        ({"mediaType": MEDIA_TYPE_DOCKER_LIST, "manifests": []}, "", MEDIA_TYPE_DOCKER_LIST),
        ({"mediaType": MEDIA_TYPE_OCI_MANIFEST}, "application/json", MEDIA_TYPE_OCI_MANIFEST),
        ({"config": {}}, MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST),
        ({"manifests": []}, "application/json", MEDIA_TYPE_OCI_INDEX),
        ({"config": {}, "layers": []}, "", MEDIA_TYPE_OCI_MANIFEST),
    ],
)
def test_detect_media_type(document: dict[str, Any], content_type: str, media_type: str) -> None:
    assert detect_media_type(json.dumps(document).encode(), content_type) == media_type


@pytest.mark.parametrize(
    ("data", "content_type", "message"),
    [
        (b'{"schemaVersion": 1, "fsLayers": []}', "", "schema 1"),
        (b"{}", "application/vnd.docker.distribution.manifest.v1+prettyjws", "schema 1"),
        (b'{"mediaType": "text/plain"}', "", "unsupported manifest media type 'text/plain'"),
        (b"{}", "", "unsupported manifest media type 'unknown'"),
        (b"<html>", "", "manifest is not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "", "manifest is nested too deeply"),
        # A list is no member of a set of media types: TypeError, a 500 on a pull.
        (b'{"mediaType": []}', "application/json", r"mediaType is not a string \(list\)"),
    ],
)
def test_detect_media_type_refuses(data: bytes, content_type: str, message: str) -> None:
    with pytest.raises(OciFormatError, match=message):
        detect_media_type(data, content_type)


# --- documents ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("x", "layers[0]: not a descriptor object"),
        ({"digest": DIGEST, "size": 1}, "layers[0]: missing mediaType"),
        ({"mediaType": LAYER_TYPE, "size": 1}, "layers[0]: missing digest"),
        ({"mediaType": LAYER_TYPE, "digest": "sha256:12", "size": 1}, "64 lowercase hex"),
        ({"mediaType": LAYER_TYPE, "digest": "md5:" + "a" * 32, "size": 1}, "'md5'"),
        ({"mediaType": LAYER_TYPE, "digest": "nodigest", "size": 1}, "<algorithm>:<hex>"),
        ({"mediaType": LAYER_TYPE, "digest": DIGEST, "size": -1}, "non-negative"),
        ({"mediaType": LAYER_TYPE, "digest": DIGEST, "size": True}, "non-negative"),
        ({"mediaType": LAYER_TYPE, "digest": DIGEST, "size": "1"}, "non-negative"),
        (
            {"mediaType": LAYER_TYPE, "digest": DIGEST, "size": 1, "annotations": ["a"]},
            "annotations is not an object",
        ),
        (
            {"mediaType": LAYER_TYPE, "digest": DIGEST, "size": 1, "platform": "linux"},
            "platform is not an object",
        ),
    ],
)
def test_malformed_descriptors_are_refused_naming_the_field(raw: Any, message: str) -> None:
    with pytest.raises(OciFormatError) as raised:
        parse_descriptor(raw, "layers[0]")
    assert message in str(raised.value)


def test_descriptor_with_platform_and_annotations() -> None:
    descriptor = parse_descriptor(
        {
            "mediaType": MEDIA_TYPE_OCI_MANIFEST,
            "digest": "sha512:" + "0" * 128,
            "size": 7,
            "annotations": {"org.opencontainers.image.ref.name": "1.0"},
            "platform": {"os": "linux", "architecture": "arm", "variant": "v7"},
        },
        "manifests[0]",
    )
    assert descriptor.size == 7
    assert descriptor.annotations == {"org.opencontainers.image.ref.name": "1.0"}
    assert descriptor.platform == linux("arm", "v7")


def test_manifest_and_index_parsing() -> None:
    manifest_data = json.dumps(
        {
            "config": {"mediaType": MEDIA_TYPE_OCI_CONFIG, "digest": DIGEST, "size": 3},
            "layers": [{"mediaType": LAYER_TYPE, "digest": OTHER, "size": 5}],
        }
    ).encode()
    root = Descriptor(MEDIA_TYPE_OCI_MANIFEST, digest_of(manifest_data), len(manifest_data))
    manifest = parse_manifest(manifest_data, root)
    assert manifest.descriptor == root
    assert manifest.config.digest == DIGEST
    assert [layer.digest for layer in manifest.layers] == [OTHER]

    data = index_bytes((linux("amd64"), None))
    index = parse_index(data, index_descriptor(data))
    assert [entry.platform for entry in index.manifests] == [linux("amd64"), None]


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"{", "manifest sha256:[0-9a-f]+ is not valid JSON: Expecting"),
        (b"[1]", "is not a JSON object"),
        (b'{"layers": []}', "config: not a descriptor object"),
        (
            json.dumps(
                {"config": {"mediaType": MEDIA_TYPE_OCI_CONFIG, "digest": DIGEST, "size": 3}}
            ).encode(),
            "`layers` is missing or not a list",
        ),
    ],
)
def test_malformed_manifests_are_refused(document: bytes, message: str) -> None:
    root = Descriptor(MEDIA_TYPE_OCI_MANIFEST, DIGEST, len(document))
    with pytest.raises(OciFormatError, match=message):
        parse_manifest(document, root)


def test_a_manifest_of_more_layers_than_overlayfs_stacks_is_refused() -> None:
    """Such an image could never run, and each layer was unpacked first (~8.5 ms each)."""

    def manifest(layers: int) -> bytes:
        layer = {"mediaType": LAYER_TYPE, "digest": OTHER, "size": 5}
        config = {"mediaType": MEDIA_TYPE_OCI_CONFIG, "digest": DIGEST, "size": 3}
        return json.dumps({"config": config, "layers": [layer] * layers}).encode()

    most = manifest(MAX_LAYERS)
    assert (
        len(parse_manifest(most, Descriptor(MEDIA_TYPE_OCI_MANIFEST, DIGEST, len(most))).layers)
        == MAX_LAYERS
    )
    more = manifest(MAX_LAYERS + 1)
    with pytest.raises(OciFormatError, match=f"{MAX_LAYERS + 1} layers, more than the 500"):
        parse_manifest(more, Descriptor(MEDIA_TYPE_OCI_MANIFEST, DIGEST, len(more)))


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"\xff\xfe", "index sha256:[0-9a-f]+ is not valid JSON"),
        (b"{}", "`manifests` is missing or not a list"),
        (b'{"manifests": [{"digest": "sha256:1"}]}', r"manifests\[0\]: missing mediaType"),
        # Past Python's recursion limit: json.loads' RecursionError was a 500 on an import.
        (b'{"manifests": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "is nested too deeply"),
    ],
)
def test_malformed_indexes_are_refused(document: bytes, message: str) -> None:
    with pytest.raises(OciFormatError, match=message):
        parse_index(document, Descriptor(MEDIA_TYPE_OCI_INDEX, DIGEST, len(document)))


# --- image configs --------------------------------------------------------------------------


def test_parse_config() -> None:
    raw = json.dumps(
        {
            "architecture": "arm",
            "variant": "v7",
            "os": "linux",
            "created": "2024-01-02T03:04:05.123456789Z",
            "config": {
                "Entrypoint": ["/bin/sh", "-c"],
                "Cmd": ["echo hi"],
                "Env": ["PATH=/bin"],
                "WorkingDir": "/srv",
                "User": "1000:1000",
                "Labels": {"a": "b"},
            },
            "rootfs": {"type": "layers", "diff_ids": [DIGEST]},
        }
    ).encode()
    document = parse_config(raw)
    assert document.run.entrypoint == ("/bin/sh", "-c")
    assert document.run.cmd == ("echo hi",)
    assert document.run.env == ("PATH=/bin",)
    assert document.run.working_dir == "/srv"
    assert document.run.user == "1000:1000"
    assert dict(document.run.labels) == {"a": "b"}
    assert document.diff_ids == (DIGEST,)
    assert document.platform == linux("arm", "v7")


def test_parse_config_with_nulls() -> None:
    raw = b'{"config": {"Entrypoint": null, "Cmd": null, "Labels": null}, "rootfs": {}}'
    document = parse_config(raw)
    assert document.run.entrypoint == ()
    assert document.run.cmd == ()
    assert dict(document.run.labels) == {}
    assert document.diff_ids == ()
    assert document.created is None


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "image config is not valid JSON: Expecting"),
        (b"[]", "image config is not a JSON object"),
        (b'{"config": "x"}', "config is malformed"),
        (b'{"rootfs": "x"}', "rootfs is malformed"),
        (b'{"config": {"Cmd": "echo"}}', "config.Cmd is not a list of strings"),
        (b'{"config": {"Env": [1]}}', "config.Env is not a list of strings"),
        (b'{"config": {"Labels": ["a"]}}', "config.Labels is not an object"),
        (b'{"rootfs": {"diff_ids": [1]}}', "rootfs.diff_ids is not a list of digests"),
        (b'{"rootfs": {"diff_ids": ["md5:x"]}}', "rootfs.diff_ids is not a list of digests"),
    ],
)
def test_parse_config_refuses(raw: bytes, message: str) -> None:
    with pytest.raises(OciFormatError) as raised:
        parse_config(raw)
    assert message in str(raised.value)


def test_import_names_the_image_in_config_errors() -> None:
    with pytest.raises(InvalidImageError) as raised:
        parse_image_config(b'{"config": {"Cmd": "sh"}}', image="registry.example/app:1")
    assert str(raised.value) == (
        "image 'registry.example/app:1': image config: config.Cmd is not a list of strings"
    )


# --- platforms ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        ("x86_64", linux("amd64")),
        ("aarch64", linux("arm64", "v8")),
        ("armv7l", linux("arm", "v7")),
        ("armv6l", linux("arm", "v6")),
        ("i686", linux("386")),
        ("ppc64le", linux("ppc64le")),
        ("s390x", linux("s390x")),
        ("weird9000", linux("weird9000")),
    ],
)
def test_host_platform(machine: str, expected: Platform) -> None:
    assert host_platform(machine) == expected


def test_host_platform_of_this_machine_is_linux() -> None:
    assert host_platform().os == "linux"


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        (Platform("Linux", "X86_64"), linux("amd64")),
        (linux("amd64", "v1"), linux("amd64")),
        (linux("aarch64", "v8"), linux("arm64")),
        (linux("arm64", "8"), linux("arm64")),
        (linux("arm64", "v9.0"), linux("arm64", "v9")),
        (linux("arm"), linux("arm", "v7")),
        (linux("arm", "6"), linux("arm", "v6")),
        (linux("armhf"), linux("arm", "v7")),
        (linux("armel"), linux("arm", "v6")),
        (linux("i386"), linux("386")),
    ],
)
def test_normalized_platforms(given: Platform, normal: Platform) -> None:
    assert given.normalized() == normal


@pytest.mark.parametrize(
    ("wanted", "runs"),
    [
        (linux("amd64"), ["linux/amd64", "linux/386"]),
        (linux("amd64", "v3"), ["linux/amd64/v3", "linux/amd64/v2", "linux/amd64", "linux/386"]),
        (linux("arm", "v7"), ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]),
        (linux("arm"), ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]),
        (
            linux("arm64", "v8"),
            ["linux/arm64", "linux/arm/v8", "linux/arm/v7", "linux/arm/v6", "linux/arm/v5"],
        ),
        (linux("s390x"), ["linux/s390x"]),
    ],
)
def test_compatible_platforms_best_first(wanted: Platform, runs: list[str]) -> None:
    assert [str(platform) for platform in compatible_platforms(wanted)] == runs


@pytest.mark.parametrize(
    ("wanted", "candidate", "rank"),
    [
        (linux("amd64"), linux("amd64"), 0),
        (linux("amd64"), linux("amd64", "v1"), 0),
        (linux("amd64"), linux("amd64", "v3"), None),
        (linux("amd64"), linux("386"), 1),
        (linux("amd64"), linux("arm64"), None),
        (linux("amd64"), Platform("windows", "amd64"), None),
        (linux("amd64"), Platform("unknown", "unknown"), None),
        (linux("arm64", "v8"), linux("arm64"), 0),
        (linux("arm64", "v8"), linux("arm64", "8"), 0),
        (linux("arm64", "v8"), linux("arm", "v7"), 2),
        (linux("arm", "v7"), linux("arm", "v7"), 0),
        (linux("arm", "v7"), linux("arm", "v6"), 1),
        (linux("arm", "v7"), linux("arm", "v5"), 2),
        (linux("arm", "v6"), linux("arm", "v7"), None),
        (linux("arm", "v7"), linux("arm"), 0),
        (linux("arm"), linux("arm", "v6"), 1),
        (linux("arm", "v7"), linux("arm64"), None),
        (linux("s390x"), linux("s390x", "z15"), None),
        (Platform("Linux", "AMD64"), linux("amd64"), 0),
    ],
)
def test_platform_rank(wanted: Platform, candidate: Platform, rank: int | None) -> None:
    assert platform_rank(wanted, candidate) == rank


def test_platform_string() -> None:
    assert str(linux("arm", "v7")) == "linux/arm/v7"
    assert str(linux("amd64")) == "linux/amd64"


@pytest.mark.parametrize("case", PLATFORM_CASES.values(), ids=PLATFORM_CASES.keys())
def test_index_to_manifest_choice(case: PlatformCase) -> None:
    data = index_bytes(case.offered)
    index = parse_index(data, index_descriptor(data))
    if case.chosen is None:
        with pytest.raises(PlatformNotFoundError) as raised:
            choose_manifest(index, case.wanted)
        assert str(case.wanted) in str(raised.value)
        return
    position, descriptor = choose_manifest(index, case.wanted)
    assert position == case.chosen
    assert descriptor.digest == entry_digest(case.chosen)


@pytest.mark.parametrize("case", PLATFORM_CASES.values(), ids=PLATFORM_CASES.keys())
def test_archive_import_chooses_as_pulls_do(case: PlatformCase) -> None:
    """What the unpacker of an imported archive resolves an index to (a pull makes the same
    choice: tests/unit/runtime/test_registry_client.py runs this table against a registry)."""
    data = index_bytes(case.offered)
    root = index_descriptor(data)
    if case.chosen is None:
        with pytest.raises(InvalidImageError, match=f"index has no manifest for {case.wanted}"):
            select_platform_manifest(data, image="i", platform=case.wanted, descriptor=root)
        return
    chosen = select_platform_manifest(data, image="i", platform=case.wanted, descriptor=root)
    assert chosen.digest == entry_digest(case.chosen)


def test_no_platform_names_what_is_offered() -> None:
    data = index_bytes((linux("arm64", "v8"), linux("s390x")))
    with pytest.raises(PlatformNotFoundError) as raised:
        choose_manifest(parse_index(data, index_descriptor(data)), linux("amd64"))
    assert str(raised.value) == (
        "no image for platform linux/amd64 (the index offers linux/arm64/v8, linux/s390x)"
    )


# --- digests --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("digest", "problem"),
    [
        (DIGEST, None),
        ("sha384:" + "a" * 96, None),
        ("sha512:" + "a" * 128, None),
        ("sha256:" + "A" * 64, "sha256 digest must be 64 lowercase hex characters"),
        ("sha256:abc", "sha256 digest must be 64 lowercase hex characters"),
        ("md5:" + "a" * 32, "unsupported digest algorithm 'md5'"),
        ("abc", "digest 'abc' is not <algorithm>:<hex>"),
    ],
)
def test_digest_problem(digest: str, problem: str | None) -> None:
    assert digest_problem(digest) == problem


def test_content_mismatch() -> None:
    data = b"hello"
    good = Descriptor(LAYER_TYPE, digest_of(data), len(data))
    assert content_mismatch(data, good) is None
    assert content_mismatch(b"hellO", good) == digest_of(b"hellO")
    assert content_mismatch(b"hello!", good) == "6 bytes, not 5"
    assert content_mismatch(data, Descriptor(LAYER_TYPE, digest_of(data, "sha512"), 5)) is None


def stream(verifier: DigestVerifier, chunks: list[bytes]) -> str | None:
    for chunk in chunks:
        problem = verifier.update(chunk)
        if problem is not None:
            return problem
    return verifier.finish()


def test_digest_verifier_accepts_the_right_blob_in_chunks() -> None:
    data = b"a" * 1000
    verifier = DigestVerifier(digest_of(data), len(data))
    assert stream(verifier, [data[:300], data[300:999], data[999:]]) is None


@pytest.mark.parametrize(
    ("chunks", "problem"),
    [
        ([b"hellO"], digest_of(b"hellO")),
        ([b"hel", b"lo!"], "more than the 5 bytes announced"),
        ([b"hel"], "only 3 of 5 bytes"),
    ],
)
def test_digest_verifier_refuses(chunks: list[bytes], problem: str) -> None:
    verifier = DigestVerifier(digest_of(b"hello"), 5)
    assert stream(verifier, chunks) == problem


def test_digest_verifier_checks_an_empty_blob() -> None:
    assert stream(DigestVerifier(digest_of(b""), 0), []) is None
    assert stream(DigestVerifier(DIGEST, 0), []) == digest_of(b"")


def archive_with(tmp_path: Path, blobs: dict[str, bytes]) -> Path:
    path = tmp_path / "image.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}', **blobs}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_archive_blob_digest_mismatch_is_refused(tmp_path: Path) -> None:
    manifest = b'{"config": {}, "layers": []}'
    claimed = digest_of(b'{"config": {}, "layers": [], "x": 1}')
    tampered = Descriptor(MEDIA_TYPE_OCI_MANIFEST, claimed, len(manifest))
    path = archive_with(tmp_path, {f"blobs/sha256/{claimed.partition(':')[2]}": manifest})
    archive = OciArchive.open(path)
    try:
        with pytest.raises(InvalidImageArchiveError) as raised:
            archive.read_small(tampered)
    finally:
        archive.close()
    assert f"{claimed} does not match its content, which is {digest_of(manifest)}" in str(
        raised.value
    )


@pytest.mark.parametrize(
    ("index", "why"),
    [
        (b"{manifests", r"index\.json is not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, r"index\.json is nested too deeply"),
    ],
)
def test_archive_index_json_must_be_a_json_object(tmp_path: Path, index: bytes, why: str) -> None:
    archive = OciArchive.open(archive_with(tmp_path, {"index.json": index}))
    try:
        with pytest.raises(InvalidImageArchiveError, match=why):
            archive.index_entries()
    finally:
        archive.close()
