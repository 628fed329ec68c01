"""The forwarding's pure parts: the name a peer's certificate is checked for, and the answer
to a WebSocket upgrade the other node refused (tests/integration/daemon/test_forwarding.py
runs the whole path between two API servers)."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path
from typing import Any, cast

import pytest

from kukeon.api import Kind
from kukeon.apiserver.status import ApiError, Cause, status_document
from kukeon.daemon import forwarding
from kukeon.daemon.forwarding import Forwarder, server_hostname
from kukeon.store import NotFound, Registry
from kukeon.store.keys import KeyLayout

WHAT = "cell r/s/t/web"


def test_the_name_checked_is_the_node_under_the_domain() -> None:
    assert server_hostname("n2", "nodes.kukeon") == "n2.nodes.kukeon"
    assert server_hostname("n2", None) is None  # checked for the endpoint's address


@pytest.fixture
def forwarder() -> Forwarder:
    return Forwarder(registry=cast(Registry, None), node_name="n1", token_file=None, ca_file=None)


def _body(document: dict[str, Any]) -> bytes:
    return json.dumps(document).encode()


def test_a_refusal_with_a_status_keeps_it_and_names_both_nodes(forwarder: Forwarder) -> None:
    sent = status_document(
        code=404,
        reason="NotFound",
        message="container sidecar of cell web not found",
        name="sidecar",
        kind="Container",
        causes=[Cause("container", "sidecar")],
    )
    answer = forwarder._upgrade_refused(404, _body(sent), "n2", WHAT, "attach")
    assert answer.status == 404
    assert answer.body is not None
    assert json.loads(cast(bytes, answer.body)) == {
        **sent,
        "message": "container sidecar of cell web not found (answered by node n2 for the "
        "attach of cell r/s/t/web, forwarded by node n1)",
    }


@pytest.mark.parametrize("code", [401, 403])
def test_a_refused_fleet_token_is_a_bad_gateway_with_the_reason(
    forwarder: Forwarder, code: int
) -> None:
    sent = status_document(code=code, reason="Forbidden", message="user 'fleet' (viewer) may not")
    with pytest.raises(ApiError) as raised:
        forwarder._upgrade_refused(code, _body(sent), "n2", WHAT, "exec")
    error = raised.value
    assert (error.code, error.reason, error.name) == (502, "BadGateway", "n2")
    assert f"node n2 refused this node's fleet token (HTTP {code}): user 'fleet'" in error.message


@pytest.mark.parametrize(
    ("code", "body", "final", "says"),
    [
        (500, b"<html>proxy error</html>", 500, "with HTTP 500 Internal Server Error: <html>"),
        (200, b"", 502, "with HTTP 200 OK (forwarded by node n1)"),
        (599, b"{not json", 599, "with HTTP 599: {not json"),
        # JSON nested past Python's stack: json's RecursionError, which was a 500 here.
        (500, b"[" * 5000 + b"]" * 5000, 500, "with HTTP 500 Internal Server Error: [[["),
    ],
)
def test_a_refusal_without_a_status_is_described(
    forwarder: Forwarder, code: int, body: bytes, final: int, says: str
) -> None:
    with pytest.raises(ApiError) as raised:
        forwarder._upgrade_refused(code, body, "n2", WHAT, "exec")
    error = raised.value
    assert error.code == final
    assert error.name == "n2"
    assert error.message.startswith(f"node n2 answered the exec of {WHAT} ")
    assert says in error.message


async def test_without_a_ca_file_start_loads_no_ca_store(
    forwarder: Forwarder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The system CAs' context (~2 MiB of RSS) is not made at start (issue 18)."""
    made: list[Path | None] = []
    monkeypatch.setattr(forwarding, "_tls_context", lambda ca: made.append(ca))
    await forwarder.start()
    assert made == []


async def test_a_wrong_ca_file_still_stops_the_start(tmp_path: Path) -> None:
    forwarder = Forwarder(
        registry=cast(Registry, None),
        node_name="n1",
        token_file=None,
        ca_file=tmp_path / "missing-ca.pem",
    )
    with pytest.raises(forwarding.ForwardingError, match=r"missing-ca\.pem"):
        await forwarder.start()


async def test_the_system_cas_context_is_made_once_at_the_first_forwarding(
    forwarder: Forwarder, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[Path | None] = []

    def context(ca: Path | None) -> ssl.SSLContext:
        made.append(ca)
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)

    monkeypatch.setattr(forwarding, "_tls_context", context)
    first, second = await asyncio.gather(
        forwarder._forwarding_tls(WHAT, "n2"), forwarder._forwarding_tls(WHAT, "n2")
    )
    assert first is second
    assert made == [None]


async def test_a_system_cas_context_that_cannot_be_made_is_a_refusal(
    forwarder: Forwarder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def context(ca: Path | None) -> ssl.SSLContext:
        raise forwarding.ForwardingError("cannot load the fleet CA file None: broken")

    monkeypatch.setattr(forwarding, "_tls_context", context)
    with pytest.raises(ApiError) as raised:
        await forwarder._forwarding_tls(WHAT, "n2")
    assert (raised.value.code, raised.value.name) == (503, "n2")
    assert "broken" in str(raised.value)


class _Nodes:
    """A registry that checks a node's key as etcd's layout does, and holds no node."""

    async def get(self, kind: Kind, key: tuple[str, ...]) -> object:
        KeyLayout().key(kind, key)  # Invalid for a name no key can hold
        raise NotFound(f"{kind.value} {key[0]} not found")


@pytest.mark.parametrize("node", ["..", ".", "a/b", "../../etc/passwd", "/etc/shadow"])
async def test_a_node_no_key_can_hold_is_the_clients_400_naming_the_parameter(
    node: str,
) -> None:
    # ?node=.. on the image routes was a 500 with a traceback (store.Invalid from the key).
    forwarder = Forwarder(
        registry=cast(Registry, _Nodes()), node_name="n1", token_file=None, ca_file=None
    )
    with pytest.raises(ApiError) as refused:
        await forwarder._endpoint(WHAT, node, named_in="node")
    assert refused.value.code == 400
    assert [cause.field for cause in refused.value.causes] == ["node"]
