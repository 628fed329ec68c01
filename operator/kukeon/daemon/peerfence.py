"""Asking the other nodes whether they reach etcd, before this node fences (``fencing``).

```
GET /apis/kukeon.io/v1beta1/nodes/{node}/etcdreach
    {"kind": "NodeEtcdReach", "apiVersion": ..., "node": "n2", "etcdReachable": false}
```

Served by node ``{node}`` itself (any other name: 404, as a node's ``stats``), to the fleet
token (role ``node``) and admins only (403 otherwise): what the other nodes ask with when
they forward. It answers one boolean: whether etcd answers this node now, found by the
store's own probe (``StoreHealth.reachable``: a linearizable count-only read of one key,
one at a time however many ask, bounded by ``PROBE_TIMEOUT_SECONDS``), nothing of etcd's
content; a body is refused (400).

Whom a node asks is its *view* of the fleet, refreshed every ``nodeHeartbeatSeconds`` while
etcd answers it: the nodes whose heartbeat lease was alive, with the ``apiEndpoint`` of
their Node (none, or a Node that cannot be decoded: that peer cannot answer, so the node
fences). Once cut off from etcd the last view that could be read is the one asked. Each
question is bounded by ``ASK_TIMEOUT``, all asked at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from aiohttp import web

from kukeon.api import API_VERSION, Kind, Node
from kukeon.apiserver.auth import Role
from kukeon.apiserver.handlers import principal_of, route_patterns
from kukeon.apiserver.request import refuse_body
from kukeon.apiserver.status import ApiError
from kukeon.controllers.scheduler import alive_nodes
from kukeon.store import Registry
from kukeon.store.health import (
    PEER_ANSWER_TIMEOUT_SECONDS,
    PEER_ASK_TIMEOUT_SECONDS,
    StoreHealth,
    health_of,
)

from .forwarding import Forwarder, ForwardingError

log = logging.getLogger(__name__)

SUBRESOURCE = "etcdreach"
KIND = "NodeEtcdReach"
ANSWER_TIMEOUT = PEER_ANSWER_TIMEOUT_SECONDS
"""The longest a node takes to answer (its probe's deadline, and a margin)."""
ASK_TIMEOUT = PEER_ASK_TIMEOUT_SECONDS
"""The longest a node waits for a peer's answer: past it, that peer did not answer."""
VIEW_READ_TIMEOUT = 5.0


def etcd_reach_path(node: str) -> str:
    _, node_path = route_patterns(Kind.NODE)
    return f"{node_path}/{SUBRESOURCE}".replace("{node}", node)


class EtcdReachRoute:
    """This node's answer to its peers: whether etcd answers it now."""

    def __init__(self, *, node_name: str, health: StoreHealth | None) -> None:
        self.node_name = node_name
        self.health = health

    def add_routes(self, app: web.Application) -> None:
        _, node_path = route_patterns(Kind.NODE)
        app.router.add_get(f"{node_path}/{SUBRESOURCE}", self.answer)

    async def answer(self, request: web.Request) -> web.StreamResponse:
        principal = principal_of(request)
        if principal.role not in (Role.NODE, Role.ADMIN):
            raise ApiError(
                403,
                f"Forbidden: user {principal.user!r} ({principal.role.value}) may not ask "
                f"{SUBRESOURCE}: the other nodes ask it, with the fleet token (role node)",
            )
        refuse_body(request, "none")
        node = request.match_info["node"]
        if node != self.node_name:
            raise ApiError(404, f"this is node {self.node_name}, not node {node}")
        return web.json_response(
            {
                "kind": KIND,
                "apiVersion": API_VERSION,
                "node": self.node_name,
                "etcdReachable": await self._reachable(),
            }
        )

    async def _reachable(self) -> bool:
        if self.health is None:
            return False  # no etcd client to ask (not a node of an external etcd)
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT):
                return await self.health.reachable()
        except TimeoutError:
            return False


def read_answer(peer: str, status: int, body: bytes) -> bool | None:
    """A peer's answer: whether it reaches etcd; None for anything but its own 200
    ``NodeEtcdReach`` (a refusal, another node at that address, a body of another shape)."""
    if status != 200:
        return None
    try:
        document: Any = json.loads(body)
    except ValueError:
        return None
    if not isinstance(document, dict) or document.get("kind") != KIND:
        return None
    reachable = document.get("etcdReachable")
    if document.get("node") != peer or not isinstance(reachable, bool):
        return None
    return reachable


class PeerCheck:
    """This node's view of its peers, and the question it asks them before it fences."""

    def __init__(
        self, *, registry: Registry, node_name: str, interval: float, in_contact: Callable[[], bool]
    ) -> None:
        self.registry = registry
        self.node_name = node_name
        self.interval = interval
        self.in_contact = in_contact
        """Whether etcd confirms this node's lease: the view is read only then."""
        self.peers: dict[str, str | None] = {}
        """The last view read: peer -> its API endpoint (None: it publishes none)."""
        self.forwarder: Forwarder | None = None
        """Set once the API's forwarding is made (``endpoints``); None: nobody is asked."""

    async def refresh(self) -> None:
        """Read the view: the nodes whose heartbeat lease is alive, and their endpoints."""
        async with asyncio.timeout(VIEW_READ_TIMEOUT):
            nodes = await self.registry.list(Kind.NODE)
            alive = await alive_nodes(self.registry.client, self.registry.key_prefix)
        endpoints = {
            node.metadata.name: node.status.api_endpoint
            for node in nodes.items
            if isinstance(node, Node)
        }
        self.peers = {name: endpoints.get(name) for name in alive if name != self.node_name}

    async def run(self) -> None:
        """Refresh the view every ``interval`` while in contact with etcd; a failed read
        keeps the last one."""
        while True:
            if self.in_contact():
                try:
                    await self.refresh()
                except Exception as error:  # the next one, or the last view, serves
                    log.debug("node %s: reading its peers failed: %r", self.node_name, error)
            await asyncio.sleep(self.interval)

    async def ask(self) -> Mapping[str, bool | None]:
        """Every peer of the view, asked at once: name -> whether it reaches etcd (None:
        no answer within ``ASK_TIMEOUT``, or none that counts)."""
        names = sorted(self.peers)
        answers = await asyncio.gather(*(self._ask(name, self.peers[name]) for name in names))
        return dict(zip(names, answers, strict=True))

    async def _ask(self, peer: str, endpoint: str | None) -> bool | None:
        forwarder = self.forwarder
        if forwarder is None or endpoint is None:
            return None
        try:
            async with asyncio.timeout(ASK_TIMEOUT):
                status, body = await forwarder.get_from_node(peer, endpoint, etcd_reach_path(peer))
        except (ForwardingError, aiohttp.ClientError, TimeoutError, OSError, ValueError) as error:
            log.debug("node %s: peer %s did not answer: %r", self.node_name, peer, error)
            return None
        return read_answer(peer, status, body)


def etcd_reach_route(registry: Registry, node_name: str) -> EtcdReachRoute:
    return EtcdReachRoute(node_name=node_name, health=health_of(registry))
