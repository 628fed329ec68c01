"""Several etcd endpoints, some of them bad, on a real etcd: the good ones are used.

One host name that did not resolve among several endpoints failed the whole connection
(``ResolveFailed``), however many of the others answered; an endpoint that resolves but
refuses connections, or takes none (a blackholed address), must not hold it up either.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Iterator

import pytest

from kukeon.api import Kind
from kukeon.store import Registry, Unavailable
from kukeon.store.connection import EtcdClient, ResolveFailed, Retrier
from tests.fixtures.etcd import EtcdServer
from tests.fixtures.services import free_tcp_port

from .objects import realm

pytestmark = pytest.mark.integration

BOGUS = "https://etcd-gone.invalid:2379"
"""RFC 2606's .invalid never resolves."""


@pytest.fixture
def blackhole() -> Iterator[str]:
    """An endpoint whose SYNs go unanswered, as a blackholed address's do: a listener whose
    accept queue is full (backlog 0, filled and never accepted) makes the kernel drop
    further SYNs, so a connect hangs until the caller's timeout."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        probe = socket.create_connection  # proves it hangs, or the test proves nothing
        with pytest.raises(TimeoutError):
            probe(("127.0.0.1", port), timeout=0.5).close()
        yield f"https://127.0.0.1:{port}"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def _closed() -> str:
    """127.0.0.2: refused at once, and a host the member's certificate does not name (so
    it must not become the name every certificate is checked for)."""
    return f"https://127.0.0.2:{free_tcp_port()}"


async def _use(server: EtcdServer, endpoints: list[str], prefix: str) -> float:
    """Connect, write and read through ``endpoints``; the seconds the connection took."""
    started = time.monotonic()
    config = server.config(endpoints=endpoints, key_prefix=prefix, retry_timeout=10.0)
    async with await Registry.connect(config) as registry:
        took = time.monotonic() - started
        await registry.create(realm("failover"))
        for _ in range(5):
            assert (await registry.get(Kind.REALM, ("failover",))).metadata.name == "failover"
    return took


def _warnings(caplog: pytest.LogCaptureFixture, endpoint: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "kukeon.store.endpoints" and endpoint in r.getMessage()
    ]


@pytest.mark.parametrize("real_first", [True, False], ids=["real-first", "real-last"])
async def test_a_bad_name_and_a_closed_port_beside_the_real_endpoint(
    etcd_server: EtcdServer,
    etcd_key_prefix: str,
    caplog: pytest.LogCaptureFixture,
    real_first: bool,
) -> None:
    closed = _closed()
    bad = [BOGUS, closed]
    endpoints = [etcd_server.endpoint, *bad] if real_first else [*bad, etcd_server.endpoint]
    caplog.set_level(logging.INFO, logger="kukeon.store.endpoints")
    took = await _use(etcd_server, endpoints, etcd_key_prefix)
    assert took < 3.0
    (bogus_said,) = _warnings(caplog, BOGUS)  # once, not per request
    assert "does not resolve" in bogus_said
    assert "left out" in bogus_said
    (closed_said,) = _warnings(caplog, closed)
    assert "Connection refused" in closed_said
    assert etcd_server.endpoint in closed_said


@pytest.mark.parametrize("real_first", [True, False], ids=["real-first", "real-last"])
async def test_an_endpoint_that_takes_no_connection_costs_a_bounded_time(
    etcd_server: EtcdServer,
    etcd_key_prefix: str,
    caplog: pytest.LogCaptureFixture,
    blackhole: str,
    real_first: bool,
) -> None:
    endpoints = (
        [etcd_server.endpoint, blackhole] if real_first else [blackhole, etcd_server.endpoint]
    )
    caplog.set_level(logging.INFO, logger="kukeon.store.endpoints")
    took = await _use(etcd_server, endpoints, etcd_key_prefix)
    assert took < 2.0  # SETTLE_SECONDS after the real one answered, not the dial timeout
    (said,) = _warnings(caplog, blackhole)
    assert "no TCP answer" in said


async def test_no_endpoint_working_names_each_and_why(
    etcd_key_prefix: str, etcd_server: EtcdServer, blackhole: str
) -> None:
    closed = _closed()
    config = etcd_server.config(
        endpoints=[BOGUS, closed, blackhole], key_prefix=etcd_key_prefix, retry_timeout=1.0
    )
    started = time.monotonic()
    with pytest.raises(Unavailable) as raised:
        await Registry.connect(config)
    assert time.monotonic() - started < 10.0
    message = str(raised.value)
    assert f"{BOGUS}: host 'etcd-gone.invalid' does not resolve" in message
    assert f"{closed}: 127.0.0.2:{closed.rsplit(':', 1)[1]}: Connection refused" in message
    assert f"{blackhole}: no TCP answer" in message
    assert "takes TCP connections" not in message


async def test_no_name_resolving_is_resolve_failed_naming_each(
    etcd_key_prefix: str, etcd_server: EtcdServer
) -> None:
    other = "https://etcd-other.invalid:2379"
    config = etcd_server.config(endpoints=[BOGUS, other], retry_timeout=0.5)
    with pytest.raises(Unavailable) as raised:
        await Registry.connect(config)
    assert isinstance(raised.value.__cause__, ResolveFailed)
    assert "etcd-gone.invalid" in str(raised.value)
    assert "etcd-other.invalid" in str(raised.value)


async def test_a_name_that_resolves_later_is_dialed_once_the_others_fail(
    etcd_server: EtcdServer, etcd_key_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member whose name did not resolve at connect (a pod not yet in DNS) is left out;
    once the endpoints dialed fail and it resolves, the channel is opened again with it,
    within the same request's retries (the old channel is closed later, not under it)."""
    port = etcd_server.endpoint.rsplit(":", 1)[1]
    late = f"https://etcd-late.invalid:{port}"
    resolves = False
    real = socket.getaddrinfo

    def getaddrinfo(host: object, *args: object, **kwargs: object) -> object:
        if host == "etcd-late.invalid":
            if not resolves:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            host = "127.0.0.1"
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    config = etcd_server.config(
        endpoints=[late, _closed()],
        key_prefix=etcd_key_prefix,
        server_name="localhost",  # the member's certificate's name, whichever is dialed
        retry_timeout=2.0,
    )
    client = EtcdClient(config)
    try:
        retrier = Retrier(client=client, retry_timeout=2.0)
        with pytest.raises(Unavailable, match=r"etcd-late\.invalid' does not resolve"):
            await retrier.run(lambda: client.get(b"/k"), what="get", repeatable=True)
        resolves = True
        # etcd is known away now (the first request spent its budget): requests are refused
        # at once until the client's probe, which mends the channel as a request's retries
        # do, reaches the member by the name that resolves now.
        started = time.monotonic()
        if client.health.away:
            await client.health.wait_back(10.0)
        retrier = Retrier(client=client, retry_timeout=15.0)
        await retrier.run(lambda: client.get(b"/k"), what="get", repeatable=True)
        assert time.monotonic() - started < 10.0
    finally:
        await client.close()
