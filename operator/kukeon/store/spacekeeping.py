"""An etcd out of space takes writes again once something was deleted.

When etcd's database reaches its quota (2 GiB by default: Secrets and annotations of a
few hundred KiB add up) it raises the ``NOSPACE`` alarm and from then on refuses every
write that is not a delete, on every member, until an operator compacts its history,
defragments it and clears the alarm by hand (``etcdctl alarm disarm``): freeing space is
not enough. For the etcd kukeond embeds, nobody else holds its client certificate, so
kukeond does those steps itself (``keep_space``, a supervised loop) whenever it finds the
alarm: once deletes have freed room, writes work again without anyone at the host. If the
data still does not fit, etcd raises the alarm again at the next write that passes the
quota, and the log says so each time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aetcd
from aetcd import rpc

log = logging.getLogger(__name__)

NOSPACE = rpc.AlarmType.Value("NOSPACE")
CHECK_INTERVAL = 30.0


async def keep_space(client: aetcd.Client, *, interval: float = CHECK_INTERVAL) -> None:
    """``recover_space`` every ``interval`` seconds, for ever (run it supervised).

    An etcd out of reach is looked at again at the next period, said at debug level: its
    process is down or starting, which its supervisor says (an etcd whose own disk filled
    dies, and starts again only once room is freed). Before, this loop crashed at each
    try, an error with a traceback every few seconds for as long as etcd was away."""
    while True:
        try:
            await recover_space(client)
        except (aetcd.ConnectionFailedError, aetcd.ConnectionTimeoutError) as error:
            log.debug("etcd's alarms not read (etcd out of reach): %r", error)
        await asyncio.sleep(interval)


async def recover_space(client: aetcd.Client) -> bool:
    """When the ``NOSPACE`` alarm is raised: compact the history up to now, defragment,
    clear the alarm; whether it was raised."""
    alarms = [alarm async for alarm in client.list_alarms()]
    raised = {alarm.member_id for alarm in alarms if alarm.alarm_type == NOSPACE}
    if not raised:
        return False
    before = (await client.status()).db_size
    log.error(
        "etcd is out of space (NOSPACE alarm, database %d bytes): it refuses every write "
        "but deletes; compacting, defragmenting and clearing the alarm (delete objects to "
        "free room if this repeats)",
        before,
    )
    revision = await _revision(client)
    with contextlib.suppress(aetcd.exceptions.RevisionCompactedError):  # compacted already
        await client.compact(revision, physical=True)
    await client.defragment()
    for member in raised:  # etcd clears an alarm by its member (0 clears none)
        await client.disarm_alarm(member_id=member)
    after = (await client.status()).db_size
    log.warning("etcd takes writes again: database %d bytes after defragmenting", after)
    return True


class EtcdFull(Exception):  # noqa: N818 (a state, named as /readyz shows it)
    """/readyz's ``etcd-space`` check: etcd's ``NOSPACE`` alarm is raised."""


async def space_ready(client: aetcd.Client, *, embedded: bool, within: float = 1.0) -> bool:
    """/readyz's ``etcd-space`` check: raises ``EtcdFull`` while the ``NOSPACE`` alarm is
    raised (etcd then takes reads and deletes, but no other write: no status, no object).
    Read from the member's status (its ``errors`` name the cluster's alarms), which etcd
    answers locally, where listing the alarms is a raft round. An etcd that does not
    answer is the ``etcd`` check's to report."""
    try:
        async with asyncio.timeout(within):
            reply = await client.maintenancestub.Status(
                rpc.StatusRequest(), timeout=within, metadata=client.metadata
            )
    except Exception as error:  # out of reach, or no permission: not this check's to say
        log.debug("etcd's status for the space check: %r", error)
        return True
    if not any("alarm:NOSPACE" in line for line in reply.errors):
        return True
    remedy = (
        "kukeond's space keeper compacts, defragments and clears it within "
        f"{CHECK_INTERVAL:g}s; delete objects if it comes back"
        if embedded
        else "delete objects, then compact and defragment etcd and clear the alarm "
        "(etcdctl alarm disarm)"
    )
    raise EtcdFull(
        f"etcd's NOSPACE alarm is raised (database {reply.dbSize} bytes): it refuses every "
        f"write but deletes; {remedy}"
    )


async def _revision(client: aetcd.Client) -> int:
    """The store's current revision (the header of a one-key read)."""
    reply = await client.kvstub.Range(
        rpc.RangeRequest(key=b"\0", keys_only=True, limit=1),
        timeout=client._timeout,
        metadata=client.metadata,
    )
    revision: int = reply.header.revision
    return revision
