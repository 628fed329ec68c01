"""Two fields whose effect is a name the workload or the operator sees: a container's
`networksAliases` (in the cell's /etc/hosts, with the cell's address) and a realm's
`spec.namespace` (the containerd namespace its containers live in)."""

from __future__ import annotations

import contextlib
import secrets

import pytest

from kukeon.api import Cell, Kind
from kukeon.runtime.containerd import ContainerdClient
from kukeon.runtime.network.resolvconf import HOST_RESOLV_CONF, host_resolv_conf
from tests.fixtures.containerd import clean_namespace
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, container, exec_in

pytestmark = pytest.mark.integration


async def test_network_aliases_resolve_to_the_cell_inside_it(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    await k.apply(
        cell_doc(
            k,
            "aliased",
            [
                container(k, "a", networksAliases=["db", "db.internal"]),
                container(k, "b", networksAliases=["cache"]),
            ],
        )
    )
    cell = await k.wait_for(Kind.CELL, cell_key(k, "aliased"), state="Ready")
    assert isinstance(cell, Cell)
    ip = cell.status.network.ip
    assert ip
    code, hosts = await exec_in(k, "s1_st1_aliased_b", "cat", "/etc/hosts")
    assert code == 0, hosts
    line = next(line for line in hosts.splitlines() if line.split() and line.split()[0] == ip)
    assert {"aliased", "db", "db.internal", "cache"} <= set(line.split()[1:])


async def test_a_cell_resolves_names_through_the_hosts_resolvers(kukeond: Kukeond) -> None:
    """/etc/resolv.conf: the host's resolvers a cell's namespace reaches (none was mounted:
    no name resolved in a cell whose image has no resolv.conf, as the test image); on the
    host's network, the host's own file."""
    k = kukeond
    await k.hierarchy()
    await k.apply(cell_doc(k, "dns", [container(k, "a")]))
    await k.apply(cell_doc(k, "hostdns", [container(k, "h", hostNetwork=True)]))
    for name in ("dns", "hostdns"):
        await k.wait_for(Kind.CELL, cell_key(k, name), state="Ready")
    code, inside = await exec_in(k, "s1_st1_dns_a", "cat", "/etc/resolv.conf")
    assert code == 0, inside
    assert inside == host_resolv_conf()
    assert not [s for s in inside.splitlines() if s.startswith("nameserver 127.")]
    code, on_host = await exec_in(k, "s1_st1_hostdns_h", "cat", "/etc/resolv.conf")
    assert code == 0, on_host
    assert on_host == HOST_RESOLV_CONF.read_text()


async def test_a_realm_namespace_is_where_its_containers_live(kukeond: Kukeond) -> None:
    k = kukeond
    namespace = f"kt-own-{secrets.token_hex(3)}"
    client = ContainerdClient(str(k.config.containerd_address))
    try:
        await k.apply(
            {"kind": "Realm", "metadata": {"name": k.realm}, "spec": {"namespace": namespace}}
        )
        await k.apply({"kind": "Space", "metadata": {"name": "s1"}, "spec": {"realmId": k.realm}})
        await k.apply(
            {
                "kind": "Stack",
                "metadata": {"name": "st1"},
                "spec": {"realmId": k.realm, "spaceId": "s1"},
            }
        )
        await k.wait_for(Kind.STACK, (k.realm, "s1", "st1"), state="Ready")
        assert k.namespace != namespace
        controllers = k.daemon.controllers
        assert controllers is not None
        await controllers.images.import_archive(namespace=namespace, path=k.image.archive)
        await k.apply(cell_doc(k, "placed", [container(k, "a")]))
        await k.wait_for(Kind.CELL, cell_key(k, "placed"), state="Ready")
        ids = {c.id for c in await client.containers(namespace).list()}
        assert "s1_st1_placed_a" in ids
        assert "s1_st1_placed_a" not in {c.id for c in await client.containers(k.namespace).list()}
    finally:
        with contextlib.suppress(Exception):
            await k.registry.delete(Kind.REALM, (k.realm,), cascade=True)
            await k.wait_gone(Kind.REALM, (k.realm,), within=60)
        with contextlib.suppress(Exception):
            await clean_namespace(client, namespace)
        await client.close()
