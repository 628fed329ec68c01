"""Rendering and reading CNI network configurations, and what each plugin gets on stdin."""

from __future__ import annotations

import json
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from kukeon.runtime.network import CniConfigError, RuntimeConf
from kukeon.runtime.network.cni import (
    NetworkConfigList,
    gateway_of,
    load_conflist,
    parse_conflist,
    plugin_stdin,
    render_loopback_config,
    render_space_conflist,
    write_conflist,
)

SUBNET = IPv4Network("10.88.7.0/24")


def render(**kwargs: object) -> NetworkConfigList:
    defaults: dict[str, object] = {
        "network_name": "kk-prod-web",
        "bridge": "kk-prod-web",
        "subnet": SUBNET,
        "ipam_data_dir": Path("/var/lib/kukeon/network/ipam"),
    }
    defaults.update(kwargs)
    return render_space_conflist(**defaults)  # type: ignore[arg-type]


def test_space_conflist_document() -> None:
    document = json.loads(render().to_json())
    assert document == {
        "cniVersion": "1.0.0",
        "name": "kk-prod-web",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "kk-prod-web",
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": "/var/lib/kukeon/network/ipam",
                    "ranges": [[{"subnet": "10.88.7.0/24", "gateway": "10.88.7.1"}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": True},
            {"type": "firewall", "backend": "iptables"},
        ],
    }


def test_optional_plugins_and_mtu() -> None:
    conflist = render(include_portmap=False, include_firewall=False, mtu=1400)
    assert [p["type"] for p in conflist.plugins] == ["bridge"]
    assert conflist.plugins[0]["mtu"] == 1400


def test_invalid_network_name_is_refused() -> None:
    with pytest.raises(CniConfigError, match="network name"):
        render(network_name="-bad name")


def test_gateway_is_the_first_host() -> None:
    assert str(gateway_of(IPv4Network("10.1.2.0/24"))) == "10.1.2.1"


def test_loopback_is_its_own_network() -> None:
    loopback = render_loopback_config()
    assert loopback.cni_version == "1.0.0"
    assert [p["type"] for p in loopback.plugins] == ["loopback"]


def test_round_trip_and_single_plugin_conf() -> None:
    conflist = render()
    assert parse_conflist(conflist.to_json(), source="x") == conflist
    single = parse_conflist(
        json.dumps({"cniVersion": "0.4.0", "name": "n", "type": "bridge", "bridge": "b"}),
        source="x",
    )
    assert single.plugins == ({"type": "bridge", "bridge": "b"},)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "JSON object"),
        ("{", "not JSON"),
        ('{"cniVersion": "1.0.0", "plugins": [{"type": "x"}]}', "`name`"),
        ('{"name": "n", "plugins": [{"type": "x"}]}', "`cniVersion`"),
        ('{"name": "n", "cniVersion": "1.0.0", "plugins": []}', "non-empty"),
        ('{"name": "n", "cniVersion": "1.0.0", "plugins": [{"bridge": "b"}]}', r"plugins\[0\]"),
    ],
)
def test_malformed_conflists_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(CniConfigError, match=message):
        parse_conflist(text, source="/etc/cni/net.d/x.conflist")


async def test_write_is_atomic_and_skips_identical_content(tmp_path: Path) -> None:
    path = tmp_path / "net.d" / "space.conflist"
    assert await write_conflist(path, render())
    inode = path.stat().st_ino
    assert not await write_conflist(path, render())
    assert path.stat().st_ino == inode
    assert await write_conflist(path, render(subnet=IPv4Network("10.88.8.0/24")))
    assert (await load_conflist(path)).plugins[0]["ipam"]["ranges"][0][0]["subnet"] == (
        "10.88.8.0/24"
    )
    assert [p.name for p in path.parent.iterdir()] == ["space.conflist"]


async def test_loading_a_missing_conflist_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(CniConfigError, match="does not exist"):
        await load_conflist(tmp_path / "absent.conflist")


def test_plugin_stdin_injects_name_version_prev_result_and_capabilities() -> None:
    conflist = render()
    conf = RuntimeConf(
        container_id="c1",
        netns=Path("/var/run/netns/c1"),
        capability_args={"portMappings": [{"hostPort": 8080, "containerPort": 80}], "other": 1},
    )
    bridge = plugin_stdin(conflist.plugins[0], conflist=conflist, conf=conf, prev_result=None)
    assert bridge["name"] == "kk-prod-web"
    assert bridge["cniVersion"] == "1.0.0"
    assert "prevResult" not in bridge
    assert "runtimeConfig" not in bridge
    previous = {"cniVersion": "1.0.0", "ips": []}
    portmap = plugin_stdin(conflist.plugins[1], conflist=conflist, conf=conf, prev_result=previous)
    assert portmap["prevResult"] == previous
    assert portmap["runtimeConfig"] == {"portMappings": [{"hostPort": 8080, "containerPort": 80}]}


@pytest.mark.parametrize("container_id", ["", "-x", "a/b", "a b"])
def test_container_ids_follow_the_spec(container_id: str) -> None:
    with pytest.raises(CniConfigError, match="container id"):
        RuntimeConf(container_id=container_id, netns=Path("/x"))


def test_cni_args_must_be_well_formed() -> None:
    with pytest.raises(CniConfigError, match="CNI_ARGS"):
        RuntimeConf(container_id="c", netns=Path("/x"), args={"A;B": "1"})
