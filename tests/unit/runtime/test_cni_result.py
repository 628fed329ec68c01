"""Parsing CNI results and error objects into typed records."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Interface

import pytest

from kukeon.runtime.network import CniConfigError, CniError
from kukeon.runtime.network.cni import parse_error, parse_result

BRIDGE_RESULT = {
    "cniVersion": "1.0.0",
    "interfaces": [
        {"name": "kk-a-b", "mac": "82:48:e1:28:d2:c4"},
        {"name": "veth685a3848", "mac": "fa:d4:60:da:ff:ca"},
        {"name": "eth0", "mac": "f6:85:8e:e4:87:06", "sandbox": "/var/run/netns/c1"},
    ],
    "ips": [
        {"interface": 2, "address": "10.250.77.2/24", "gateway": "10.250.77.1"},
        {"interface": 2, "address": "fd00::2/64"},
    ],
    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.9.0.0/16", "gw": "10.250.77.254"}],
    "dns": {"nameservers": ["10.250.77.1"], "search": ["svc"], "options": ["ndots:2"]},
}


def test_bridge_result() -> None:
    result = parse_result(BRIDGE_RESULT, plugin="bridge")
    assert result.cni_version == "1.0.0"
    assert [i.name for i in result.interfaces] == ["kk-a-b", "veth685a3848", "eth0"]
    assert result.interfaces[2].sandbox == "/var/run/netns/c1"
    assert result.interfaces[0].sandbox is None
    assert result.ips[0].address == IPv4Interface("10.250.77.2/24")
    assert result.ips[0].gateway == IPv4Address("10.250.77.1")
    assert isinstance(result.ips[1].address, IPv6Interface)
    assert result.routes[0].dst == IPv4Network("0.0.0.0/0")
    assert result.routes[1].gw == IPv4Address("10.250.77.254")
    assert result.dns.nameservers == ("10.250.77.1",)
    assert result.dns.options == ("ndots:2",)
    first = result.first_ipv4()
    assert first is not None
    assert first.address.ip == IPv4Address("10.250.77.2")
    assert len(result.container_ips(sandbox="/var/run/netns/c1")) == 2
    assert result.container_ips(sandbox="/elsewhere") == ()
    assert result.raw is BRIDGE_RESULT


def test_empty_result_from_plugins_that_only_pass_through() -> None:
    result = parse_result({"cniVersion": "1.0.0", "dns": {}}, plugin="loopback")
    assert result.ips == ()
    assert result.first_ipv4() is None


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"ips": [{"address": "not-an-ip"}]},
        {"interfaces": [{"mac": "x"}]},
        {"routes": [{"gw": "10.0.0.1"}]},
        {"dns": []},
    ],
)
def test_malformed_results_name_the_plugin(document: object) -> None:
    with pytest.raises(CniConfigError, match="`bridge`"):
        parse_result(document, plugin="bridge")


def test_spec_error_object() -> None:
    stdout = json.dumps(
        {"cniVersion": "1.0.0", "code": 7, "msg": "invalid config", "details": "bad subnet"}
    ).encode()
    error = parse_error(
        stdout=stdout, stderr=b"", plugin="bridge", network="kk-a-b", command="ADD", returncode=1
    )
    assert isinstance(error, CniError)
    assert (error.code, error.msg, error.details) == (7, "invalid config", "bad subnet")
    assert error.plugin == "bridge"
    assert error.network == "kk-a-b"
    assert "`bridge`" in str(error)
    assert "`kk-a-b`" in str(error)
    assert "(code 7)" in str(error)


def test_crash_without_error_object_keeps_stderr() -> None:
    error = parse_error(
        stdout=b"panic", stderr=b"segfault", plugin="x", network="n", command="DEL", returncode=2
    )
    assert error.code is None
    assert "exited with status 2: segfault" in error.msg
    assert error.stderr == "segfault"
