"""Node heartbeats: ``<prefix>/leases/nodes/<node>``, one per running kukeond, on its lease.

The key is the node name's claim: a kukeond starting with a name whose heartbeat is alive
elsewhere is refused (``daemon.nodename``). So the process holding it keeps it: it
watches the key (no polling) and puts it back on its lease when it goes or is overwritten
while the lease lives (deleted by hand, etcd restored from a snapshot older than the
claim, a put without the lease). Otherwise another kukeond could take the name meanwhile
and both would run the node's cells. When another process's lease holds the key, this
one does not take it: it is ``displaced`` (an ERROR in the log, /readyz's ``controllers``
check fails naming the holder) until that claim goes, then it claims the name again.
Displaced by another kukeond, it closes its ``gate`` (``converging``): it converges
nothing meanwhile. An earlier process of this installation (a kill -9 whose lease has not
expired; ``instancelock`` keeps two from running) runs nothing: that gate stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from typing import Any, Literal, NamedTuple

from aetcd import rpc

from kukeon.retrying import Backoff, FailureRun
from kukeon.store import EtcdClient

from .converging import ConvergeGate
from .leases import (
    _REQUEST_TIMEOUT,
    LeaseSession,
    _key_events,
    _now_iso,
    _range_end,
    _unreadable,
    _until_lost,
    _WatchBroken,
)

log = logging.getLogger(__name__)

_WATCH_WORKED_SECONDS = 1.0
"""A key watch open this long before it broke was working: the next opens at once."""


class NodeNameTaken(Exception):  # noqa: N818 (a state, named as /readyz shows it)
    """A /readyz failure (``Operator.ready``): another kukeond's lease holds this node's name."""


class Peer(NamedTuple):
    """A live heartbeat; identity and started_at '' when its value does not say them."""

    node: str
    identity: str
    started_at: str


Claimed = Literal["held", "put", "taken"]
"""What a claim found: the key ours already, put on our lease now, or another's."""


def _change(event: Any, lease_id: int, value: bytes) -> str:
    """How a watch event of the key left it not ours ('' while it is)."""
    if event.type == rpc.Event.EventType.DELETE:
        return "deleted"
    if event.kv.lease == 0:
        return "put on no lease"
    if event.kv.lease != lease_id:
        return f"put on another lease ({event.kv.lease:x})"
    if event.kv.value != value:
        return "overwritten"
    return ""


class Heartbeat:
    """Keeps ``<prefix>/leases/nodes/<node>`` on this process's lease while it runs."""

    def __init__(
        self,
        *,
        client: EtcdClient,
        prefix: str,
        node_name: str,
        ttl: int,
        refresh_interval: float,
        host: str = "",
        gate: ConvergeGate | None = None,
    ) -> None:
        self._client = client
        self._prefix = prefix.rstrip("/")
        self.node_name = node_name
        self.host = host
        self.identity = f"{node_name}/{uuid.uuid4().hex[:12]}"
        self.key = f"{self._prefix}/leases/nodes/{node_name}".encode()
        self._ttl = ttl
        self._refresh_interval = refresh_interval
        self._started_at = _now_iso()
        self.alive = asyncio.Event()
        """Set while this process's lease is alive (whether or not it holds the key)."""
        self.release_on_exit = True
        self.displaced: str | None = None
        """Why another process's lease holds the name now (None: this one holds it)."""
        self._said_holder: tuple[int, bytes] | None = None
        """The other holder (lease, value) the log last named."""
        self.gate = gate if gate is not None else ConvergeGate()
        """Closed while another kukeond holds the name, opened when it is ours again."""
        self.first_claim = asyncio.Event()
        """Set once the first claim is settled (ours, or another's), or could not be made."""
        self._session: LeaseSession | None = None

    @property
    def lease_id(self) -> int:
        """The lease of this process's claim (0 while it has none)."""
        session = self._session
        return session.lease_id if session is not None and not session.lost.is_set() else 0

    def name_held(self) -> bool:
        """No other process's lease holds this node's name (``NodeNameTaken`` otherwise)."""
        if self.displaced is not None:
            raise NodeNameTaken(self.displaced)
        return True

    async def run(self) -> None:
        backoff = Backoff(self._refresh_interval, max(self._ttl, 1))
        value = json.dumps(
            {
                "node": self.node_name,
                "identity": self.identity,
                "host": self.host,
                "startedAt": self._started_at,
                "ttl": self._ttl,
            }
        ).encode()
        registering = FailureRun(log, f"heartbeat {self.node_name}: registering")
        while True:
            session = LeaseSession(
                client=self._client,
                ttl=self._ttl,
                refresh_interval=self._refresh_interval,
                name=f"node/{self.node_name}",
            )
            self._session = session
            try:
                await session.start()
                claimed_at, _ = await self._claim(session, value)
            except Exception as error:
                registering.failed("cannot register (%r)", error)
                self.first_claim.set()  # unknown: converge meanwhile, as without a claim
                await asyncio.shield(session.close(revoke=True))
                await backoff.sleep()
                continue
            backoff.reset()
            registering.ended()
            self.first_claim.set()
            self.alive.set()
            try:
                await _until_lost(session, self._keep(session, value, after=claimed_at))
                log.warning("heartbeat %s: lease lost, registering again", self.node_name)
            finally:
                self.alive.clear()
                await asyncio.shield(session.close(revoke=self.release_on_exit))

    async def _keep(self, session: LeaseSession, value: bytes, *, after: int) -> None:
        """Watch the key from revision ``after`` (when its state was last known) and claim
        it again whenever it stops being ours; until cancelled (the lease lost)."""
        backoff = Backoff(0.05, _WATCH_WORKED_SECONDS)
        # etcd refusing connections breaks the watch and fails the claim every 50 ms to
        # 1 s until the lease is given up: said when it begins and when it ends.
        keeping = FailureRun(log, f"heartbeat {self.node_name}: keeping its key")
        while True:
            opened = time.monotonic()
            why = ""
            events = _key_events(self._client, self.key, after=after, created=keeping.ended)
            try:
                async with contextlib.aclosing(events):
                    async for event in events:
                        why = _change(event, session.lease_id, value)
                        if why:
                            break
            except _WatchBroken as error:
                keeping.failed("its key's watch broke (%s)", error)
            displaced = self.displaced is not None  # then the key was not ours to put back
            try:
                after, claimed = await self._claim(session, value)
            except Exception as error:
                keeping.failed("claiming its key failed (%r)", error)
            else:
                keeping.ended()
                if claimed == "put" and why and not displaced:
                    log.warning(
                        "heartbeat %s: its node name claim %s was %s while this kukeond runs "
                        "(by hand, a tool, or etcd restored from an older snapshot): put back "
                        "on its lease",
                        self.node_name,
                        self.key.decode(errors="replace"),
                        why,
                    )
            if time.monotonic() - opened >= _WATCH_WORKED_SECONDS:
                backoff.reset()
            else:
                await backoff.sleep()

    async def _claim(self, session: LeaseSession, value: bytes) -> tuple[int, Claimed]:
        """Put the key on this session's lease unless another lease holds it (one Txn: an
        absent key compares as one on lease 0); the revision the outcome is true at."""
        client, key, lease_id = self._client, self.key, session.lease_id
        await client.connect()
        put = rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value, lease=lease_id))
        response = await client.kvstub.Txn(
            rpc.TxnRequest(
                compare=[rpc.Compare(key=key, target=rpc.Compare.LEASE, result=rpc.Compare.EQUAL)],
                success=[put],
                failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=key))],
            ),
            timeout=_REQUEST_TIMEOUT,
            metadata=client.metadata,
        )
        revision = int(response.header.revision)
        claimed: Claimed = "put"
        if not response.succeeded:
            (kv,) = response.responses[0].response_range.kvs  # (on a lease: it exists)
            if kv.lease != lease_id and kv.value == value:
                # This process's own claim on a lease it lost (etcd restarted: it restores
                # leases it would expire later): moved to the new one, unless changed since.
                moved = await client.kvstub.Txn(
                    rpc.TxnRequest(
                        compare=[
                            rpc.Compare(
                                key=key,
                                target=rpc.Compare.MOD,
                                result=rpc.Compare.EQUAL,
                                mod_revision=kv.mod_revision,
                            )
                        ],
                        success=[put],
                    ),
                    timeout=_REQUEST_TIMEOUT,
                    metadata=client.metadata,
                )
                if not moved.succeeded:  # changed meanwhile: judge it afresh
                    return await self._claim(session, value)
                revision, claimed = int(moved.header.revision), "held"
            elif kv.lease != lease_id:
                self._taken(kv)
                return revision, "taken"
            elif kv.value != value:  # put on our lease by someone else: ours again
                answer = await client.kvstub.Put(
                    put.request_put, timeout=_REQUEST_TIMEOUT, metadata=client.metadata
                )
                revision = int(answer.header.revision)
            else:
                claimed = "held"
        if self.displaced is not None:
            log.warning("heartbeat %s: the node name is this process's again", self.node_name)
        self.displaced = None
        self._said_holder = None
        self.gate.open()
        return revision, claimed

    def _taken(self, kv: Any) -> None:
        """Another lease holds the key: say whose, once per holder, and be displaced."""
        try:
            found = json.loads(kv.value)
        except (ValueError, RecursionError):  # RecursionError: nested past the stack
            found = None
        holder = found if isinstance(found, dict) else {}
        host = str(holder.get("host") or "")
        mine = bool(host) and host == self.host
        if mine:  # a lease of an earlier process here (instancelock: never one running)
            self.displaced = (
                f"node name {self.node_name!r} is held by an earlier process of this "
                f"installation (lease {kv.lease:x}, started {holder.get('startedAt') or '?'}): "
                f"claimed again once that lease expires (within {holder.get('ttl') or '?'}s)"
            )
        else:
            self.displaced = (
                f"node name {self.node_name!r} is held by another kukeond "
                f"({host or 'host unknown'}, started {holder.get('startedAt') or '?'}, lease "
                f"{kv.lease:x}), not by this one ({self.host or 'host unknown'}): two kukeonds "
                f"with one node name would both run its cells; stop one, or give this one its own "
                f"--node-name. This one is not ready and converges nothing (what runs "
                f"here is left as it is) until it claims the name again, once that claim "
                f"goes"
            )
        said = (int(kv.lease), bytes(kv.value))
        if said != self._said_holder:
            self._said_holder = said
            log.log(logging.WARNING if mine else logging.ERROR, "heartbeat: %s", self.displaced)
        if mine:
            self.gate.open()
        else:
            self.gate.close(self.displaced)


async def heartbeat_of(client: EtcdClient, prefix: str, node_name: str) -> dict[str, Any] | None:
    """What the live heartbeat of ``node_name`` says (None: no process holds the name; a
    key on no lease, put by hand or a restore and never expired by etcd, is none)."""
    key = f"{prefix.rstrip('/')}/leases/nodes/{node_name}".encode()
    await client.connect()
    response = await client.kvstub.Range(
        rpc.RangeRequest(key=key), timeout=_REQUEST_TIMEOUT, metadata=client.metadata
    )
    if not response.kvs or not response.kvs[0].lease:
        return None
    try:
        found = json.loads(response.kvs[0].value)
    except (ValueError, RecursionError):  # RecursionError: nested past the stack
        return {}
    return found if isinstance(found, dict) else {}


async def alive_peers(client: EtcdClient, prefix: str) -> list[Peer]:
    """Every kukeond whose heartbeat lease is alive, by node name. A key on no lease is
    none; one on a lease whose value is not a heartbeat's is a peer named by its key,
    of unknown identity (warned of once)."""
    start = f"{prefix.rstrip('/')}/leases/nodes/".encode()
    await client.connect()
    response = await client.kvstub.Range(
        rpc.RangeRequest(key=start, range_end=_range_end(start)),
        timeout=_REQUEST_TIMEOUT,
        metadata=client.metadata,
    )
    peers = []
    for kv in response.kvs:
        if not kv.lease:  # no process's: etcd never expires it (heartbeat_of)
            continue
        data = _unreadable.fields(kv, ("node", "identity", "startedAt"), "node heartbeat")
        if data is None:  # alive, but it does not say who: named by its key
            node = bytes(kv.key)[len(start) :].decode(errors="replace")
            peers.append(Peer(node, "", ""))
            continue
        peers.append(Peer(data["node"], data["identity"], data["startedAt"]))
    return sorted(peers)
