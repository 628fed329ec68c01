"""One realm's editor rewriting a large document in a loop: how fast etcd's history fills,
and what another realm's editor sees meanwhile (docs/benchmarks/write-budget.md).

A private etcd with a small backend quota (``--quota-mib``, 128 by default: etcd's 2 GiB
scaled down so the run ends) and the API server as kukeond runs it (its defaults: the
realms' write budget, ``apiserver.writebudget``, where the tree has one), over TCP with
bearer tokens. Editor ``eddie`` of realm ``team`` patches a ``--size``-byte annotation of
one space as fast as the server answers, for ``--seconds``, never waiting (hostile: a 429's
Retry-After is ignored); editor ``olga`` of realm ``other`` creates and patches small spaces
beside it, four a second. Reported: the flood's accepted and refused writes, etcd's database
size over time and whether it reached the quota (then every realm's writes fail until
kukeond's space keeper frees it), and the other realm's writes by HTTP code.

``KUKEON_OPERATOR_TREE=DIR`` imports kukeon from another tree's ``operator`` (a before/after
comparison, run alternating).

Usage:  flock /tmp/kukeon-bench.lock nice -n 10 .venv/bin/python bench/write_flood.py
            [--seconds 30] [--size 250000] [--quota-mib 128]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, os.environ.get("KUKEON_OPERATOR_TREE", str(REPO_ROOT / "operator")))

import aiohttp  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from kukeon.apiserver import ApiSettings, serve_api  # noqa: E402
from kukeon.store import EmbeddedEtcd, Registry  # noqa: E402

V = "/apis/kukeon.io/v1beta1"
PATCH = {"Content-Type": "application/merge-patch+json"}
EDITOR, OTHER = "eddie-" + uuid.uuid4().hex, "olga-" + uuid.uuid4().hex


def _space(name: str) -> dict[str, Any]:
    return {"apiVersion": "kukeon.io/v1beta1", "kind": "Space", "metadata": {"name": name}}


def _annotated(value: str) -> str:
    return json.dumps({"metadata": {"annotations": {"big": value}}})


def _certs(directory: Path) -> None:
    script = REPO_ROOT / "hack" / "make-ca.sh"
    subprocess.run(["bash", str(script), "--out", str(directory), "--quiet"], check=True)
    (directory / "tokens.yaml").write_text(
        "tokens:\n"
        f"- {{token: {EDITOR}, user: eddie, role: editor, realms: [team]}}\n"
        f"- {{token: {OTHER}, user: olga, role: editor, realms: [other]}}\n"
    )


def _session(base: str, ca: Path, token: str) -> aiohttp.ClientSession:
    context = ssl.create_default_context(cafile=str(ca))
    return aiohttp.ClientSession(
        base_url=base,
        connector=aiohttp.TCPConnector(ssl=context),
        headers={"Authorization": f"Bearer {token}"},
    )


async def _flood(
    session: aiohttp.ClientSession, size: int, seconds: float
) -> collections.Counter[int]:
    codes: collections.Counter[int] = collections.Counter()
    deadline = time.monotonic() + seconds
    turn = 0
    while time.monotonic() < deadline:
        turn += 1
        async with session.patch(
            f"{V}/realms/team/spaces/flood",
            data=_annotated(str(turn % 10) * size),
            headers=PATCH,
        ) as answer:
            await answer.read()
            codes[answer.status] += 1
    return codes


async def _neighbour(session: aiohttp.ClientSession, seconds: float) -> collections.Counter[int]:
    codes: collections.Counter[int] = collections.Counter()
    deadline = time.monotonic() + seconds
    index = 0
    while time.monotonic() < deadline:
        index += 1
        async with session.post(f"{V}/realms/other/spaces", json=_space(f"s{index}")) as made:
            codes[made.status] += 1
        url = f"{V}/realms/other/spaces/s{index}"
        async with session.patch(url, data=_annotated("x" * 2000), headers=PATCH) as patched:
            codes[patched.status] += 1
        await asyncio.sleep(0.25)
    return codes


async def _sizes(registry: Registry, seconds: float, out: list[tuple[float, int]]) -> None:
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        out.append((time.monotonic() - started, (await registry.client.status()).db_size))
        await asyncio.sleep(1.0)


async def run(seconds: float, size: int, quota_mib: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="kukeon-flood-"))
    _certs(root / "pki")
    quota = f"--quota-backend-bytes={quota_mib * 1024 * 1024}"
    try:
        async with EmbeddedEtcd(data_dir=root / "etcd", extra_args=[quota]) as etcd:
            async with await Registry.connect(etcd.config()) as registry:
                settings = ApiSettings(
                    socket_path=root / "kukeond.sock",
                    socket_group=None,
                    tcp_address="127.0.0.1:0",
                    tls_cert_file=root / "pki" / "server.crt",
                    tls_key_file=root / "pki" / "server.key",
                    tokens_file=root / "pki" / "tokens.yaml",
                )
                runner = await serve_api(settings, registry, metrics_registry=CollectorRegistry())
                try:
                    return await _measure(runner, registry, root, seconds, size)
                finally:
                    await runner.stop()
            await etcd.kill()
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def _measure(
    runner: Any, registry: Registry, root: Path, seconds: float, size: int
) -> dict[str, Any]:
    connector = aiohttp.UnixConnector(path=str(root / "kukeond.sock"))
    async with aiohttp.ClientSession(connector=connector, base_url="http://kukeond") as admin:
        for realm in ("team", "other"):
            document = {"apiVersion": "kukeon.io/v1beta1", "kind": "Realm"}
            made = await admin.post(f"{V}/realms", json={**document, "metadata": {"name": realm}})
            assert made.status == 201, await made.text()
        made = await admin.post(f"{V}/realms/team/spaces", json=_space("flood"))
        assert made.status == 201, await made.text()
    base = f"https://127.0.0.1:{runner.tcp_port}"
    ca = root / "pki" / "ca.crt"
    sizes: list[tuple[float, int]] = []
    before = (await registry.client.status()).db_size
    async with _session(base, ca, EDITOR) as flood, _session(base, ca, OTHER) as other:
        flooded, neighbour, _ = await asyncio.gather(
            _flood(flood, size, seconds),
            _neighbour(other, seconds),
            _sizes(registry, seconds, sizes),
        )
    after = (await registry.client.status()).db_size
    return {
        "flood": dict(flooded),
        "other_realm": dict(neighbour),
        "db_before_mib": round(before / 2**20, 1),
        "db_after_mib": round(after / 2**20, 1),
        "db_mib_over_time": [
            (round(t), round(s / 2**20, 1)) for t, s in sizes[:: max(1, len(sizes) // 10)]
        ],
        "accepted_mib": round(flooded[200] * size / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--size", type=int, default=250_000)
    parser.add_argument("--quota-mib", type=int, default=128)
    args = parser.parse_args()
    tree = os.environ.get("KUKEON_OPERATOR_TREE", "this tree")
    load = os.getloadavg()
    result = asyncio.run(run(args.seconds, args.size, args.quota_mib))
    print(json.dumps({"tree": tree, "load": [round(x, 1) for x in load], **result}))


if __name__ == "__main__":
    main()
