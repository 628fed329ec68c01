"""The stack controller: a cgroup subtree grouping related cells."""

from __future__ import annotations

from kukeon.api import Kind, Stack, StackState
from kukeon.framework import HandlerContext
from kukeon.runtime.cgroups import CgroupPath

from .cellfiles import remove_scope_files
from .hierarchy import ready_parent, require_no_children
from .host import Host
from .reporting import report


class StackController:
    def __init__(self, *, host: Host) -> None:
        self.host = host

    async def reconcile(self, stack: Stack, ctx: HandlerContext) -> None:
        await ready_parent(ctx, stack, delay=self.host.settings.parent_wait_seconds)
        path = (stack.spec.realm_id, stack.spec.space_id, stack.metadata.name)
        cgroup = await self.host.cgroups.ensure(CgroupPath(path))
        await report(
            ctx,
            stack,
            state=StackState.READY,
            reason=None,
            message=None,
            cgroup_ready=True,
            cgroup_path=cgroup.path,
            subtree_controllers=list(cgroup.subtree_controllers),
        )

    async def finalize(self, stack: Stack, ctx: HandlerContext) -> None:
        path = (stack.spec.realm_id, stack.spec.space_id, stack.metadata.name)
        await require_no_children(
            ctx, child_kind=Kind.CELL, scope=path, delay=self.host.settings.parent_wait_seconds
        )
        await self.host.cgroups.remove(CgroupPath(path))
        await remove_scope_files(self.host.settings.state_dir, path)
