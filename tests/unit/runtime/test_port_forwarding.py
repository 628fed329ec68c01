"""``veth.await_forwarding``: a new bridge port is waited for until it forwards, and one that
never does (a bridge running STP) is an error naming its state."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path
from typing import Any, cast

import pytest

from kukeon.runtime.network import veth
from kukeon.runtime.network.errors import NetworkError
from kukeon.runtime.network.veth import BridgePort

PORT = BridgePort(
    netns=Path("/run/netns/x"),
    ifname="eth0",
    host_ifname="veth0123456789a",
    bridge="kb-x",
    address=IPv4Interface("10.88.0.2/24"),
    gateway=IPv4Address("10.88.0.1"),
)


class _Attrs:
    def __init__(self, **attrs: object) -> None:
        self.attrs = attrs

    def get_attr(self, name: str) -> object:
        return self.attrs.get(name)


class _PortStates:
    """Answers ``link("get")`` with the next state of ``states`` (the last one repeats)."""

    def __init__(self, *states: int | None) -> None:
        self.states = list(states)
        self.reads = 0

    def link(self, command: str, **kwargs: object) -> list[_Attrs]:
        assert (command, kwargs) == ("get", {"index": 7})
        state = self.states[min(self.reads, len(self.states) - 1)]
        self.reads += 1
        data = _Attrs(IFLA_BRPORT_STATE=state) if state is not None else None
        return [_Attrs(IFLA_LINKINFO=_Attrs(IFLA_INFO_SLAVE_DATA=data))]


@pytest.fixture(autouse=True)
def sys_net(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty /sys/class/net (the link not shown there: the state is asked by netlink)."""
    monkeypatch.setattr("kukeon.runtime.network.veth._SYS_NET", tmp_path)
    return tmp_path


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    pauses: list[float] = []
    monkeypatch.setattr("kukeon.runtime.network.veth.time.sleep", pauses.append)
    return pauses


def test_a_forwarding_port_is_not_waited_for(slept: list[float]) -> None:
    links = _PortStates(3)
    veth.await_forwarding(cast(Any, links), 7, PORT)
    assert (links.reads, slept) == (1, [])


def test_a_disabled_port_is_read_again_until_it_forwards(slept: list[float]) -> None:
    links = _PortStates(0, 0, 0, 3)
    veth.await_forwarding(cast(Any, links), 7, PORT)
    assert links.reads == 4
    assert slept == list(veth._FORWARDING_PAUSES[:3])


@pytest.mark.parametrize(("state", "named"), [(1, "listening"), (4, "blocking"), (None, "None")])
def test_a_port_that_never_forwards_is_an_error_naming_its_state(
    slept: list[float], state: int | None, named: str
) -> None:
    with pytest.raises(NetworkError) as raised:
        veth.await_forwarding(cast(Any, _PortStates(state)), 7, PORT)
    assert f"port veth0123456789a of bridge kb-x is {named}, not forwarding" in str(raised.value)
    assert "is STP on for kb-x?" in str(raised.value)
    assert slept == list(veth._FORWARDING_PAUSES)


class _Sysfs:
    """The port's ``brport/state`` file, its next state written at each pause."""

    def __init__(self, sys_net: Path, *states: int) -> None:
        self.state = sys_net / PORT.host_ifname / "brport" / "state"
        self.state.parent.mkdir(parents=True)
        self.states = list(states)
        self.pause(0)

    def pause(self, _: float) -> None:
        self.state.write_text(f"{self.states.pop(0) if self.states else 3}\n")


def test_the_state_is_read_from_sysfs_when_it_shows_the_link(
    sys_net: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file read instead of a netlink request at each look: no netlink asked at all."""
    sysfs = _Sysfs(sys_net, 0, 0, 3)
    monkeypatch.setattr("kukeon.runtime.network.veth.time.sleep", sysfs.pause)
    links = _PortStates(0)
    veth.await_forwarding(cast(Any, links), 7, PORT)
    assert links.reads == 0
    assert not sysfs.states


def test_a_link_sysfs_shows_off_a_bridge_is_an_error(sys_net: Path, slept: list[float]) -> None:
    (sys_net / PORT.host_ifname).mkdir()
    links = _PortStates(3)
    with pytest.raises(NetworkError) as raised:
        veth.await_forwarding(cast(Any, links), 7, PORT)
    assert "is None, not forwarding" in str(raised.value)
    assert links.reads == 0
