"""Leases: what keeps half-built things (fresh blobs, layer snapshots) from containerd's GC.

containerd collects content and snapshots that nothing references. Between writing a blob
and the image that references it, or preparing a snapshot and the container that owns it,
only a lease protects them; every such sequence runs inside :meth:`LeaseService.lease`,
which also sets an expiry so a crashed daemon's lease does not pin garbage forever.

That expiry is an hour (an import of a large image must not lose its blobs under it), so a
kukeond killed in an image import or a pull left what it had written pinned for that hour:
the blobs and the unpacked layers, also after the image was removed (150 MB of a killed
import were still there 25 minutes later). Each lease therefore names its holder
(``LABEL_HOLDER``: the boot, pid and start time of the process that took it), and
:meth:`LeaseService.release_abandoned` releases those whose holder no longer runs: the work
they protected was cut short, so what they pin is garbage. kukeond does it at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final

from kukeon.cancelling import wait_ended
from kukeon.processes import identify
from kukeon.runtime.containerd._gen.services.leases.v1 import leases_pb2
from kukeon.runtime.containerd._util import to_datetime
from kukeon.runtime.containerd.client import Subject
from kukeon.runtime.containerd.errors import ContainerdError, LeaseNotFoundError

if TYPE_CHECKING:
    from kukeon.runtime.containerd.client import ContainerdClient

LABEL_GC_EXPIRE: Final = "containerd.io/gc.expire"
LABEL_KUKEON_LEASE: Final = "kukeon.io/lease"
LABEL_HOLDER: Final = "kukeon.io/lease-holder"
"""``<boot id>/<pid>/<start time in clock ticks>`` of the process that took the lease."""
BOOT_ID: Final = Path("/proc/sys/kernel/random/boot_id")
RELEASE_SECONDS: Final = 10.0
"""How long the release of a lease cut short may take (its collection run included) before
it is left to expire: a cancelled pull's caller (kukeond stopping) waits for it."""

log = logging.getLogger(__name__)


@functools.cache
def _boot_id() -> str:
    return BOOT_ID.read_text().strip()


def holder() -> str:
    """This process, as ``LABEL_HOLDER`` names it ("" when /proc does not say)."""
    try:
        boot = _boot_id()
    except OSError:
        return ""
    me = identify(os.getpid())
    return "" if me is None else f"{boot}/{me.pid}/{me.started}"


def holder_gone(label: str) -> bool:
    """Whether the process ``label`` names no longer runs: another boot's, or its pid is
    gone or another process's now. A label that does not read so is not judged (False)."""
    boot, _, rest = label.partition("/")
    pid, _, started = rest.partition("/")
    if not (boot and pid.isdigit() and started.isdigit()):
        return False
    try:
        if boot != _boot_id():
            return True
    except OSError:
        return False
    running = identify(int(pid))
    return running is None or running.started != int(started)


@dataclass(frozen=True, slots=True)
class Lease:
    id: str
    created_at: datetime | None
    labels: Mapping[str, str] = field(default_factory=dict)


class LeaseService:
    def __init__(self, *, client: ContainerdClient, namespace: str) -> None:
        self._client = client
        self.namespace = namespace

    async def create(
        self,
        lease_id: str | None = None,
        *,
        expire_after: timedelta | None = timedelta(hours=1),
        labels: Mapping[str, str] | None = None,
    ) -> Lease:
        taken_by = {LABEL_HOLDER: name} if (name := holder()) else {}
        all_labels = {LABEL_KUKEON_LEASE: "true", **taken_by, **(labels or {})}
        if expire_after is not None:
            expiry = datetime.now(UTC) + expire_after
            all_labels[LABEL_GC_EXPIRE] = expiry.strftime("%Y-%m-%dT%H:%M:%SZ")
        lease_id = lease_id or f"kukeon-{uuid.uuid4().hex}"
        response = await self._client.call(
            "create",
            lambda s, md: s.leases.Create(
                leases_pb2.CreateRequest(id=lease_id, labels=all_labels),
                metadata=md,
                timeout=self._client.call_timeout,
            ),
            namespace=self.namespace,
            subject=Subject("lease", lease_id),
        )
        return _lease(response.lease)

    async def delete(self, lease_id: str, *, sync: bool = False) -> bool:
        """Release a lease; False when it was already gone."""
        try:
            await self._client.call(
                "delete",
                lambda s, md: s.leases.Delete(
                    leases_pb2.DeleteRequest(id=lease_id, sync=sync),
                    metadata=md,
                    timeout=self._client.call_timeout,
                ),
                namespace=self.namespace,
                subject=Subject("lease", lease_id),
            )
        except LeaseNotFoundError:
            return False
        return True

    async def list(self, *filters: str) -> list[Lease]:
        response = await self._client.call(
            "list leases",
            lambda s, md: s.leases.List(
                leases_pb2.ListRequest(filters=list(filters)),
                metadata=md,
                timeout=self._client.call_timeout,
            ),
            namespace=self.namespace,
        )
        return [_lease(lease) for lease in response.leases]

    async def release_abandoned(self) -> tuple[str, ...]:
        """Release the leases whose holder no longer runs (``LABEL_HOLDER``), with a
        collection run so what only they kept goes at once; their ids."""
        abandoned = [
            lease.id
            for lease in await self.list(f'labels."{LABEL_HOLDER}"')
            if holder_gone(lease.labels.get(LABEL_HOLDER, ""))
        ]
        return tuple([lease_id for lease_id in abandoned if await self.delete(lease_id, sync=True)])

    @contextlib.asynccontextmanager
    async def lease(self, *, expire_after: timedelta = timedelta(hours=1)) -> AsyncIterator[str]:
        """Hold a fresh lease for the block; yields its id for the ``lease=`` arguments.

        When the block fails or is cancelled (a pull no cell waits for any more, kukeond's
        stop), what it wrote is garbage: the lease is released with a collection run at
        once (``sync``), so a refused or abandoned import or pull leaves nothing behind,
        neither its blobs nor its half-written ingests (containerd's collector does not
        run on a lease's release by itself)."""
        created = await self.create(expire_after=expire_after)
        try:
            yield created.id
        except (Exception, asyncio.CancelledError):
            await self._release_cut_short(created.id)
            raise
        # A lease that cannot be released now (containerd restarting) still expires.
        with contextlib.suppress(ContainerdError):
            await self.delete(created.id)

    async def _release_cut_short(self, lease_id: str) -> None:
        """Release the lease of a block cut short, with its collection run, within
        `RELEASE_SECONDS`. A task of its own, waited for even when we are cancelled again
        meanwhile (that cancellation is raised once it ended): the clean-up is not cut short
        by the cancellation it follows, as containerd's CRI runs its deferred clean-ups on
        a context of their own with a timeout (``DeferContext``)."""

        async def release() -> None:
            try:
                async with asyncio.timeout(RELEASE_SECONDS):
                    await self.delete(lease_id, sync=True)
            except (ContainerdError, TimeoutError) as error:  # it still expires
                log.warning("lease %s in %s not released: %s", lease_id, self.namespace, error)

        await wait_ended(asyncio.create_task(release(), name=f"kukeon-release {lease_id}"))


def _lease(message: leases_pb2.Lease) -> Lease:
    return Lease(
        id=message.id, created_at=to_datetime(message.created_at), labels=dict(message.labels)
    )
