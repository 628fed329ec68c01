"""The realm controller: a containerd namespace and a cgroup subtree per realm.

Reconcile creates (or re-labels) the namespace `spec.namespace` and the realm's cgroup,
then reports Ready with the cgroup path and what was delegated. Finalize waits for the
realm's spaces to be gone, empties the namespace (images, snapshots, content, leases),
deletes it, and removes the cgroup.
"""

from __future__ import annotations

from kukeon.api import Kind, Realm, RealmState
from kukeon.framework import HandlerContext
from kukeon.runtime.cgroups import CgroupPath
from kukeon.runtime.containerd.containers import LABEL_MANAGED, LABEL_REALM

from .cellfiles import remove_scope_files
from .hierarchy import require_no_children
from .host import Host
from .reporting import report


class RealmController:
    def __init__(self, *, host: Host) -> None:
        self.host = host

    async def reconcile(self, realm: Realm, ctx: HandlerContext) -> None:
        name = realm.metadata.name
        namespace = realm.spec.namespace or f"{name}.kukeon.io"
        if realm.status.state in (RealmState.PENDING, RealmState.FAILED, RealmState.UNKNOWN):
            realm = await report(
                ctx, realm, observe=False, state=RealmState.CREATING, reason=None, message=None
            )
        await self.host.containerd.namespaces.ensure(
            namespace, labels={LABEL_MANAGED: "true", LABEL_REALM: name}
        )
        cgroup = await self.host.cgroups.ensure(CgroupPath((name,)))
        await report(
            ctx,
            realm,
            state=RealmState.READY,
            reason=None,
            message=None,
            containerd_namespace_ready=True,
            cgroup_ready=True,
            cgroup_path=cgroup.path,
            subtree_controllers=list(cgroup.subtree_controllers),
        )

    async def finalize(self, realm: Realm, ctx: HandlerContext) -> None:
        name = realm.metadata.name
        await require_no_children(
            ctx,
            child_kind=Kind.SPACE,
            scope=(name,),
            delay=self.host.settings.parent_wait_seconds,
        )
        if realm.status.state != RealmState.DELETING:
            realm = await report(ctx, realm, state=RealmState.DELETING, observe=False)
        namespace = realm.spec.namespace or f"{name}.kukeon.io"
        # Images, their unpacked snapshots, blobs and leases all block the namespace's removal.
        await self.host.containerd.namespaces.purge(namespace)
        await self.host.cgroups.remove(CgroupPath((name,)))
        await remove_scope_files(self.host.settings.state_dir, (name,))
