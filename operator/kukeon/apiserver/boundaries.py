"""What no security level lets a caller below admin do (``admission`` calls these first).

A realm's editor writes documents, kukeond acts on them as root on every node: besides what
a realm's level allows of the host (``admission``), two things would let such a write act
beyond the realm whatever the level, and are refused with a 403 naming the field:

- ``refuse_unlisted_registries``: an image of a registry on the node (loopback, link-local,
  ``0.0.0.0``, ``localhost``) that kukeond's configuration does not list
  (``insecureRegistries``): the node would send GETs under ``/v2/`` to whatever service
  listens there (a blind SSRF against the node). The node refuses that pull too
  (``runtime.containerd.registryaccess``, which also judges names and the node's own
  addresses); this says so before anything is stored.
- ``refuse_cordoned_node``: a cell pinned by ``nodeName`` to a cordoned node (``nodeName``
  bypasses the scheduler, the only reader of the cordon). Admins may, for drain and
  maintenance work; a node not registered is let through (the cell stays Pending,
  ``NodeNotFound``).

Like ``admission``, this module imports only ``kukeon.api`` and the API server's own modules.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kukeon.api import AnyResource, Cell, CellSet, Node, key_of
from kukeon.api.imagefields import containers_naming_images
from kukeon.api.imageref import InvalidReferenceError, parse_reference, registry_refusal
from kukeon.api.meta import Kind, quote
from kukeon.apiserver.auth import Principal
from kukeon.apiserver.protocols import RegistryApi
from kukeon.apiserver.status import ApiError, Cause
from kukeon.client.paths import display_key
from kukeon.store import NotFound

log = logging.getLogger(__name__)


def refuse_unlisted_registries(
    principal: Principal,
    res: AnyResource,
    current: AnyResource | None,
    *,
    listed: Sequence[str],
) -> None:
    """An image, new or changed, from a registry on the node (loopback, link-local,
    unspecified, ``localhost``) that kukeond's configuration does not list is refused
    (403 naming the image): the node would send its GETs to whatever listens there (a
    blind SSRF against the node); kukeond refuses that pull anyway, this says so before
    anything is stored. A name resolving to the node, or one of the node's own
    addresses, is judged where the pull runs (its status says why)."""
    kept = {container.id: container.image for _, container in containers_naming_images(current)}
    causes: list[Cause] = []
    for path, container in containers_naming_images(res):
        if kept.get(container.id) == container.image:
            continue
        try:
            registry = parse_reference(container.image).registry
        except InvalidReferenceError:
            continue  # not a reference: refused by `imagerules` (a profile's `${NAME}`)
        why = registry_refusal(registry, listed)
        if why is not None:
            causes.append(Cause(f"{path}.image", f"registry {why}"))
    if not causes:
        return
    name = display_key(key_of(res))
    log.info(
        "refused %s %s of user %r: unlisted registries on the node (%s)",
        res.kind,
        name,
        principal.user,
        "; ".join(cause.field for cause in causes),
    )
    raise _refused(res, causes)


async def refuse_cordoned_node(
    registry: RegistryApi, principal: Principal, res: AnyResource, current: AnyResource | None
) -> None:
    """A cell (or a set's template) newly pinned by `nodeName` to a cordoned node is
    refused (403 naming the field): `nodeName` bypasses the scheduler, which places
    nothing new on a cordoned node, so a realm's editor would otherwise put work on a
    node drained for maintenance. Only admins may (drain and maintenance work). A node
    not registered is let through: the cell stays Pending (NodeNotFound) until one of
    that name joins. A cell pinned there before the cordon stays writable."""
    node, field = _pinned_node(res)
    if node is None or node == _pinned_node(current)[0]:
        return
    try:
        found = await registry.get(Kind.NODE, (node,))
    except NotFound:
        return
    if not (isinstance(found, Node) and found.spec.unschedulable):
        return
    why = (
        f"node {quote(node)} is cordoned (spec.unschedulable): only an admin may place a "
        "cell on a cordoned node; leave nodeName out for the scheduler to place it, or "
        "name another node"
    )
    name = display_key(key_of(res))
    log.info(
        "refused %s %s of user %r: %s on cordoned node %s",
        res.kind,
        name,
        principal.user,
        field,
        node,
    )
    raise _refused(res, [Cause(field, why)])


def _pinned_node(res: AnyResource | None) -> tuple[str | None, str]:
    """The node a cell, or the cells of a set's template, are pinned to, and its field."""
    if isinstance(res, Cell):
        return res.spec.node_name, "spec.nodeName"
    if isinstance(res, CellSet) and res.spec.template.spec is not None:
        return res.spec.template.spec.node_name, "spec.template.spec.nodeName"
    return None, ""


def _refused(res: AnyResource, causes: Sequence[Cause]) -> ApiError:
    """A 403 naming each cause, for what no security level allows a non-admin."""
    name = display_key(key_of(res))
    return ApiError(
        403,
        f'{res.kind} "{name}" is forbidden: '
        + "; ".join(f"{cause.field}: {cause.message}" for cause in causes),
        reason="Forbidden",
        kind=str(res.kind),
        name=name,
        causes=list(causes),
    )
