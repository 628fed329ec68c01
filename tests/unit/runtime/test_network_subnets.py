"""Subnet allocation: the pure allocator and the JSON-file store."""

from __future__ import annotations

import asyncio
import json
from ipaddress import IPv4Network
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kukeon.runtime.network import (
    BridgeNameTakenError,
    JsonFileSubnetStore,
    SubnetPoolExhaustedError,
    allocate_subnet,
)
from kukeon.runtime.network.subnets import SubnetStoreCorruptError, host_networks, space_key

POOL = IPv4Network("10.88.0.0/16")


def test_first_free_block() -> None:
    assert allocate_subnet(POOL, 24, set()) == IPv4Network("10.88.0.0/24")
    taken = {IPv4Network("10.88.0.0/24"), IPv4Network("10.88.2.0/24")}
    assert allocate_subnet(POOL, 24, taken) == IPv4Network("10.88.1.0/24")


def test_blocks_of_other_sizes_and_outside_networks_count() -> None:
    taken = {IPv4Network("10.88.0.0/23"), IPv4Network("192.168.0.0/24")}
    assert allocate_subnet(POOL, 24, taken) == IPv4Network("10.88.2.0/24")


def test_a_covering_network_exhausts_the_pool() -> None:
    with pytest.raises(SubnetPoolExhaustedError, match=r"10\.88\.0\.0/16 has no free /24"):
        allocate_subnet(POOL, 24, {IPv4Network("10.0.0.0/8")})


def test_exhaustion() -> None:
    pool = IPv4Network("10.9.0.0/23")
    taken = {allocate_subnet(pool, 24, set())}
    taken.add(allocate_subnet(pool, 24, taken))
    with pytest.raises(SubnetPoolExhaustedError):
        allocate_subnet(pool, 24, taken)


@pytest.mark.parametrize("prefix", [15, 31, 32])
def test_prefix_outside_range_is_refused(prefix: int) -> None:
    with pytest.raises(ValueError, match="prefix"):
        allocate_subnet(POOL, prefix, set())


@given(st.sets(st.integers(min_value=0, max_value=255), max_size=200))
def test_never_overlaps_what_is_taken(indexes: set[int]) -> None:
    taken = {IPv4Network(f"10.88.{i}.0/24") for i in indexes}
    if len(taken) == 256:
        return
    chosen = allocate_subnet(POOL, 24, taken)
    assert chosen.subnet_of(POOL)
    assert not any(chosen.overlaps(t) for t in taken)


async def test_store_keeps_assignments_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "subnets.json"
    store = JsonFileSubnetStore(path=path, in_use=None)
    first = await store.assign(space_key("r", "a"), pool=POOL, prefix=24)
    second = await store.assign(space_key("r", "b"), pool=POOL, prefix=24)
    assert first != second
    assert await store.assign(space_key("r", "a"), pool=POOL, prefix=24) == first

    restarted = JsonFileSubnetStore(path=path, in_use=None)
    assert await restarted.lookup("r/a") == first
    assert await restarted.assignments() == {"r/a": first, "r/b": second}
    # A new pool in the configuration does not move existing spaces.
    other_pool = IPv4Network("10.99.0.0/16")
    assert await restarted.assign("r/a", pool=other_pool, prefix=24) == first
    assert (await restarted.assign("r/c", pool=other_pool, prefix=24)).subnet_of(other_pool)
    assert json.loads(path.read_text())["subnets"]["r/a"] == str(first)


async def test_release_frees_the_subnet_for_reuse(tmp_path: Path) -> None:
    store = JsonFileSubnetStore(path=tmp_path / "s.json", in_use=None)
    first = await store.assign("r/a", pool=POOL, prefix=24)
    assert await store.release("r/a")
    assert not await store.release("r/a")
    assert await store.lookup("r/a") is None
    assert await store.assign("r/b", pool=POOL, prefix=24) == first


async def test_concurrent_assignments_never_share(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    # Separate store objects stand in for separate processes sharing the file.
    stores = [JsonFileSubnetStore(path=path, in_use=None) for _ in range(4)]
    subnets = await asyncio.gather(
        *(stores[i % 4].assign(f"r/s{i}", pool=POOL, prefix=24) for i in range(40))
    )
    assert len(set(subnets)) == 40
    assert len(await stores[0].assignments()) == 40


async def test_corrupt_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    path.write_text("{not json")
    with pytest.raises(SubnetStoreCorruptError, match=str(path)):
        await JsonFileSubnetStore(path=path, in_use=None).assign("r/a", pool=POOL, prefix=24)


async def test_a_new_subnet_avoids_what_the_host_routes(tmp_path: Path) -> None:
    routed = [IPv4Network("10.88.0.0/23"), IPv4Network("10.88.3.7/32")]
    store = JsonFileSubnetStore(path=tmp_path / "s.json", in_use=lambda _key: routed)
    assert await store.assign("r/a", pool=POOL, prefix=24) == IPv4Network("10.88.2.0/24")
    assert await store.assign("r/b", pool=POOL, prefix=24) == IPv4Network("10.88.4.0/24")
    # A space keeps its subnet though its own bridge now routes it.
    routed.append(IPv4Network("10.88.2.0/24"))
    assert await store.assign("r/a", pool=POOL, prefix=24) == IPv4Network("10.88.2.0/24")


def test_host_networks_lists_this_hosts_routes_and_addresses() -> None:
    found = host_networks()
    assert IPv4Network("127.0.0.0/8") in found
    assert all(net.prefixlen >= 8 for net in found)


async def test_a_bridge_name_is_the_first_spaces_that_holds_it(tmp_path: Path) -> None:
    """Two spaces whose bridge names collide (40 bits of a hash: a tenant can make one):
    the second gets no subnet while the first holds its own; the error does not name the
    first (another realm's, perhaps); the first keeps its subnet; after its release the
    second gets one."""
    bridges = {"victim/web": "k-viwe-aaaaaaaa", "evil/web2": "k-viwe-aaaaaaaa", "evil/x": "k-b"}
    store = JsonFileSubnetStore(
        path=tmp_path / "s.json", in_use=None, bridge_of=bridges.__getitem__
    )
    first = await store.assign("victim/web", pool=POOL, prefix=24)
    with pytest.raises(BridgeNameTakenError) as refused:
        await store.assign("evil/web2", pool=POOL, prefix=24)
    assert refused.value.reason == "BridgeNameTaken"
    assert refused.value.holder == "victim/web"
    assert "k-viwe-aaaaaaaa" in str(refused.value)
    assert "victim" not in str(refused.value)
    assert await store.assignments() == {"victim/web": first}
    assert await store.assign("victim/web", pool=POOL, prefix=24) == first
    assert await store.assign("evil/x", pool=POOL, prefix=24) != first
    assert await store.release("victim/web")
    assert await store.assign("evil/web2", pool=POOL, prefix=24) == first
