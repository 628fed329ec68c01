"""Pure parts of the containerd adapter: chain ids, manifests, configs, events, errors."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import tarfile
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote_plus

import grpc
import pytest
from google.protobuf import any_pb2, timestamp_pb2

from kukeon.runtime.containerd import (
    ContainerdClient,
    ContainerNotFoundError,
    ImageConfig,
    ImageNotFoundError,
    InvalidImageArchiveError,
    InvalidImageError,
    OtherEvent,
    TaskExited,
    TaskIO,
    TaskOOM,
    chain_ids,
    label_filter,
    realm_namespace,
    task_lifecycle_filters,
)
from kukeon.runtime.containerd._gen.services.events.v1 import container_pb2, events_pb2, task_pb2
from kukeon.runtime.containerd.errors import AlreadyExistsError, ContainerdCallError, translate
from kukeon.runtime.containerd.events import ContainerDeleted, decode_envelope
from kukeon.runtime.containerd.imagearchive import OciArchive
from kukeon.runtime.containerd.images import parse_image_config, select_platform_manifest
from kukeon.runtime.containerd.oci import (
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
    Descriptor,
    OciFormatError,
    Platform,
    parse_manifest,
)

DIFF_A = "sha256:" + "a" * 64
DIFF_B = "sha256:" + "b" * 64


def test_chain_ids_follow_the_oci_definition() -> None:
    second = "sha256:" + hashlib.sha256(f"{DIFF_A} {DIFF_B}".encode()).hexdigest()
    assert chain_ids([DIFF_A, DIFF_B]) == [DIFF_A, second]
    assert chain_ids([]) == []


def test_image_config_gives_run_defaults_and_diff_ids() -> None:
    blob = json.dumps(
        {
            "config": {
                "Entrypoint": ["/bin/app"],
                "Cmd": ["--serve"],
                "Env": ["A=1"],
                "WorkingDir": "/srv",
                "User": "1000:1000",
                "Labels": {"x": "y"},
            },
            "rootfs": {"type": "layers", "diff_ids": [DIFF_A]},
        }
    ).encode()
    config, diff_ids = parse_image_config(blob, image="img")
    assert config == ImageConfig(
        entrypoint=("/bin/app",),
        cmd=("--serve",),
        env=("A=1",),
        working_dir="/srv",
        user="1000:1000",
        labels={"x": "y"},
    )
    assert diff_ids == [DIFF_A]


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (json.dumps({"config": {"Cmd": "sh"}}).encode(), "Cmd is not a list"),
        (json.dumps({"rootfs": {"diff_ids": ["md5:x"]}}).encode(), "diff_ids"),
    ],
)
def test_bad_image_configs_name_the_image_and_the_field(blob: bytes, reason: str) -> None:
    with pytest.raises(InvalidImageError) as raised:
        parse_image_config(blob, image="registry.example/app:1")
    assert "registry.example/app:1" in str(raised.value)
    assert reason in str(raised.value)


def test_manifest_parsing_checks_descriptors() -> None:
    descriptor = Descriptor(media_type=MEDIA_TYPE_OCI_MANIFEST, digest=DIFF_A, size=1)
    good = {
        "config": {"mediaType": "c", "digest": DIFF_B, "size": 10},
        "layers": [{"mediaType": "l", "digest": DIFF_A, "size": 20}],
    }
    manifest = parse_manifest(json.dumps(good).encode(), descriptor)
    assert manifest.config.digest == DIFF_B
    assert [layer.size for layer in manifest.layers] == [20]
    bad = {**good, "layers": [{"mediaType": "l", "digest": "sha256:short", "size": 1}]}
    with pytest.raises(OciFormatError, match=r"layers\[0\]: sha256 digest must be"):
        parse_manifest(json.dumps(bad).encode(), descriptor)


def test_index_resolves_to_the_hosts_platform() -> None:
    manifest = MEDIA_TYPE_OCI_MANIFEST
    index = {
        "manifests": [
            {
                "mediaType": manifest,
                "digest": DIFF_A,
                "size": 1,
                "platform": {"os": "linux", "architecture": "arm64"},
            },
            {
                "mediaType": manifest,
                "digest": DIFF_B,
                "size": 2,
                "platform": {"os": "linux", "architecture": "amd64"},
            },
        ]
    }
    data = json.dumps(index).encode()
    root = Descriptor(media_type=MEDIA_TYPE_OCI_INDEX, digest=DIFF_A, size=len(data))

    def choose(architecture: str) -> str:
        platform = Platform("linux", architecture)
        return select_platform_manifest(data, image="i", platform=platform, descriptor=root).digest

    assert choose("amd64") == DIFF_B
    assert choose("arm64") == DIFF_A
    with pytest.raises(InvalidImageError, match="linux/s390x"):
        choose("s390x")


def _envelope(type_url: str, message: bytes, topic: str) -> events_pb2.Envelope:
    stamp = timestamp_pb2.Timestamp(seconds=1_700_000_000)
    return events_pb2.Envelope(
        timestamp=stamp,
        namespace="r.kukeon.io",
        topic=topic,
        event=any_pb2.Any(type_url=type_url, value=message),
    )


def test_events_are_decoded_by_their_bare_type_name() -> None:
    exit_message = task_pb2.TaskExit(
        container_id="c1",
        id="c1",
        pid=42,
        exit_status=3,
        exited_at=timestamp_pb2.Timestamp(seconds=1_700_000_001),
    ).SerializeToString()
    event = decode_envelope(_envelope("containerd.events.TaskExit", exit_message, "/tasks/exit"))
    assert event == TaskExited(
        namespace="r.kukeon.io",
        topic="/tasks/exit",
        timestamp=datetime.fromtimestamp(1_700_000_000, tz=UTC),
        container_id="c1",
        id="c1",
        pid=42,
        exit_status=3,
        exited_at=datetime.fromtimestamp(1_700_000_001, tz=UTC),
    )
    oom = decode_envelope(
        _envelope(
            "containerd.events.TaskOOM",
            task_pb2.TaskOOM(container_id="c2").SerializeToString(),
            "/tasks/oom",
        )
    )
    assert isinstance(oom, TaskOOM)
    assert oom.container_id == "c2"
    deleted = decode_envelope(
        _envelope(
            "containerd.events.ContainerDelete",
            container_pb2.ContainerDelete(id="c3").SerializeToString(),
            "/containers/delete",
        )
    )
    assert isinstance(deleted, ContainerDeleted)
    assert (deleted.container_id, deleted.topic) == ("c3", "/containers/delete")
    other = decode_envelope(_envelope("containerd.events.ImageCreate", b"\x0a\x01x", "/images"))
    assert isinstance(other, OtherEvent)
    assert other.type_url == "containerd.events.ImageCreate"


def test_filters_and_labels() -> None:
    assert task_lifecycle_filters(namespace="r.kukeon.io") == (
        'namespace=="r.kukeon.io",topic=="/tasks/exit"',
        'namespace=="r.kukeon.io",topic=="/tasks/oom"',
    )
    assert label_filter({"kukeon.io/cell": 'we"ird'}) == 'labels."kukeon.io/cell"=="we\\"ird"'
    assert realm_namespace("main") == "main.kukeon.io"


def test_log_files_set_both_streams(tmp_path: Path) -> None:
    io_ = TaskIO.log_file(tmp_path / "c.log")
    assert io_.stdout.startswith("binary://")
    assert str(tmp_path / "c.log") in unquote_plus(io_.stdout)
    assert io_.stderr == io_.stdout  # the shim takes the logger from stdout, both go to it
    assert io_.log_directory == str(tmp_path)


class _FakeRpcError(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(
            code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details, debug_error_string=None
        )


def test_grpc_errors_become_typed_errors_naming_the_object() -> None:
    not_found = translate(
        _FakeRpcError(grpc.StatusCode.NOT_FOUND, "image not found"),
        operation="get",
        kind="image",
        name="busybox:1",
        namespace="r.kukeon.io",
    )
    assert isinstance(not_found, ImageNotFoundError)
    assert "busybox:1" in str(not_found)
    assert "r.kukeon.io" in str(not_found)
    missing = translate(
        _FakeRpcError(grpc.StatusCode.NOT_FOUND, ""),
        operation="get",
        kind="container",
        name="c",
        namespace="n",
    )
    assert isinstance(missing, ContainerNotFoundError)
    exists = translate(
        _FakeRpcError(grpc.StatusCode.ALREADY_EXISTS, ""),
        operation="create",
        kind="container",
        name="c",
        namespace="n",
    )
    assert isinstance(exists, AlreadyExistsError)
    other = translate(
        _FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION, "task must be stopped"),
        operation="delete",
        kind="task",
        name="c",
        namespace="n",
    )
    assert isinstance(other, ContainerdCallError)
    assert "task must be stopped" in str(other)


async def test_an_absent_daemon_is_reported_with_its_address(tmp_path: Path) -> None:
    from kukeon.runtime.containerd import ContainerdUnavailableError

    socket = tmp_path / "nobody.sock"
    async with ContainerdClient(str(socket), retry_timeout=0.3) as client:
        with pytest.raises(ContainerdUnavailableError) as raised:
            await client.version()
    assert str(socket) in str(raised.value)


async def test_patience_shortens_the_wait_for_an_absent_daemon_within_its_block(
    tmp_path: Path,
) -> None:
    from kukeon.runtime.containerd import ContainerdUnavailableError
    from kukeon.runtime.containerd.client import patience

    async with ContainerdClient(str(tmp_path / "nobody.sock"), retry_timeout=60.0) as client:
        started = time.monotonic()
        with patience(0.3), pytest.raises(ContainerdUnavailableError):
            await asyncio.wait_for(client.version(), 20)  # a task started in the block
        assert time.monotonic() - started < 10
        # Outside the block, the client's own budget again (still retrying after 1 s).
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.version(), 1.0)


def _tar_with(tmp_path: Path, files: dict[str, bytes]) -> Path:
    path = tmp_path / "archive.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_archives_without_oci_layout_or_manifests_are_refused(tmp_path: Path) -> None:
    archive = OciArchive.open(_tar_with(tmp_path, {"index.json": b"{}"}))
    with pytest.raises(InvalidImageArchiveError, match="oci-layout"):
        archive.index_entries()
    archive.close()
    archive = OciArchive.open(
        _tar_with(tmp_path, {"oci-layout": b"{}", "index.json": b'{"manifests": []}'})
    )
    with pytest.raises(InvalidImageArchiveError, match="lists no manifests"):
        archive.index_entries()
    archive.close()
    with pytest.raises(InvalidImageArchiveError, match="no such file"):
        OciArchive.open(tmp_path / "missing.tar")
