"""The space controller: a cgroup subtree, a CNI bridge network and an egress policy per space.

A node materialises a space while it runs cells in it (``layers.LayerController``); its
subnet comes from the node's own pool, so no two spaces of one node collide, and is
reported in the node's entry of ``status.nodes``. The conflist goes to the space's
`cniConfigPath` directory (the daemon's CNI conf dir when unset); the bridge itself
appears with the first cell (the CNI bridge plugin creates it). Egress rules are
re-applied on every reconcile, so a spec change, or a rule removed by hand, converges on
the next pass. Deletion waits for the space's stacks to be gone; the node's teardown then
removes the ports its own cells left on the bridge and waits, finalizer held and the port
named in its entry (``ForeignPortOnBridge``), while a port kukeon did not make is on it.
The node notes the conflist's path in the space's state directory (``conflist_note``), so
its orphan collector finds it even in a custom ``cniConfigPath`` after the document is gone.
"""

from __future__ import annotations

import asyncio
from ipaddress import ip_network
from pathlib import Path
from typing import ClassVar

from kukeon.api import (
    Cell,
    Kind,
    NodeLayerState,
    NodeLayerStatus,
    Space,
    SpaceNodeStatus,
    SpaceSpec,
    key_of,
)
from kukeon.framework import HandlerContext, WaitingError
from kukeon.runtime.cgroups import CgroupPath
from kukeon.runtime.hostfiles import write_private_text
from kukeon.runtime.network import (
    BridgeInUseError,
    EgressRule,
    EgressRuleset,
    bridge_name,
    network_id_prefix,
)
from kukeon.runtime.network.space import space_conflist_path

from .cellfiles import remove_scope_files
from .layers import LayerController


def egress_policy(spec: SpaceSpec) -> EgressRuleset:
    """The space's egress as the nftables adapter takes it (no policy: allow everything)."""
    egress = spec.network.egress if spec.network is not None else None
    if egress is None:
        return EgressRuleset(default="allow")
    rules = tuple(
        EgressRule(
            cidr=ip_network(rule.cidr, strict=False) if rule.cidr is not None else None,
            host=rule.host,
            ports=tuple(rule.ports),
        )
        for rule in egress.allow
    )
    return EgressRuleset(default="deny" if egress.default == "deny" else "allow", rules=rules)


CONFLIST_NOTE = ".cni-config-path"


def conflist_note(state_dir: Path, realm: str, space: str) -> Path:
    """Where this node notes the conflist it wrote for a space.

    The note sits in the space's directory under ``<state-dir>/cells``, which goes with the
    space's files at its teardown: the orphan collector reads it to find a conflist in a
    custom ``cniConfigPath`` once the space's document is gone.
    """
    return state_dir.joinpath("cells", realm, space, CONFLIST_NOTE)


def _write_note(path: Path, text: str) -> None:
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except OSError:
        pass
    write_private_text(path, text)


def conflist_file(space: Space, *, default_dir: Path, instance: str) -> Path:
    directory = Path(space.spec.cni_config_path) if space.spec.cni_config_path else default_dir
    return space_conflist_path(
        conf_dir=directory, realm=space.spec.realm_id, space=space.metadata.name, instance=instance
    )


def builtin_network(space: Space) -> bool:
    """Whether the space's cells are attached by kukeond itself (``runtime.network.
    inprocess``): a space that sets ``cniConfigPath`` keeps the CNI plugins."""
    return space.spec.cni_config_path is None


class SpaceController(LayerController[Space]):
    kind: ClassVar[Kind] = Kind.SPACE

    def _conflist(self, obj: Space) -> Path:
        return conflist_file(
            obj,
            default_dir=self.host.settings.cni_conf_dir,
            instance=self.host.networks.settings.instance,
        )

    async def materialise(self, obj: Space, ctx: HandlerContext) -> NodeLayerStatus:
        realm, name = obj.spec.realm_id, obj.metadata.name
        cgroup = await self.host.cgroups.ensure(CgroupPath((realm, name)))
        network = await self.host.networks.ensure_space_network(
            realm=realm,
            space=name,
            cni_config_path=self._conflist(obj),
            egress=egress_policy(obj.spec),
            builtin=builtin_network(obj),
        )
        note = conflist_note(self.host.settings.state_dir, realm, name)
        await asyncio.to_thread(_write_note, note, str(network.cni_config_path))
        return SpaceNodeStatus(
            state=NodeLayerState.READY,
            cgroup_path=cgroup.path,
            subtree_controllers=list(cgroup.subtree_controllers),
            bridge_name=network.bridge_name,
            subnet=str(network.subnet),
            gateway=str(network.gateway),
            cni_config_file=str(network.cni_config_path),
        )

    async def local_cells(self, obj: Space, ctx: HandlerContext) -> list[tuple[str, ...]]:
        """The space's cells here, and the cells here of other spaces that join its network
        (the membership follower counts those too; "none" is confirmed from etcd)."""
        found = await super().local_cells(obj, ctx)
        if found:
            return found
        realm, name = obj.spec.realm_id, obj.metadata.name
        listed = await ctx.store.list(Kind.CELL, (realm,))
        return [
            key_of(cell)
            for cell in listed.items
            if isinstance(cell, Cell)
            and cell.spec.node_name == ctx.node_name
            and (realm, name) in cell.spec.joined_space_keys()
        ]

    async def _require_no_joined_cells(self, obj: Space) -> None:
        """A cell of another space still on this space's network leaves it first (its
        reconcile deletes the interface and says why), so no interface outlives the
        space's egress chain."""
        networks = self.host.networks
        instance = networks.settings.instance
        bridge = bridge_name(obj.spec.realm_id, obj.metadata.name, instance)
        joined = await networks.joined_cells(bridge)
        if not joined:
            return
        prefix = network_id_prefix(instance)
        for cell_id in joined:
            key = tuple(cell_id.removeprefix(prefix).split("_"))
            if cell_id.startswith(prefix) and len(key) == 4:
                self._wake(Kind.CELL, key)
        raise WaitingError(
            f"waiting for {len(joined)} cell(s) of other spaces to leave its network on this "
            f"node: {', '.join(joined[:5])}",
            delay=self.wait,
            reason="CellsOnNetwork",
        )

    async def dematerialise(self, obj: Space, ctx: HandlerContext, *, deleting: bool) -> None:
        realm, name = obj.spec.realm_id, obj.metadata.name
        await self._require_no_joined_cells(obj)
        try:
            await self.host.networks.remove_space_network(
                realm=realm, space=name, cni_config_path=self._conflist(obj)
            )
        except BridgeInUseError as error:
            # The finalizer holds: released, the space's bridge would stay for good.
            raise WaitingError(
                f"node {ctx.node_name}: {error}", delay=self.wait, reason="ForeignPortOnBridge"
            ) from error
        await self.host.cgroups.remove(CgroupPath((realm, name)))
        await remove_scope_files(self.host.settings.state_dir, (realm, name))
