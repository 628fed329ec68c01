"""Executing CNI plugins per the spec, against fake plugins written to a temporary directory."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from kukeon.runtime.network import (
    CniError,
    CniPluginNotFoundError,
    CniRuntime,
    HostPrerequisiteError,
    NetworkConfigList,
    RuntimeConf,
)

FAKE_PLUGIN = """\
import json, os, sys, time
conf = json.load(sys.stdin)
with open(conf["log"], "a") as log:
    env = {k: v for k, v in os.environ.items() if k.startswith("CNI_")}
    record = {"plugin": conf["type"], "env": env, "stdin": conf, "pid": os.getpid()}
    log.write(json.dumps(record) + "\\n")
behaviour = conf.get("behave", {}).get(os.environ["CNI_COMMAND"], "ok")
if behaviour == "fail":
    print(json.dumps({"cniVersion": "1.0.0", "code": 11, "msg": "try later", "details": "busy"}))
    sys.exit(1)
if behaviour == "sleep":
    time.sleep(5)
if os.environ["CNI_COMMAND"] == "ADD":
    result = conf.get("prevResult") or {"cniVersion": "1.0.0", "interfaces": [], "ips": []}
    result = dict(result)
    result.setdefault("ips", []).append(
        {"address": conf["address"], "gateway": "10.0.0.1"} if "address" in conf else None
    )
    result["ips"] = [ip for ip in result["ips"] if ip]
    result.setdefault("touchedBy", []).append(conf["type"])
    print(json.dumps(result))
"""


@pytest.fixture
def plugin_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "cni-bin"
    directory.mkdir()
    for name in ("first", "second", "third"):
        path = directory / name
        path.write_text(f"#!{sys.executable}\n{FAKE_PLUGIN}")
        path.chmod(0o755)
    return directory


def conflist(log: Path, *plugins: dict[str, Any]) -> NetworkConfigList:
    return NetworkConfigList(
        name="net1",
        cni_version="1.0.0",
        plugins=tuple({**plugin, "log": str(log)} for plugin in plugins),
    )


def calls(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def _plugin_gone(log: Path) -> bool:
    """The first plugin that ran was killed and reaped (not even a zombie is left)."""
    return not Path(f"/proc/{calls(log)[0]['pid']}").exists()


CONF = RuntimeConf(
    container_id="cell-1", netns=Path("/var/run/netns/cell-1"), ifname="eth0", args={"K": "V"}
)


async def test_add_chains_prev_result_and_sets_the_environment(
    plugin_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    network = conflist(log, {"type": "first", "address": "10.0.0.5/24"}, {"type": "second"})
    runtime = CniRuntime(plugin_dirs=[tmp_path / "absent", plugin_dir])
    result = await runtime.add(network, CONF)

    assert str(result.ips[0].address) == "10.0.0.5/24"
    assert result.raw["touchedBy"] == ["first", "second"]
    first, second = calls(log)
    assert first["env"] == {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "cell-1",
        "CNI_NETNS": "/var/run/netns/cell-1",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": "K=V",
        "CNI_PATH": f"{tmp_path / 'absent'}{os.pathsep}{plugin_dir}",
    }
    assert first["stdin"]["name"] == "net1"
    assert first["stdin"]["cniVersion"] == "1.0.0"
    assert "prevResult" not in first["stdin"]
    assert second["stdin"]["prevResult"]["touchedBy"] == ["first"]


async def test_check_runs_in_order_with_the_add_result(plugin_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    network = conflist(log, {"type": "first", "address": "10.0.0.5/24"}, {"type": "second"})
    runtime = CniRuntime(plugin_dirs=[plugin_dir])
    result = await runtime.add(network, CONF)
    log.unlink()
    await runtime.check(network, CONF, result)
    checks = calls(log)
    assert [c["plugin"] for c in checks] == ["first", "second"]
    assert all(c["env"]["CNI_COMMAND"] == "CHECK" for c in checks)
    assert all(c["stdin"]["prevResult"] == dict(result.raw) for c in checks)


async def test_del_runs_in_reverse_and_cleans_up_past_a_failure(
    plugin_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    network = conflist(
        log, {"type": "first"}, {"type": "second", "behave": {"DEL": "fail"}}, {"type": "third"}
    )
    runtime = CniRuntime(plugin_dirs=[plugin_dir])
    with pytest.raises(CniError) as raised:
        await runtime.delete(network, CONF, None)
    assert [c["plugin"] for c in calls(log)] == ["third", "second", "first"]
    error = raised.value
    assert (error.plugin, error.network, error.command) == ("second", "net1", "DEL")
    assert (error.code, error.msg, error.details) == (11, "try later", "busy")
    assert all("prevResult" not in c["stdin"] for c in calls(log))


async def test_add_failure_is_a_typed_error(plugin_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    network = conflist(log, {"type": "first", "behave": {"ADD": "fail"}}, {"type": "second"})
    with pytest.raises(CniError, match=r"`first` failed ADD on network `net1` \(code 11\)"):
        await CniRuntime(plugin_dirs=[plugin_dir]).add(network, CONF)
    assert [c["plugin"] for c in calls(log)] == ["first"]


async def test_missing_plugin_names_it_and_the_package_before_running_anything(
    plugin_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    network = conflist(log, {"type": "first"}, {"type": "bridge"})
    with pytest.raises(CniPluginNotFoundError) as raised:
        await CniRuntime(plugin_dirs=[plugin_dir]).add(network, CONF)
    assert isinstance(raised.value, HostPrerequisiteError)
    assert raised.value.plugin == "bridge"
    assert "`bridge`" in str(raised.value)
    assert "containernetworking-plugins" in str(raised.value)
    assert str(plugin_dir) in str(raised.value)
    assert not log.exists()


async def test_a_hanging_plugin_times_out(plugin_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    network = conflist(log, {"type": "first", "behave": {"ADD": "sleep"}})
    with pytest.raises(CniError, match="timed out"):
        await CniRuntime(plugin_dirs=[plugin_dir], timeout=0.5).add(network, CONF)
    assert _plugin_gone(log)


async def test_cancelling_the_caller_kills_the_running_plugin(
    plugin_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    network = conflist(log, {"type": "first", "behave": {"ADD": "sleep"}})
    adding = asyncio.ensure_future(CniRuntime(plugin_dirs=[plugin_dir]).add(network, CONF))
    async with asyncio.timeout(10):
        while True:  # until the plugin has started (and logged its pid)
            if log.exists() and log.read_text().endswith("\n"):
                break
            await asyncio.sleep(0.01)
    adding.cancel()
    with pytest.raises(asyncio.CancelledError):
        await adding
    assert _plugin_gone(log)
