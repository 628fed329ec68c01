"""The space controller: a cgroup subtree, a CNI bridge network and an egress policy per space.

The conflist goes to the space's `cniConfigPath` directory (the daemon's CNI conf dir when
unset); the bridge itself appears with the first cell (the CNI bridge plugin creates it).
Egress rules are re-applied on every reconcile, so a spec change, or a rule removed by
hand, converges on the next pass. Finalize waits for the space's stacks to be gone.
"""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path

from kukeon.api import Kind, Space, SpaceNetworkStatus, SpaceSpec, SpaceState
from kukeon.framework import HandlerContext
from kukeon.runtime.cgroups import CgroupPath
from kukeon.runtime.network import EgressPolicy, EgressRule
from kukeon.runtime.network.space import space_conflist_path

from .cellfiles import remove_scope_files
from .hierarchy import ready_parent, require_no_children
from .host import Host
from .reporting import report


def egress_policy(spec: SpaceSpec) -> EgressPolicy:
    """The space's egress as the nftables adapter takes it (no policy: allow everything)."""
    egress = spec.network.egress if spec.network is not None else None
    if egress is None:
        return EgressPolicy(default="allow")
    rules = tuple(
        EgressRule(
            cidr=ip_network(rule.cidr, strict=False) if rule.cidr is not None else None,
            host=rule.host,
            ports=tuple(rule.ports),
        )
        for rule in egress.allow
    )
    return EgressPolicy(default="deny" if egress.default == "deny" else "allow", rules=rules)


def conflist_file(space: Space, *, default_dir: Path) -> Path:
    directory = Path(space.spec.cni_config_path) if space.spec.cni_config_path else default_dir
    return space_conflist_path(
        conf_dir=directory, realm=space.spec.realm_id, space=space.metadata.name
    )


class SpaceController:
    def __init__(self, *, host: Host) -> None:
        self.host = host

    async def reconcile(self, space: Space, ctx: HandlerContext) -> None:
        await ready_parent(ctx, space, delay=self.host.settings.parent_wait_seconds)
        realm, name = space.spec.realm_id, space.metadata.name
        if space.status.state in (SpaceState.PENDING, SpaceState.FAILED, SpaceState.UNKNOWN):
            space = await report(ctx, space, observe=False, state=SpaceState.CREATING)
        cgroup = await self.host.cgroups.ensure(CgroupPath((realm, name)))
        network = await self.host.networks.ensure_space_network(
            realm=realm,
            space=name,
            cni_config_path=conflist_file(space, default_dir=self.host.settings.cni_conf_dir),
            egress=egress_policy(space.spec),
        )
        await report(
            ctx,
            space,
            state=SpaceState.READY,
            reason=None,
            message=None,
            cgroup_ready=True,
            cgroup_path=cgroup.path,
            subtree_controllers=list(cgroup.subtree_controllers),
            network=SpaceNetworkStatus(
                bridge_name=network.bridge_name,
                subnet=str(network.subnet),
                gateway=str(network.gateway),
                cni_config_file=str(network.cni_config_path),
            ),
        )

    async def finalize(self, space: Space, ctx: HandlerContext) -> None:
        realm, name = space.spec.realm_id, space.metadata.name
        await require_no_children(
            ctx,
            child_kind=Kind.STACK,
            scope=(realm, name),
            delay=self.host.settings.parent_wait_seconds,
        )
        if space.status.state != SpaceState.DELETING:
            space = await report(ctx, space, observe=False, state=SpaceState.DELETING)
        await self.host.networks.remove_space_network(
            realm=realm,
            space=name,
            cni_config_path=conflist_file(space, default_dir=self.host.settings.cni_conf_dir),
        )
        await self.host.cgroups.remove(CgroupPath((realm, name)))
        await remove_scope_files(self.host.settings.state_dir, (realm, name))
