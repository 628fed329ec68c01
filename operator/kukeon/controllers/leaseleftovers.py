"""The containerd leases of a kukeond that died, released at the next start.

An image import or pull, and a container's creation, hold a lease from their first blob or
snapshot until the image or container references them (``runtime/containerd/leases``). A
kukeond killed in between (``kill -9``, the OOM killer) leaves the lease, which pins
what the work had written until it expires an hour later: the blobs and unpacked layers of
an image, also once the image is removed. Each lease names the process that took it; at
start every lease of this installation's namespaces whose holder no longer runs is
released, with a collection run, so that goes at once. Leases of live processes (another
client of the same containerd) and leases without a holder are left to their expiry.
"""

from __future__ import annotations

import logging

from kukeon.runtime.containerd.containers import LABEL_MANAGED
from kukeon.runtime.containerd.errors import ContainerdError
from kukeon.runtime.containerd.namespaces import is_own

from .host import Host

log = logging.getLogger(__name__)


async def release_abandoned_leases(host: Host) -> None:
    """Release the leases of this installation's namespaces whose holder is gone, and say
    which; a failure is a warning (the leases still expire)."""
    released: list[str] = []
    try:
        for namespace in await host.containerd.namespaces.list():
            if namespace.labels.get(LABEL_MANAGED) != "true" or not is_own(
                namespace.labels, host.instance
            ):
                continue
            leases = await host.containerd.leases(namespace.name).release_abandoned()
            released.extend(f"{namespace.name}/{lease}" for lease in leases)
    except ContainerdError as error:
        log.warning("releasing the leases of an earlier kukeond failed: %s", error)
    if released:
        log.warning(
            "released %d containerd lease(s) an earlier kukeond left (what they kept is "
            "collected): %s",
            len(released),
            ", ".join(released),
        )
