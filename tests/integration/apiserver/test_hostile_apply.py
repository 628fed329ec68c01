"""``kukectl apply``/``create`` against a real API server: the server dry-runs every document
before the first write, and ``-f`` reads pipes, FIFOs and process substitutions like files.

kukectl runs as a subprocess (it has its own event loop) while this test's loop serves the API.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from aetcd import rpc

from kukeon.store import Registry
from kukeon.store.keys import range_end
from tests.integration.apiserver.conftest import Api

pytestmark = pytest.mark.integration


async def _keys(registry: Registry) -> list[bytes]:
    prefix = registry.key_prefix.encode() + b"/"
    request = rpc.RangeRequest(key=prefix, range_end=range_end(prefix), keys_only=True)
    reply = await registry.client.kvstub.Range(request, metadata=registry.client.metadata)
    return sorted(kv.key for kv in reply.kvs)


async def _kukectl(
    api: Api, *args: str, stdin: bytes | None = None, shell: str | None = None
) -> tuple[int, str]:
    env = {**os.environ, "KUKEON_SERVER": f"unix://{api.socket}", "HOME": str(api.socket.parent)}
    command = [sys.executable, "-c", "from kukeon.cli.main import main; main()", *args]
    if shell is not None:
        process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            shell,
            "bash",
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
    else:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
    async with asyncio.timeout(60):
        output, _ = await process.communicate(stdin)
    assert process.returncode is not None
    return process.returncode, output.decode()


def _manifest(realm: str, *, cell_containers: object) -> str:
    docs = [
        {"apiVersion": "kukeon.io/v1beta1", "kind": "Realm", "metadata": {"name": realm}},
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Cell",
            "metadata": {"name": "web"},
            "spec": {"realmId": realm, "containers": cell_containers},
        },
    ]
    return yaml.safe_dump_all(docs)


GOOD = [{"id": "main", "image": "busybox:latest"}]


async def test_a_refused_document_means_nothing_is_written(api: Api, tmp_path: Path) -> None:
    realm = f"r{uuid.uuid4().hex[:8]}"
    before = await _keys(api.registry)
    # The cell exists already: only the server knows, and `create` must then write nothing.
    manifest = tmp_path / "m.yaml"
    manifest.write_text(_manifest(realm, cell_containers=GOOD))
    code, output = await _kukectl(api, "create", "-f", str(manifest))
    assert code == 0, output
    created = await _keys(api.registry)
    assert len(created) == len(before) + 4  # realm, its default space and stack, the cell

    other = f"r{uuid.uuid4().hex[:8]}"
    text = _manifest(other, cell_containers=GOOD).replace(f"realmId: {other}", f"realmId: {realm}")
    manifest.write_text(text)
    code, output = await _kukectl(api, "create", "-f", str(manifest))
    assert code != 0, output
    assert "already exists" in output
    assert "nothing was written" in output
    assert await _keys(api.registry) == created  # the new realm was not created


async def test_an_invalid_cell_is_refused_before_its_realm_is_created(
    api: Api, tmp_path: Path
) -> None:
    realm = f"r{uuid.uuid4().hex[:8]}"
    before = await _keys(api.registry)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(_manifest(realm, cell_containers=None))
    code, output = await _kukectl(api, "apply", "-f", str(manifest))
    assert code != 0
    assert "spec.containers: at least one container is required" in output
    assert await _keys(api.registry) == before


async def test_server_dry_run_accepts_children_of_parents_it_would_create(api: Api) -> None:
    realm = f"r{uuid.uuid4().hex[:8]}"
    before = await _keys(api.registry)
    text = _manifest(realm, cell_containers=GOOD).encode()
    code, output = await _kukectl(api, "apply", "--dry-run=server", "-f", "-", stdin=text)
    assert code == 0, output
    assert "cell/web created (server dry run)" in output
    assert await _keys(api.registry) == before


@pytest.mark.parametrize(
    "how",
    ["stdin-dash", "dev-stdin", "process-substitution", "fifo"],
)
async def test_manifests_are_read_from_pipes(api: Api, tmp_path: Path, how: str) -> None:
    realm = f"r{uuid.uuid4().hex[:8]}"
    text = _manifest(realm, cell_containers=GOOD)
    source = tmp_path / "m.yaml"
    source.write_text(text)
    if how == "stdin-dash":
        code, output = await _kukectl(api, "apply", "-f", "-", stdin=text.encode())
    elif how == "dev-stdin":
        code, output = await _kukectl(api, "apply", "-f", "/dev/stdin", stdin=text.encode())
    elif how == "process-substitution":
        shell = f'"$@" <(cat {source})'
        code, output = await _kukectl(api, "apply", "-f", shell=shell)
    else:
        fifo = tmp_path / "fifo"
        os.mkfifo(fifo)
        shell = f'cat {source} > {fifo} & "$@" {fifo}; status=$?; wait; exit $status'
        code, output = await _kukectl(api, "apply", "-f", shell=shell)
    assert code == 0, output
    assert "cell/web created" in output
