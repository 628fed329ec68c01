"""Shared steps of the containerd integration tests: build a spec, run a container to exit.

The OCI runtime spec comes from the real ``build_runtime_spec`` with a ContainerSpec, so
these tests also check that what the spec builder writes is accepted by runc.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import io
import json
import secrets
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kukeon.api import ContainerSpec
from kukeon.runtime.containerd import (
    ContainerdClient,
    ExitStatus,
    TaskIO,
    kukeon_labels,
)
from kukeon.runtime.containerd.crilog import plain_text
from kukeon.runtime.containerd.spec import SpecContext, build_runtime_spec
from kukeon.runtime.containerd.types import ImageConfig
from tests.fixtures.hostleaks import own_cgroup_root

CGROUP_V1_ROOT = Path("/sys/fs/cgroup")


@functools.cache
def image_etc_file(archive: Path, name: str) -> str:
    """A file of the test image's single layer (``etc/passwd``), read from the archive.

    Read once per session: ungzipping the layer took ~50-100 ms, twice per container, on
    the event loop (most of the time of the test that runs 200 containers)."""
    with tarfile.open(archive) as outer:
        index = json.load(outer.extractfile("./index.json"))  # type: ignore[arg-type]
        manifest_digest = index["manifests"][0]["digest"].split(":")[1]
        manifest = json.load(outer.extractfile(f"./blobs/sha256/{manifest_digest}"))  # type: ignore[arg-type]
        layer_digest = manifest["layers"][0]["digest"].split(":")[1]
        layer = outer.extractfile(f"./blobs/sha256/{layer_digest}")
        assert layer is not None
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.read()))) as inner:
            member = inner.extractfile(f"./{name}")
            assert member is not None
            return member.read().decode()


@dataclass
class TestCgroup:
    """A cgroup parent for the test's tasks, in every v1 hierarchy (or the v2 tree)."""

    path: str

    def remove(self) -> None:
        for directory in sorted(self._directories(), key=lambda p: len(str(p)), reverse=True):
            with contextlib.suppress(OSError):
                directory.rmdir()

    def _directories(self) -> Iterator[Path]:
        for hierarchy in CGROUP_V1_ROOT.iterdir():
            candidate = hierarchy / self.path.lstrip("/")
            if candidate.is_dir():
                yield from (p for p in candidate.rglob("*") if p.is_dir())
                yield candidate
        unified = CGROUP_V1_ROOT / self.path.lstrip("/")
        if unified.is_dir():
            yield unified


def new_test_cgroup() -> TestCgroup:
    path = f"/kukeon-test-{secrets.token_hex(4)}"
    own_cgroup_root(path)
    return TestCgroup(path=path)


def build_spec(
    container: Mapping[str, Any],
    *,
    container_id: str,
    image_config: ImageConfig,
    cgroup: TestCgroup,
    passwd: str,
    group: str,
    netns_path: str | None = None,
    terminal: bool = False,
) -> dict[str, Any]:
    spec_model = ContainerSpec.model_validate(
        {"id": container_id, "image": "kukeon.io/test/busybox:latest", **container}
    )
    context = SpecContext(
        image_config=image_config,
        container_id=container_id,
        hostname=container_id,
        cgroups_path=f"{cgroup.path}/{container_id}",
        realm="test",
        space="space",
        stack="stack",
        cell="cell",
        netns_path=netns_path,
        passwd=passwd,
        group=group,
        terminal=terminal,
    )
    return build_runtime_spec(spec_model, context=context)


@dataclass
class Runner:
    """Creates, starts and waits for containers of one test, in one namespace."""

    client: ContainerdClient
    namespace: str
    image: str
    archive: Path
    cgroup: TestCgroup
    log_dir: Path

    async def image_config(self) -> ImageConfig:
        return await self.client.images(self.namespace).config(self.image)

    async def spec(
        self,
        container: Mapping[str, Any],
        *,
        container_id: str,
        netns_path: str | None = None,
        terminal: bool = False,
    ) -> dict[str, Any]:
        passwd = image_etc_file(self.archive, "etc/passwd")
        group = image_etc_file(self.archive, "etc/group")
        return build_spec(
            container,
            container_id=container_id,
            image_config=await self.image_config(),
            cgroup=self.cgroup,
            passwd=passwd,
            group=group,
            netns_path=netns_path,
            terminal=terminal,
        )

    async def create(
        self,
        container: Mapping[str, Any],
        *,
        name: str,
        netns_path: str | None = None,
    ) -> tuple[str, Path]:
        """Create container + task (logging to a file); returns (container id, log path)."""
        container_id = f"{name}-{secrets.token_hex(3)}"
        spec = await self.spec(container, container_id=container_id, netns_path=netns_path)
        await self.client.containers(self.namespace).create(
            container_id,
            image=self.image,
            spec=spec,
            labels=kukeon_labels(
                realm="test", space="space", stack="stack", cell="cell", container=name
            ),
        )
        log = self.log_dir / f"{container_id}.log"
        await self.client.tasks(self.namespace).create(container_id, io=TaskIO.log_file(log))
        return container_id, log

    async def run_to_exit(
        self,
        container: Mapping[str, Any],
        *,
        name: str,
        netns_path: str | None = None,
        within: float = 60.0,
    ) -> tuple[ExitStatus, str]:
        """Run a container until it exits; returns its exit status and its log."""
        container_id, log = await self.create(container, name=name, netns_path=netns_path)
        tasks = self.client.tasks(self.namespace)
        waiting = asyncio.ensure_future(tasks.wait(container_id))
        await tasks.start(container_id)
        status = await asyncio.wait_for(waiting, within)
        await tasks.delete(container_id)
        await self.client.containers(self.namespace).delete(container_id)
        return status, plain_text(await asyncio.to_thread(log.read_bytes))
