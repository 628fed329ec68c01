"""What a node reads of its host and its configuration, without etcd."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kukeon.api import Kind, Node, NodeAddress, parse_resource, to_document
from kukeon.daemon.config import ConfigError, load_config
from kukeon.daemon.nodefacts import api_endpoint, cni_plugins, read_meminfo
from kukeon.store import KeyLayout


def test_meminfo_is_read_in_bytes(tmp_path: Path) -> None:
    sample = tmp_path / "meminfo"
    sample.write_text("MemTotal:       2048 kB\nMemAvailable:    1024 kB\nHugePages_Total: 0\n")
    assert read_meminfo(sample) == {
        "MemTotal": 2048 * 1024,
        "MemAvailable": 1024 * 1024,
        "HugePages_Total": 0,
    }
    assert read_meminfo(tmp_path / "missing") == {}


def test_cni_plugins_are_the_executables_found(tmp_path: Path) -> None:
    (tmp_path / "bridge").write_text("")
    (tmp_path / "bridge").chmod(0o755)
    (tmp_path / "README").write_text("")
    assert cni_plugins((tmp_path, tmp_path / "missing")) == ["bridge"]


def test_node_labels_from_env_and_flags() -> None:
    config = load_config(environ={"KUKEON_NODE_LABELS": "zone=a, disk=ssd"})
    assert config.node_labels == {"zone": "a", "disk": "ssd"}
    config = load_config(environ={}, overrides={"node_labels": ("zone=b",)})
    assert config.node_labels == {"zone": "b"}
    with pytest.raises(ConfigError, match="key=value"):
        load_config(environ={}, overrides={"node_labels": ("zone",)})


def test_fleet_timings_have_production_defaults() -> None:
    config = load_config(environ={})
    assert (config.node_lease_ttl, config.node_heartbeat_seconds) == (40, 10.0)
    assert config.node_lost_timeout == 300.0


def test_node_is_a_top_level_kind() -> None:
    parsed = parse_resource(
        {
            "apiVersion": "kukeon.io/v1beta1",
            "kind": "Node",
            "metadata": {"name": "n1", "labels": {"zone": "a"}},
            "spec": {"unschedulable": True},
        }
    )
    assert isinstance(parsed, Node)
    assert KeyLayout().key(Kind.NODE, ("n1",)) == "/kukeon/registry/nodes/n1"
    assert to_document(parsed)["spec"] == {"unschedulable": True}
    assert to_document(parsed)["status"]["state"] == "Unknown"


def test_api_endpoint_is_the_internal_ip_and_the_bound_port() -> None:
    addresses = [
        NodeAddress(type="Hostname", address="h1"),
        NodeAddress(type="InternalIP", address="10.0.0.5"),
    ]
    assert api_endpoint(addresses, 6443) == "https://10.0.0.5:6443"
    assert api_endpoint(addresses, None) is None
    assert api_endpoint(addresses[:1], 6443) is None
    assert (
        api_endpoint([NodeAddress(type="InternalIP", address="fd00::5")], 1)
        == "https://[fd00::5]:1"
    )


def test_fleet_forwarding_settings(tmp_path: Path) -> None:
    config = load_config(
        environ={"KUKEON_FLEET_TOKEN_FILE": "/etc/kukeon/fleet.token"},
        overrides={"fleet_ca_file": tmp_path / "ca.crt"},
    )
    assert config.fleet_token_file == Path("/etc/kukeon/fleet.token")
    assert config.fleet_ca_file == tmp_path / "ca.crt"


def test_disk_pressure_is_a_nearly_full_state_filesystem(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from kukeon.daemon.nodefacts import disk_condition

    now = datetime.now(UTC)

    def statvfs(blocks: int, free: int, files: int = 1000, ffree: int = 1000) -> Any:
        return lambda _path: SimpleNamespace(
            f_blocks=blocks, f_frsize=4096, f_bavail=free, f_files=files, f_favail=ffree
        )

    gib = (1 << 30) // 4096
    cases = [
        (statvfs(10 * gib, gib), "False"),  # 10 % free
        (statvfs(10 * gib, gib // 4), "True"),  # 2.5 %, 256 MiB
        (statvfs(1000 * gib, 30 * gib), "False"),  # 3 % of a large disk: still 30 GiB
        (statvfs(10 * gib, gib, files=100_000, ffree=10), "True"),  # out of inodes
        (statvfs(10 * gib, gib, files=0, ffree=0), "False"),  # no inode count (btrfs)
    ]
    for fake, status in cases:
        condition = disk_condition(tmp_path, now, statvfs=fake)
        assert condition.type == "DiskPressure"
        assert condition.status == status, condition.message
        assert str(tmp_path) in (condition.message or "")
    real = disk_condition(tmp_path, now)
    assert real.status in ("True", "False")
    missing = disk_condition(tmp_path / "nosuch", now)
    assert (missing.status, missing.reason) == ("Unknown", "DiskUnobservable")
