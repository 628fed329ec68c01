"""A plaintext etcd on loopback with no authentication is refused as kukeond's store.

Found as ``nobody`` (helper-154's local-user pass): kukeond refused a plaintext etcd
endpoint off loopback but accepted one on loopback without a word, and every local
account reaches loopback. Debian's etcd-server serves ``http://localhost:2379`` so; with
kukeond on it, ``runuser -u nobody -- etcdctl put`` writes kukeon's documents (a
privileged cell is root on the node). Now such an endpoint needs etcd's authentication
(``etcdUsername``) or ``--etcd-allow-insecure``.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kukeon.daemon.config import ConfigError, load_config
from tests.fixtures.services import free_tcp_port, require_binary, require_root

pytestmark = pytest.mark.integration


@pytest.fixture
def plaintext_etcd(tmp_path: Path) -> Iterator[str]:
    """An etcd on 127.0.0.1 without TLS or authentication (as Debian's package serves)."""
    require_root()
    require_binary("etcd", "etcd-server")
    require_binary("etcdctl", "etcd-client")
    require_binary("runuser", "util-linux")
    client, peer = free_tcp_port(), free_tcp_port()
    endpoint = f"http://127.0.0.1:{client}"
    process = subprocess.Popen(
        [
            "etcd", "--name", "plain", "--data-dir", str(tmp_path / "etcd"),
            "--listen-client-urls", endpoint, "--advertise-client-urls", endpoint,
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"plain=http://127.0.0.1:{peer}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            health = subprocess.run(
                ["etcdctl", "--endpoints", endpoint, "--dial-timeout=1s", "endpoint", "health"],
                capture_output=True,
                check=False,
            )
            if health.returncode == 0:
                break
            time.sleep(0.2)
        yield endpoint
    finally:
        process.kill()
        process.wait(timeout=10)
        shutil.rmtree(tmp_path / "etcd", ignore_errors=True)


def test_a_plaintext_etcd_on_loopback_is_refused_for_what_nobody_does_to_it(
    plaintext_etcd: str,
) -> None:
    # The premise: any local account writes there (here a privileged cell would go).
    key = "/kukeon/registry/cells/prod/default/default/owned"
    wrote = subprocess.run(
        ["runuser", "-u", "nobody", "--", "etcdctl", "--endpoints", plaintext_etcd,
         "--dial-timeout=3s", "--command-timeout=5s", "put", key, "{}"],
        capture_output=True, text=True, check=False, timeout=30, cwd="/",
    )  # fmt: skip
    assert wrote.returncode == 0, wrote.stderr
    assert "OK" in wrote.stdout

    # kukeond refuses it as its store (accepted before: it was on loopback).
    with pytest.raises(ConfigError, match="is plaintext with no credential") as refused:
        load_config(environ={"KUKEON_ETCD_ENDPOINTS": plaintext_etcd})
    assert plaintext_etcd in str(refused.value)
    assert "on loopback every local user" in str(refused.value)
    # With etcd's authentication, or the risk accepted, it is taken.
    assert (
        load_config(
            environ={
                "KUKEON_ETCD_ENDPOINTS": plaintext_etcd,
                "KUKEON_ETCD_USERNAME": "kukeon",
                "KUKEON_ETCD_PASSWORD": "s3cret",
            }
        ).etcd_username
        == "kukeon"
    )
    insecure = load_config(
        environ={"KUKEON_ETCD_ENDPOINTS": plaintext_etcd, "KUKEON_ETCD_ALLOW_INSECURE": "1"}
    )
    assert insecure.plaintext_etcd_endpoints == (plaintext_etcd,)
