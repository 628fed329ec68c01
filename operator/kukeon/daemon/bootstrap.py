"""The `default` realm, space and stack that make `kukectl run` work on a fresh host.

Created once at kukeond's start when missing (an existing one is left exactly as the user
made it), so bootstrapping is idempotent and safe to race between several kukeond sharing
one etcd: whoever loses a create sees AlreadyExists and moves on. A full etcd (its
NOSPACE alarm raised) refuses the creates: the start goes on without them, said in a
warning, and the next start creates them.
"""

from __future__ import annotations

import logging
from typing import Any

from kukeon.api import DEFAULT_PARENT, AnyResource, Kind, key_of, parse_resource
from kukeon.store import AlreadyExists, NotFound, Registry, SpaceExceeded

log = logging.getLogger(__name__)


def default_resources() -> list[AnyResource]:
    """The default realm, space and stack, parents first."""
    name = DEFAULT_PARENT
    documents: list[dict[str, Any]] = [
        {"kind": "Realm", "metadata": {"name": name}, "spec": {}},
        {"kind": "Space", "metadata": {"name": name}, "spec": {"realmId": name}},
        {"kind": "Stack", "metadata": {"name": name}, "spec": {"realmId": name, "spaceId": name}},
    ]
    return [parse_resource({"apiVersion": "kukeon.io/v1beta1", **doc}) for doc in documents]


async def ensure_defaults(registry: Registry) -> list[str]:
    """Create what is missing; returns the labels of what this call created."""
    created: list[str] = []
    for resource in default_resources():
        kind = Kind(resource.kind)
        label = f"{kind.value.lower()}/{'/'.join(key_of(resource))}"
        try:
            await registry.get(kind, key_of(resource))
            continue
        except NotFound:
            pass
        try:
            await registry.create(resource)
        except AlreadyExists:
            continue
        except SpaceExceeded as error:  # kukeond still serves reads and deletes
            log.warning("bootstrap: %s not created, the next start creates it: %s", label, error)
            continue
        created.append(label)
        log.info("bootstrap created %s", label)
    return created
