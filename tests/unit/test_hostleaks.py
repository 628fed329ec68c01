"""The integration suites' leak check (tests/fixtures/hostleaks.py): what it blames, on
made-up host listings."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from types import SimpleNamespace

import pytest

from kukeon.runtime.network.forward import ForwardAccepts
from kukeon.runtime.network.veth import owner_alias
from tests.fixtures import hostleaks, sessions
from tests.fixtures.hostleaks import LeakGuard

Thing = tuple[str, str]


class Host:
    """A host whose listing a test changes between the guard's looks."""

    def __init__(self, *things: Thing) -> None:
        self.things = set(things)

    def snapshot(self) -> set[Thing]:
        return set(self.things)


BRIDGE = ("bridge", "k-r1s1-abc (10.160.0.1)")
TABLE = ("nft table", "inet kukeon_test_abc")


def test_what_a_module_leaves_is_blamed_on_it() -> None:
    host = Host()
    guard = LeakGuard(snapshot=host.snapshot)
    guard.module_starts()
    guard.module_ended("tests/integration/a.py")
    guard.module_starts()
    host.things |= {BRIDGE, TABLE}
    guard.module_ended("tests/integration/b.py")
    guard.module_starts()
    guard.module_ended("tests/integration/c.py")
    assert guard.leaks() == {"tests/integration/b.py": [BRIDGE, TABLE]}


def test_a_longer_lived_fixtures_objects_are_not_leaks_once_it_is_torn_down() -> None:
    host = Host()
    guard = LeakGuard(snapshot=host.snapshot)
    guard.module_starts()
    host.things.add(BRIDGE)  # a session-scoped fixture, first used here
    guard.module_ended("tests/integration/a.py")
    guard.module_starts()
    guard.module_ended("tests/integration/b.py")
    host.things.clear()  # its teardown, at the session's end
    assert guard.leaks() == {}


def test_what_was_there_before_is_never_blamed() -> None:
    host = Host(TABLE)
    guard = LeakGuard(snapshot=host.snapshot)
    guard.module_starts()
    guard.module_ended("tests/integration/a.py")
    assert guard.leaks() == {}


def test_an_object_removed_then_made_again_is_blamed_on_the_module_that_left_it() -> None:
    host = Host()
    guard = LeakGuard(snapshot=host.snapshot)
    guard.module_starts()
    host.things.add(TABLE)
    guard.module_ended("tests/integration/a.py")  # a package fixture's, say
    host.things.clear()
    guard.module_ended("tests/integration/b.py")
    host.things.add(TABLE)
    guard.module_ended("tests/integration/c.py")
    assert guard.leaks() == {"tests/integration/c.py": [TABLE]}


def test_xdist_workers_and_the_soak_draw_subnet_pools_from_shares_of_their_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hostleaks, "LEDGER", hostleaks.Ledger())
    monkeypatch.setattr(hostleaks, "bridge_addresses", list)
    monkeypatch.delenv("KUKEON_TEST_POOLS", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT", raising=False)
    assert hostleaks.pool_share() == range(512)  # a serial session: the whole range
    shares = []
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        shares.append(set(hostleaks.pool_share()))
        pool = hostleaks.random_pool()
        assert pool.subnet_of(hostleaks.TEST_POOLS)
        assert pool.prefixlen == 20
        index = (int(pool.network_address) - int(hostleaks.TEST_POOLS.network_address)) >> 12
        assert index in shares[-1]
        assert pool in hostleaks.LEDGER.pools  # drawn means owned
    monkeypatch.setenv("KUKEON_TEST_POOLS", "soak")
    shares.append(set(hostleaks.pool_share()))
    assert all(len(share) >= 64 for share in shares)
    assert not (shares[0] & shares[1])
    assert not (shares[2] & (shares[0] | shares[1]))


def test_an_xdist_workers_leaks_fail_the_controllers_session() -> None:
    config = SimpleNamespace(stash=pytest.Stash())
    config.stash[hostleaks._LEAKS] = {}
    found = {"tests/integration/b.py": [list(BRIDGE), list(TABLE)]}
    node = SimpleNamespace(
        config=config,
        workerinput={"workerid": "gw1"},
        workeroutput={hostleaks._WORKER_OUTPUT: found},
    )
    hostleaks.pytest_testnodedown(node, None)
    clean = SimpleNamespace(config=config, workerinput={"workerid": "gw0"}, workeroutput={})
    hostleaks.pytest_testnodedown(clean, None)
    assert config.stash[hostleaks._LEAKS] == {
        "tests/integration/b.py (worker gw1)": [BRIDGE, TABLE]
    }
    session = SimpleNamespace(config=config, exitstatus=pytest.ExitCode.OK)
    hostleaks.pytest_sessionfinish(session)  # type: ignore[arg-type]
    assert session.exitstatus == pytest.ExitCode.TESTS_FAILED


def test_a_bridge_tagged_by_another_node_is_not_this_sessions_even_in_its_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hostleaks, "LEDGER", hostleaks.Ledger())
    pool = IPv4Network("10.160.0.0/20")
    listing = [
        ("k-ours", IPv4Address("10.160.0.1")),
        ("k-theirs", IPv4Address("10.160.1.1")),  # a private plane that drew the same pool
        ("k-untagged", IPv4Address("10.160.2.1")),  # made by the CNI plugin, not tagged yet
        ("k-elsewhere", IPv4Address("10.88.0.1")),
    ]
    monkeypatch.setattr(hostleaks, "bridge_addresses", lambda: listing)
    mine = Path("/tmp/kukeon-test-node/state")
    aliases = {"k-ours": owner_alias(mine), "k-theirs": owner_alias(Path("/tmp/play/state"))}
    monkeypatch.setattr(hostleaks, "bridge_alias", lambda name: aliases.get(name, ""))
    assert hostleaks.bridges() == set()
    hostleaks.LEDGER.pools[pool] = set()
    hostleaks.own_state_dir(mine)
    assert hostleaks.bridges() == {"k-ours (10.160.0.1)", "k-untagged (10.160.2.1)"}


def test_forward_accepts_are_this_sessions_when_their_bridge_was_noted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A FORWARD accept outlives its bridge: it is this session's by the bridge's name, noted
    when a kukeond of this process made it or when the bridge was seen as this session's;
    the quickstart's and another run's are not."""
    monkeypatch.setattr(hostleaks, "LEDGER", hostleaks.Ledger())
    monkeypatch.setattr(sessions, "note", lambda kind, **fields: None)
    listing = "\n".join(
        [
            "-P FORWARD ACCEPT",
            *(
                f'-A FORWARD -i {bridge} -m comment --comment "kukeon {bridge}" -j ACCEPT'
                for bridge in ("k-r7s1-emgjhfur", "kk-hello-web", "k-u2we-mkn23zfi", "k-seen")
            ),
        ]
    )
    monkeypatch.setattr(hostleaks, "forward_listing", lambda: listing)
    assert hostleaks.forward_accepts() == set()
    hostleaks.own_forward_bridge("k-r7s1-emgjhfur")
    assert hostleaks.forward_accepts() == {"kukeon k-r7s1-emgjhfur"}

    # A kukeond run as a process of its own: its bridge, seen at a look, is this session's.
    monkeypatch.setattr(hostleaks, "bridges", lambda: {"k-seen (10.160.0.1)"})
    for name in ("nft_tables", "cgroup_roots", "netns_files", "mounts"):
        monkeypatch.setattr(hostleaks, name, set)
    assert hostleaks.HostObjects.now().by_kind["iptables FORWARD accept"] == {
        "kukeon k-r7s1-emgjhfur",
        "kukeon k-seen",
    }


async def test_an_in_process_kukeonds_forward_accepts_are_noted_before_they_are_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hostleaks, "LEDGER", hostleaks.Ledger())
    monkeypatch.setattr(sessions, "note", lambda kind, **fields: None)
    hostleaks.note_forward_accepts(monkeypatch)
    # `true` answers every `-C` with "already there": nothing is made, the bridge is noted.
    assert await ForwardAccepts(iptables="true").allow("k-r7s1-emgjhfur") is False
    assert hostleaks.LEDGER.forward_bridges == {"k-r7s1-emgjhfur"}
