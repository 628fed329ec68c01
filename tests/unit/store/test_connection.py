"""Connection options and the retry policy, without an etcd."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from pathlib import Path
from typing import Any

import aetcd
import grpc
import pytest

from kukeon.store import (
    EtcdConfig,
    OutcomeUnknown,
    Registry,
    SpaceExceeded,
    StoreError,
    Unavailable,
)
from kukeon.store.connection import (
    EtcdClient,
    Retrier,
    is_transient,
    surely_not_applied,
)
from kukeon.store.endpoints import (
    EndpointReporter,
    EndpointState,
    ResolveFailed,
    check_endpoints,
    grpc_target,
    tls_name,
)
from kukeon.store.health import StoreHealth
from tests.fixtures.services import free_tcp_port


def _rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(), details, debug_error_string=None
    )


async def test_targets_list_every_endpoint_for_failover() -> None:
    assert await EtcdClient(EtcdConfig(endpoints=["127.0.0.1:2379"]))._target() == "127.0.0.1:2379"
    one_name = EtcdClient(EtcdConfig(endpoints=["http://etcd.example:2379"]))
    assert await one_name._target() == "etcd.example:2379"  # gRPC's to resolve
    ports = [free_tcp_port() for _ in range(3)]  # nothing listens: kept, in their order
    several = [
        f"http://127.0.0.1:{ports[0]}",
        f"127.0.0.2:{ports[1]}",
        f"https://127.0.0.3:{ports[2]}",
    ]
    assert (
        await EtcdClient(EtcdConfig(endpoints=several))._target()
        == f"ipv4:127.0.0.1:{ports[0]},127.0.0.2:{ports[1]},127.0.0.3:{ports[2]}"
    )
    six = await check_endpoints(["[::1]:5", "http://[::1]:6"], within=1.0)
    assert grpc_target(six) == "ipv6:[::1]:5,[::1]:6"


def test_the_target_dials_what_answered_first_and_leaves_out_what_did_not_resolve() -> None:
    v4 = ipaddress.ip_address
    states = [
        EndpointState("https://gone.invalid:2379", "gone.invalid", 2379, failure="no name"),
        EndpointState("https://down:2379", "down", 2379, (v4("10.0.0.1"),), failure="refused"),
        EndpointState("https://up:2379", "up", 2379, (v4("10.0.0.2"),), answered=True),
    ]
    assert grpc_target(states) == "ipv4:10.0.0.2:2379,10.0.0.1:2379"
    six = EndpointState("https://[fd00::1]:2379", "fd00::1", 2379, (v4("fd00::1"),), True)
    assert grpc_target([*states[:2], six]) == "ipv6:[fd00::1]:2379"  # what answered
    assert tls_name(states) == "up"  # the certificate of the member dialed first
    assert tls_name(states[:2]) == "down"  # never a name that did not resolve
    with pytest.raises(ResolveFailed, match=r"https://gone.invalid:2379: no name"):
        grpc_target(states[:1])


def test_config_validation_and_tls_detection(tmp_path: Path) -> None:
    assert not EtcdConfig(endpoints=["127.0.0.1:2379"]).uses_tls
    assert EtcdConfig(endpoints=["https://127.0.0.1:2379"]).uses_tls
    assert EtcdConfig(endpoints=["127.0.0.1:2379"], ca_file=tmp_path / "ca.pem").uses_tls
    with pytest.raises(ValueError, match="at least one endpoint"):
        EtcdConfig(endpoints=[])
    with pytest.raises(ValueError, match="username and password"):
        EtcdConfig(username="root")
    with pytest.raises(ValueError, match="cert_file and key_file"):
        EtcdConfig(cert_file=tmp_path / "c.pem")
    with pytest.raises(ValueError, match="not host:port"):
        EtcdConfig(endpoints=["ftp://x:1"])


async def test_a_unix_socket_endpoint_is_dialed_alone() -> None:
    """etcdctl's spelling: unix:///path, unixs:///path for TLS over the socket (the
    embedded etcd's), whose certificate is verified for localhost unless told another."""
    plain = EtcdConfig(endpoints=["unix:///run/etcd/client:0"])
    assert not plain.uses_tls
    assert await EtcdClient(plain)._target() == "unix:/run/etcd/client:0"
    secure = EtcdConfig(endpoints=["unixs:///run/etcd/client:0"])
    assert secure.uses_tls
    assert secure.unix_socket == "/run/etcd/client:0"
    options = dict(EtcdClient(secure)._channel_options())
    assert options["grpc.ssl_target_name_override"] == "localhost"
    named = EtcdConfig(endpoints=["unixs:///run/etcd/client:0"], server_name="etcd.example")
    assert dict(EtcdClient(named)._channel_options())["grpc.ssl_target_name_override"] == (
        "etcd.example"
    )
    with pytest.raises(ValueError, match="must be the only one"):
        EtcdConfig(endpoints=["unixs:///run/etcd/client:0", "https://127.0.0.1:2379"])
    with pytest.raises(ValueError, match="unix:///absolute/path"):
        EtcdConfig(endpoints=["unixs://client:0"])
    with pytest.raises(ValueError, match="bytes, over the 107"):
        EtcdConfig(endpoints=["unix:///" + "x" * 107])
    assert EtcdConfig(endpoints=["unix:///" + "x" * 106]).unix_socket is not None


def test_which_failures_are_known_not_applied() -> None:
    assert surely_not_applied(_rpc_error(grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader"))
    assert surely_not_applied(
        _rpc_error(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")
    )
    assert not surely_not_applied(_rpc_error(grpc.StatusCode.UNAVAILABLE, "Socket closed"))
    assert not surely_not_applied(_rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline"))


class RetrierClient:
    """What a ``Retrier`` uses of a client; ``etcd_back`` is what its health's probe finds."""

    def __init__(self) -> None:
        self.etcd_back = False
        self.probes = 0
        self.health = StoreHealth(self._probe)

    async def _probe(self) -> bool:
        self.probes += 1
        return self.etcd_back

    async def connect(self) -> None:
        return None

    async def endpoints_now(self) -> str:
        return ""

    async def mend(self) -> None:
        return None

    async def authenticate(self) -> None:
        self.authenticated = True


def _retrier(budget: float = 5.0) -> Retrier:
    return Retrier(client=RetrierClient(), retry_timeout=budget)  # type: ignore[arg-type]


def _flaky(*errors: Exception) -> Any:
    remaining = list(errors)
    calls: list[int] = []

    async def attempt() -> str:
        calls.append(1)
        if remaining:
            raise remaining.pop(0)
        return "done"

    attempt.calls = calls  # type: ignore[attr-defined]
    return attempt


async def test_transient_failures_are_retried() -> None:
    attempt = _flaky(
        _rpc_error(grpc.StatusCode.UNAVAILABLE, "Socket closed"),
        _rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"),
    )
    assert await _retrier().run(attempt, what="read", repeatable=True) == "done"
    assert len(attempt.calls) == 3


async def test_an_inflight_write_failure_is_outcome_unknown() -> None:
    attempt = _flaky(_rpc_error(grpc.StatusCode.UNAVAILABLE, "Socket closed"))
    with pytest.raises(OutcomeUnknown, match="may or may not have been applied"):
        await _retrier().run(attempt, what="update Realm 'r'", repeatable=False)
    assert len(attempt.calls) == 1


async def test_a_write_that_never_reached_etcd_is_retried() -> None:
    attempt = _flaky(_rpc_error(grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader"))
    assert await _retrier().run(attempt, what="update", repeatable=False) == "done"


async def test_the_budget_ends_in_unavailable() -> None:
    errors = [_rpc_error(grpc.StatusCode.UNAVAILABLE, "failed to connect") for _ in range(50)]
    with pytest.raises(Unavailable, match=r"unavailable after 0\.3s"):
        await _retrier(0.3).run(_flaky(*errors), what="get", repeatable=True)


async def test_a_full_etcd_is_answered_at_once_not_retried() -> None:
    full = "etcdserver: mvcc: database space exceeded"
    for repeatable in (True, False):
        attempt = _flaky(_rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, full))
        with pytest.raises(SpaceExceeded, match="database space exceeded"):
            await _retrier().run(attempt, what="update Cell 'c'", repeatable=repeatable)
        assert len(attempt.calls) == 1
    assert not is_transient(_rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, full))
    # etcd's other RESOURCE_EXHAUSTED passes by itself: still retried
    busy = _rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, "etcdserver: too many requests")
    assert is_transient(busy)
    assert await _retrier().run(_flaky(busy), what="update", repeatable=False) == "done"


async def test_permanent_errors_are_not_retried() -> None:
    attempt = _flaky(_rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "bad"))
    with pytest.raises(StoreError, match="refused the request"):
        await _retrier().run(attempt, what="get", repeatable=True)
    assert len(attempt.calls) == 1


def _wrapped(error: grpc.aio.AioRpcError) -> aetcd.ClientError:
    """aetcd's error for a gRPC failure, raised from it as aetcd's own calls do."""
    try:
        try:
            raise error
        except grpc.aio.AioRpcError as raised:
            aetcd.exceptions._handle_exception(raised)
    except aetcd.ClientError as client_error:
        return client_error
    raise AssertionError("aetcd did not wrap the error")


@pytest.mark.parametrize(
    "error",
    [
        _rpc_error(grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied"),
        _rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: request is too large"),
        _rpc_error(grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: requested lease not found"),
        _wrapped(_rpc_error(grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided")),
        _wrapped(_rpc_error(grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")),
        aetcd.InvalidArgumentError("bad"),
        aetcd.PreconditionFailedError("no"),
        aetcd.RevisionCompactedError(5),
        aetcd.ClientError("something else"),
    ],
    ids=repr,
)
async def test_refusals_are_not_retried_whoever_raises_them(error: Exception) -> None:
    # aetcd's errors were retried for the whole budget and then called "unavailable".
    attempt = _flaky(error)
    started = asyncio.get_running_loop().time()
    with pytest.raises(StoreError, match="refused the request") as raised:
        await _retrier(2.0).run(attempt, what="get", repeatable=True)
    assert not isinstance(raised.value, Unavailable)
    assert len(attempt.calls) == 1
    assert asyncio.get_running_loop().time() - started < 0.5


async def test_aetcd_errors_that_pass_by_themselves_are_retried() -> None:
    attempt = _flaky(
        aetcd.ConnectionFailedError("unavailable"),
        aetcd.ConnectionTimeoutError("deadline"),
        _wrapped(_rpc_error(grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader")),
    )
    assert await _retrier().run(attempt, what="read", repeatable=True) == "done"
    assert len(attempt.calls) == 4
    # a write that etcd surely never took is retried, one that may have been is not
    unapplied = _flaky(_wrapped(_rpc_error(grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader")))
    assert await _retrier().run(unapplied, what="update", repeatable=False) == "done"
    with pytest.raises(OutcomeUnknown):
        await _retrier().run(_flaky(aetcd.ConnectionFailedError("x")), what="w", repeatable=False)
    full = _rpc_error(
        grpc.StatusCode.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded"
    )
    with pytest.raises(SpaceExceeded):
        await _retrier().run(_flaky(_wrapped(full)), what="update", repeatable=True)


async def test_an_expired_token_is_renewed_once() -> None:
    attempt = _flaky(_rpc_error(grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token"))
    assert await _retrier().run(attempt, what="get", repeatable=True) == "done"


async def test_connect_to_nothing_is_unavailable_after_the_budget() -> None:
    config = EtcdConfig(endpoints=[f"127.0.0.1:{free_tcp_port()}"], retry_timeout=0.5)
    with pytest.raises(Unavailable, match="etcd is unavailable"):
        await Registry.connect(config)


def _failing_dns(monkeypatch: pytest.MonkeyPatch, failures: int) -> list[str]:
    """socket.getaddrinfo (asyncio's default resolver) failing ``failures`` times for
    ``*.invalid``, then resolving it to 127.0.0.1; returns the names asked."""
    asked: list[str] = []
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith(".invalid"):
            asked.append(host)
            if len(asked) <= failures:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            host = "127.0.0.1"
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return asked


_NAMED = ["etcd-0.invalid:2379", "etcd-1.invalid:2379"]


async def test_an_endpoint_name_that_does_not_resolve_is_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Several endpoints are resolved by kukeon, not gRPC: a DNS failure was a raw OSError
    past the Retrier (the API's 500, a controller's traceback)."""
    asked = _failing_dns(monkeypatch, failures=10_000)
    with pytest.raises(Unavailable, match=r"cannot resolve any etcd endpoint") as raised:
        await Registry.connect(EtcdConfig(endpoints=_NAMED, retry_timeout=0.3))
    for endpoint in _NAMED:  # each named, with why
        assert f"{endpoint}: host '{endpoint.split(':')[0]}' does not resolve" in str(raised.value)
    assert len(asked) > 2  # retried as a refused connection is


async def test_a_name_that_resolves_again_is_connected_to(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _failing_dns(monkeypatch, failures=2)
    client = EtcdClient(EtcdConfig(endpoints=_NAMED))
    try:
        retrier = Retrier(client=client, retry_timeout=5.0)
        assert await retrier.run(_flaky(), what="put", repeatable=False) == "done"
    finally:
        await client.close()
    assert sorted(asked[:2]) == ["etcd-0.invalid", "etcd-1.invalid"]  # both failed at first


def test_several_tls_endpoints_are_verified_by_the_first_ones_name() -> None:
    """The gRPC target of several endpoints is an address list, not a name to verify."""
    endpoints = ["https://etcd-0.example:2379", "https://etcd-1.example:2379"]
    options = dict(EtcdClient(EtcdConfig(endpoints=endpoints))._channel_options())
    assert options["grpc.ssl_target_name_override"] == "etcd-0.example"
    named = EtcdConfig(endpoints=endpoints, server_name="etcd.example")
    assert dict(EtcdClient(named)._channel_options())["grpc.ssl_target_name_override"] == (
        "etcd.example"
    )
    one = dict(EtcdClient(EtcdConfig(endpoints=endpoints[:1]))._channel_options())
    assert "grpc.ssl_target_name_override" not in one
    plain = EtcdConfig(endpoints=["127.0.0.1:1", "127.0.0.1:2"])
    assert "grpc.ssl_target_name_override" not in dict(EtcdClient(plain)._channel_options())


def test_a_stream_removed_by_a_departing_tls_server_is_transient() -> None:
    removed = _rpc_error(grpc.StatusCode.INTERNAL, "Stream removed (RST_STREAM)")
    assert is_transient(removed)
    assert not surely_not_applied(removed)
    assert not is_transient(_rpc_error(grpc.StatusCode.INTERNAL, "some other failure"))


def test_an_endpoints_failure_is_logged_once_and_its_return_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    up = EndpointState("https://up:2379", "up", 2379, (ipaddress.ip_address("10.0.0.2"),), True)
    down = EndpointState("https://down:2379", "down", 2379, failure="host 'down' does not resolve")
    back = EndpointState(
        "https://down:2379", "down", 2379, (ipaddress.ip_address("10.0.0.1"),), True
    )
    reporter = EndpointReporter()
    with caplog.at_level(logging.INFO, logger="kukeon.store.endpoints"):
        for _ in range(3):  # as at every retried connect, or every give-up's check
            reporter.report([up, down])
        reporter.report([up, back])
        reporter.report([up, back])
    said = [record.getMessage() for record in caplog.records]
    assert said == [
        "etcd endpoint https://down:2379 fails: host 'down' does not resolve; left out of the "
        "connection, dialing https://up:2379 first",
        "etcd endpoint https://down:2379 takes TCP connections again",
    ]
    assert back.describe() == "https://down:2379: takes TCP connections"
