"""The stack controller: a cgroup subtree grouping related cells, on the nodes that run them."""

from __future__ import annotations

from typing import ClassVar

from kukeon.api import Kind, NodeLayerState, NodeLayerStatus, Stack
from kukeon.framework import HandlerContext
from kukeon.runtime.cgroups import CgroupPath

from .cellfiles import remove_scope_files
from .layers import LayerController


def stack_path(stack: Stack) -> tuple[str, str, str]:
    return (stack.spec.realm_id, stack.spec.space_id, stack.metadata.name)


class StackController(LayerController[Stack]):
    kind: ClassVar[Kind] = Kind.STACK

    async def materialise(self, obj: Stack, ctx: HandlerContext) -> NodeLayerStatus:
        cgroup = await self.host.cgroups.ensure(CgroupPath(stack_path(obj)))
        return NodeLayerStatus(
            state=NodeLayerState.READY,
            cgroup_path=cgroup.path,
            subtree_controllers=list(cgroup.subtree_controllers),
        )

    async def dematerialise(self, obj: Stack, ctx: HandlerContext, *, deleting: bool) -> None:
        path = stack_path(obj)
        await self.host.cgroups.remove(CgroupPath(path))
        await remove_scope_files(self.host.settings.state_dir, path)
