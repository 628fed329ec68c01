"""The space facade's host-independent behaviour: prerequisite errors and names."""

from __future__ import annotations

from pathlib import Path

import pytest

from kukeon.runtime.network import (
    CniPluginNotFoundError,
    EgressRuleset,
    NetnsError,
    NetnsManager,
    NetworkSettings,
    PortMapping,
    SpaceNetworks,
    space_conflist_path,
)
from kukeon.runtime.network.cni_leftovers import masquerade_chain_name


async def test_missing_cni_plugins_fail_before_anything_is_allocated(tmp_path: Path) -> None:
    settings = NetworkSettings(state_dir=tmp_path / "state", cni_plugin_dirs=(tmp_path / "none",))
    networks = SpaceNetworks(settings=settings)
    with pytest.raises(CniPluginNotFoundError) as raised:
        await networks.ensure_space_network(
            realm="r",
            space="s",
            cni_config_path=tmp_path / "s.conflist",
            egress=EgressRuleset(),
        )
    message = str(raised.value)
    assert "`bridge`" in message
    assert "containernetworking-plugins" in message
    assert str(tmp_path / "none") in message
    assert not settings.subnets_file.exists()
    assert not (tmp_path / "s.conflist").exists()


def test_settings_layout_under_the_state_dir() -> None:
    settings = NetworkSettings(state_dir=Path("/var/lib/kukeon"))
    assert settings.ipam_dir == Path("/var/lib/kukeon/network/ipam")
    assert settings.attachments_dir == Path("/var/lib/kukeon/network/attachments")
    assert settings.subnets_file == Path("/var/lib/kukeon/network/subnets.json")
    assert settings.netns_dir == Path("/var/run/netns")
    assert settings.nft_table == "kukeon"
    assert str(settings.subnet_pool) == "10.88.0.0/16"
    assert settings.subnet_prefix == 24


def test_port_mapping_in_cni_form() -> None:
    assert PortMapping(host_port=8080, container_port=80).to_cni() == {
        "hostPort": 8080,
        "containerPort": 80,
        "protocol": "tcp",
    }
    assert PortMapping(53, 53, "udp", "127.0.0.1").to_cni()["hostIP"] == "127.0.0.1"


@pytest.mark.parametrize("name", ["", "a/b", ".", ".."])
def test_netns_names_are_plain_file_names(name: str) -> None:
    with pytest.raises(NetnsError, match="plain file name"):
        NetnsManager(directory=Path("/tmp/x")).path(name)


def test_masquerade_chain_name_matches_the_bridge_plugin() -> None:
    # Observed on this host: bridge plugin 1.1.1, network kk-r3e14-s6108, that container id.
    assert masquerade_chain_name("kk-r3e14-s6108", "kkt-64ac22-a4b1e4") == (
        "CNI-881bce0af705f88a74e190ef"
    )


def test_conflist_path_in_a_conf_dir() -> None:
    path = space_conflist_path(conf_dir=Path("/etc/cni/net.d"), realm="prod", space="web")
    assert path == Path("/etc/cni/net.d/kukeon-kk-prod-web.conflist")
