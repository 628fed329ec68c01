"""The forwarding's pure parts: the name a peer's certificate is checked for, and the answer
to a WebSocket upgrade the other node refused (tests/integration/daemon/test_forwarding.py
runs the whole path between two API servers)."""

from __future__ import annotations

import json
from typing import Any, cast

import pytest

from kukeon.apiserver.status import ApiError, Cause, status_document
from kukeon.daemon.forwarding import Forwarder, server_hostname
from kukeon.store import Registry

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
