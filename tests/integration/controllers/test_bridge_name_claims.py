"""A realm's editor cannot put a space of theirs on another realm's bridge.

A space's bridge is named ``k-<prefix>-<hash>``: 4 readable characters and 40 bits of a
SHA-256 of (realm, space) (``runtime.network.bridge``). 40 bits are a preimage an
attacker computes offline (about 10^12 hashes: minutes on one GPU) for a space of another
realm whose realm shares the first two characters of theirs. Before kukeond checked, the
editor's space with that bridge name was given the same bridge: its cells were ports on
the other realm's bridge (one L2 segment with its cells), its conflist and egress chain
replaced the other space's, and its deletion removed the other space's conflist.

Here the two names are found by a birthday search (about 2^21 hashes) instead, for the
kukeond's own instance tag. A real kukeond over TLS: the victim realm is an admin's, the
attacker the test realm's editor.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Callable
from typing import Any

import pytest

from kukeon.api import AnyResource, Kind, Space
from kukeon.runtime.containerd import ContainerdClient, realm_namespace
from kukeon.runtime.network import bridge_name
from kukeon.runtime.network.bridge import bridge_ports
from kukeon.runtime.network.space import space_conflist_path
from tests.fixtures.collisions import colliding_pair
from tests.fixtures.containerd import clean_namespace
from tests.fixtures.kukeond import Kukeond, delete_realm_in_teardown, sweep_host
from tests.fixtures.tlskukeond import TlsKukeond, tls_kukeond  # noqa: F401 - the fixture
from tests.integration.controllers.helpers import cell_doc, container

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"


def _hash40(realm: str, instance: str) -> Callable[[str], int]:
    """The 40 bits of the hashed bridge names of ``realm``'s spaces, as
    ``bridge._pair_hash`` computes them (the pair found is checked with ``bridge_name``)."""
    encoded = realm.encode()
    head = hashlib.sha256(str(len(encoded)).encode() + b":" + encoded)
    suffix = b"@" + instance.encode() if instance else b""

    def of(space: str) -> int:
        digest = head.copy()
        digest.update(space.encode() + suffix)
        return int.from_bytes(digest.digest()[:5])

    return of


def colliding_spaces(victim: str, attacker: str, instance: str) -> tuple[str, str]:
    """A space of ``victim`` and one of ``attacker`` (realms with the same two first
    characters) whose bridge names are the same."""
    hashes = (_hash40(victim, instance), _hash40(attacker, instance))
    own, evil = colliding_pair(lambda x: hashes[x & 1](f"sp{x:010x}"))
    return f"sp{own:010x}", f"sp{evil:010x}"


def _settled_on(space: AnyResource, node: str) -> bool:
    """Whether the space is Ready on ``node`` or says why not."""
    entry = space.status.nodes.get(node) if isinstance(space, Space) else None
    return entry is not None and (entry.reason is not None or entry.ready_at is not None)


async def _cell_ready(k: Kukeond, key: tuple[str, str, str, str]) -> None:
    await k.wait_for(Kind.CELL, key, state="Ready", within=60)


def _doc(kind: str, name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


async def test_a_space_whose_bridge_another_realms_space_holds_gets_none(
    tls_kukeond: TlsKukeond,  # noqa: F811 - the fixture imported above
) -> None:
    node = tls_kukeond
    k = node.k
    instance = k.config.instance
    victim = dataclasses.replace(k, realm=f"{k.realm[:2]}v{k.realm[2:]}")
    assert victim.realm[:2] == k.realm[:2]
    own_space, evil_space = await asyncio.to_thread(
        colliding_spaces, victim.realm, k.realm, instance
    )
    bridge = bridge_name(victim.realm, own_space, instance)
    assert bridge_name(k.realm, evil_space, instance) == bridge, "the search found no pair"
    conflist = space_conflist_path(
        conf_dir=k.config.cni_conf_dir, realm=victim.realm, space=own_space, instance=instance
    )
    controllers = k.daemon.controllers
    assert controllers is not None
    try:
        # The admin's realm: a space, a stack and a running cell, on its bridge.
        await victim.apply(_doc("Realm", victim.realm))
        await victim.apply(_doc("Space", own_space, realmId=victim.realm))
        await victim.apply(_doc("Stack", "st", realmId=victim.realm, spaceId=own_space))
        await controllers.images.import_archive(namespace=victim.namespace, path=k.image.archive)
        await victim.apply(
            cell_doc(victim, "v1", [container(victim, "app")], space=own_space, stack="st")
        )
        await _cell_ready(victim, (victim.realm, own_space, "st", "v1"))
        ports_before = await bridge_ports(bridge)
        assert ports_before, f"the victim's cell has no port on {bridge}"
        conflist_before = conflist.read_bytes()

        # The editor's space with the same bridge name, a stack and a cell in it.
        await k.apply(_doc("Realm", k.realm))
        await controllers.images.import_archive(namespace=k.namespace, path=k.image.archive)
        spaces = f"{V}/realms/{k.realm}/spaces"
        stacks = f"{spaces}/{evil_space}/stacks"
        cells = f"{stacks}/st/cells"
        evil_cell = cell_doc(k, "e1", [container(k, "app")], space=evil_space, stack="st")
        async with node.session("editor") as editor:
            for url, document in (
                (spaces, _doc("Space", evil_space, realmId=k.realm)),
                (stacks, _doc("Stack", "st", realmId=k.realm, spaceId=evil_space)),
                (cells, {"apiVersion": "kukeon.io/v1beta1", **evil_cell}),
            ):
                async with editor.post(url, json=document) as response:
                    assert response.status == 201, await response.text()

            refused = await k.wait_for(
                Kind.SPACE,
                (k.realm, evil_space),
                until=lambda s: _settled_on(s, k.config.node_name),
            )
            assert isinstance(refused, Space)
            entry = refused.status.nodes[k.config.node_name]
            assert entry.reason == "BridgeNameTaken", entry
            assert bridge in (entry.message or ""), entry.message
            assert victim.realm not in (entry.message or ""), "another realm's name was shown"
            assert await bridge_ports(bridge) == ports_before, "a port joined the other bridge"
            assert conflist.read_bytes() == conflist_before, "the other space's conflist changed"
            evil = await k.registry.get(Kind.CELL, (k.realm, evil_space, "st", "e1"))
            assert str(evil.status.state) != "Ready", evil.status

            # Its deletion leaves the other space's network as it was.
            async with editor.delete(f"{spaces}/{evil_space}?cascade=true") as response:
                assert response.status in (200, 202), await response.text()
        await k.wait_gone(Kind.SPACE, (k.realm, evil_space), within=60)
        assert conflist.is_file(), "the other space's conflist went with this space"
        assert conflist.read_bytes() == conflist_before
        assert await bridge_ports(bridge) == ports_before
        await _cell_ready(victim, (victim.realm, own_space, "st", "v1"))
    finally:
        await delete_realm_in_teardown(victim)
        client = ContainerdClient(k.config.containerd_address.as_posix())
        try:
            await clean_namespace(client, realm_namespace(victim.realm, instance))
        finally:
            await client.close()
        await sweep_host(k.config, realm=victim.realm, spaces=[own_space])
