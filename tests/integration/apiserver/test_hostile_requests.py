"""Hostile requests against a real API server on etcd: each a 4xx Status, nothing written.

Every input of issue 15's "API answers 500" list is sent as raw HTTP on the server's unix
socket. Each answer must be a Kubernetes Status with a 4xx code (naming the field when
there is one), etcd must hold no new key under the test's prefix, and the server must not
log a traceback.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import json
import logging
import ssl
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import yaml
from aetcd import rpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kukeon.store import Registry
from kukeon.store.keys import range_end
from tests.integration.apiserver.conftest import Api, cell_doc, realm_doc, space_doc, stack_doc

pytestmark = pytest.mark.integration

V = "/apis/kukeon.io/v1beta1"
CELLS = f"{V}/realms/default/spaces/default/stacks/default/cells"


async def _keys(registry: Registry) -> list[bytes]:
    prefix = registry.key_prefix.encode() + b"/"
    request = rpc.RangeRequest(key=prefix, range_end=range_end(prefix), keys_only=True)
    reply = await registry.client.kvstub.Range(request, metadata=registry.client.metadata)
    return sorted(kv.key for kv in reply.kvs)


def _status(body: bytes, code: int) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(body)
    assert document["kind"] == "Status", document
    assert document["apiVersion"] == "v1"
    assert document["status"] == "Failure"
    assert document["code"] == code, document
    # At most ~200 characters of any one value are quoted back.
    for repeated in ("a" * 250, "A" * 250, "9" * 250):
        assert repeated not in json.dumps(document), document["message"][:300]
    return document


@pytest.fixture
async def hierarchy(http: aiohttp.ClientSession) -> None:
    for path, doc in (
        (f"{V}/realms", realm_doc("default")),
        (f"{V}/realms/default/spaces", space_doc("default")),
        (f"{V}/realms/default/spaces/default/stacks", stack_doc("default")),
    ):
        async with http.post(path, json=doc) as response:
            assert response.status == 201, await response.text()


@pytest.fixture
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.DEBUG)
    yield
    for record in caplog.records:
        if record.name.startswith("grpc") and record.levelno <= logging.DEBUG:
            continue  # grpc's note that a stopped watch's request stream was cancelled
        assert record.exc_info is None or record.levelno < logging.ERROR, record.getMessage()
        assert "Traceback" not in record.getMessage()


async def _raw(api: Api, request: bytes) -> tuple[int, bytes]:
    """One raw HTTP/1.1 exchange on the unix socket: (status, body)."""
    reader, writer = await asyncio.open_unix_connection(str(api.socket))
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(5):
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            body = await reader.readexactly(length)
        return int(head.split(b" ", 2)[1]), body
    finally:
        writer.close()


def _cell_with(**container: Any) -> dict[str, Any]:
    doc = cell_doc("hostile")
    doc["spec"]["containers"][0].update(container)
    return doc


BODIES: list[tuple[str, bytes, str, int, str | None]] = [
    ("json nested 10,000 deep", b"[" * 10_000 + b"]" * 10_000, "application/json", 400, None),
    (
        "deep inside a cell",
        json.dumps(_cell_with(args=["x"])).replace('["x"]', "[" * 5000 + "1" + "]" * 5000).encode(),
        "application/json",
        400,
        None,
    ),
    ("yaml flow list 20,000 deep", b"[" * 20_000 + b"]" * 20_000, "application/yaml", 400, None),
    (
        "lone surrogate in command",
        json.dumps(_cell_with(command="/bin/\ud800")).encode(),
        "application/json",
        422,
        "spec.containers[0].command",
    ),
    (
        "NUL in args",
        json.dumps(_cell_with(args=["a\x00b"])).encode(),
        "application/json",
        422,
        "spec.containers[0].args",
    ),
    (
        "duplicate key in JSON",
        b'{"kind":"Cell","metadata":{"name":"a","name":"b"},"spec":{}}',
        "application/json",
        422,
        "metadata.name",
    ),
    (
        "duplicate key in YAML",
        b"kind: Cell\nmetadata:\n  name: a\n  name: b\n",
        "application/yaml",
        422,
        "metadata.name",
    ),
    (
        "YAML alias bomb",
        b"a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n",
        "application/yaml",
        400,
        "b[0]",
    ),
    (
        "a megabyte name",
        json.dumps({"kind": "Cell", "metadata": {"name": "A" * 1_000_000}}).encode(),
        "application/json",
        422,
        "metadata.name",
    ),
    (
        "restartBackoffSeconds 1e20",
        json.dumps(_cell_with(restartPolicy="always", restartBackoffSeconds=1e20)).encode(),
        "application/json",
        422,
        "spec.containers[0].restartBackoffSeconds",
    ),
    (
        "secret named ..",
        json.dumps(
            _cell_with(secrets=[{"name": "..", "fromEnv": "X", "mountPath": "/s"}])
        ).encode(),
        "application/json",
        422,
        "spec.containers[0].secrets[0].name",
    ),
    (
        "nodeName /",
        json.dumps(
            {**cell_doc("hostile"), "spec": {**cell_doc("x")["spec"], "nodeName": "/"}}
        ).encode(),
        "application/json",
        422,
        "spec.nodeName",
    ),
    (
        "ports 99999:-1/xyz",
        json.dumps(_cell_with(ports=["99999:-1/xyz"])).encode(),
        "application/json",
        422,
        "spec.containers[0].ports[0]",
    ),
]


@pytest.mark.parametrize(
    ("body", "content_type", "code", "field"),
    [case[1:] for case in BODIES],
    ids=[case[0] for case in BODIES],
)
@pytest.mark.usefixtures("hierarchy", "no_tracebacks")
async def test_hostile_bodies_are_refused(
    api: Api,
    http: aiohttp.ClientSession,
    body: bytes,
    content_type: str,
    code: int,
    field: str | None,
) -> None:
    before = await _keys(api.registry)
    for dry_run in ("?dryRun=All", ""):
        async with http.post(
            CELLS + dry_run, data=body, headers={"Content-Type": content_type}
        ) as response:
            status = _status(await response.read(), code)
        if field is not None:
            causes = [cause["field"] for cause in status["details"]["causes"]]
            assert field in causes, status
        assert "A" * 300 not in status["message"]
    assert await _keys(api.registry) == before


@pytest.mark.usefixtures("hierarchy", "no_tracebacks")
@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("watch=true&resourceVersion=" + "9" * 40, "resourceVersion"),
        ("watch=true&resourceVersion=-1", "resourceVersion"),
        ("watch=true&timeoutSeconds=nan", "timeoutSeconds"),
        ("watch=true&timeoutSeconds=1e308", "timeoutSeconds"),
        ("watch=true&timeoutSeconds=-5", "timeoutSeconds"),
        ("watch=maybe", "watch"),
        ("resourceVersion=abc", "resourceVersion"),
        ("fieldSelector=spec.x=1", "fieldSelector"),
        ("labelSelector=" + "a" * 5000, "labelSelector"),
        # No list is split here: a continue token was never issued (a forged one restarted
        # the list unseen), and the watch-list protocol is not spoken.
        ("limit=1&continue=eyJydiI6MX0", "continue"),
        ("watch=true&timeoutSeconds=1&continue=x", "continue"),
        ("limit=-1", "limit"),
        ("limit=abc", "limit"),
        ("limit=" + "9" * 30, "limit"),
        ("sendInitialEvents=true", "sendInitialEvents"),
        ("watch=true&timeoutSeconds=1&sendInitialEvents=false", "sendInitialEvents"),
        ("watch=true&timeoutSeconds=1&allowWatchBookmarks=garbage", "allowWatchBookmarks"),
    ],
)
async def test_bad_query_parameters_are_400(
    http: aiohttp.ClientSession, query: str, name: str
) -> None:
    async with http.get(f"{CELLS}?{query}") as response:
        status = _status(await response.read(), 400)
    assert [cause["field"] for cause in status["details"]["causes"]] == [name]


@pytest.mark.usefixtures("hierarchy", "no_tracebacks")
async def test_a_limit_is_answered_with_the_whole_list_and_no_continue_token(
    http: aiohttp.ClientSession,
) -> None:
    """``limit`` may be ignored (Kubernetes lets a server answer whole, without a continue
    token, which ends a client's pager)."""
    for name in ("a", "b"):
        async with http.post(CELLS, json=cell_doc(name)) as response:
            assert response.status == 201
    async with http.get(CELLS, params={"limit": "1"}) as response:
        listed = await response.json()
    assert [item["metadata"]["name"] for item in listed["items"]] == ["a", "b"]
    assert "continue" not in listed["metadata"]


@pytest.mark.usefixtures("hierarchy", "no_tracebacks")
@pytest.mark.parametrize("bad", ["..%2F..%2Fetc", "a%2Fb", "..", "%2E%2E", "%2F"])
@pytest.mark.parametrize(
    ("method", "path", "param"),
    [
        ("GET", "/realms/{}", "realm"),
        ("GET", "/realms/{}/spaces", "realm"),
        ("GET", "/realms/{}/spaces?watch=true&timeoutSeconds=1", "realm"),
        ("GET", "/realms/default/spaces/default/stacks/{}/cells", "stack"),
        ("GET", "/realms/default/spaces/default/stacks/{}/cellsets", "stack"),
        ("GET", "/realms/default/spaces/{}/stacks/-/secrets", "space"),
        ("POST", "/realms/{}/spaces", "realm"),
        ("PUT", "/realms/default/spaces/default/stacks/default/cells/{}", "cell"),
        ("DELETE", "/realms/default/spaces/default/stacks/default/cells/{}", "cell"),
        ("GET", "/nodes/{}", "node"),
    ],
)
async def test_a_name_no_key_can_hold_in_the_url_is_400(
    api: Api, method: str, path: str, param: str, bad: str
) -> None:
    """A name with an encoded '/' or a '.'/'..' segment names no object: a 400 naming the
    path segment, on every route (lists from the watch cache answered 500 with it)."""
    before = await _keys(api.registry)
    body = b"{}"
    code, answer = await _raw(
        api,
        f"{method} {V}{path.format(bad)} HTTP/1.1\r\nHost: k\r\n".encode()
        + b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n"
        + body,
    )
    if bad in ("..", "%2E%2E") and code == 404:
        return  # aiohttp resolved the dot segment before routing: another URL, not found
    status = _status(answer, 400)
    assert [cause["field"] for cause in status["details"]["causes"]] == [param], status
    assert await _keys(api.registry) == before


@pytest.mark.usefixtures("hierarchy", "no_tracebacks")
@pytest.mark.parametrize("plural", ["cellprofiles", "secrets"])
async def test_a_stack_under_no_space_is_a_422_for_every_scoped_kind(
    http: aiohttp.ClientSession, plural: str
) -> None:
    """spaces/-/stacks/NAME names no scope (a stack needs its space): the same 422 whether
    the list is read from etcd (Secrets) or from the watch cache (CellProfiles: 500)."""
    url = f"{V}/realms/default/spaces/-/stacks/default/{plural}"
    async with http.get(f"{V}/{plural}") as warm:  # the cache has listed
        assert warm.status == 200, await warm.text()
    async with http.get(url) as response:
        status = _status(await response.read(), 422)
    assert "a stack needs its space" in status["message"], status


@pytest.mark.usefixtures("no_tracebacks")
async def test_cells_whose_names_no_node_could_name_host_objects_after_are_422(
    api: Api, http: aiohttp.ClientSession
) -> None:
    """realm, space, stack and cell of 63 characters each: a valid name for each, but the
    cell's network namespace file would pass Linux's 255 characters, so it never started."""
    r, s, t = "r" * 63, "s" * 63, "t" * 63
    for path, doc in (
        (f"{V}/realms", realm_doc(r)),
        (f"{V}/realms/{r}/spaces", space_doc(s)),
        (f"{V}/realms/{r}/spaces/{s}/stacks", stack_doc(t)),
    ):
        async with http.post(path, json=doc) as response:
            assert response.status == 201, await response.text()
    before = await _keys(api.registry)
    cells = f"{V}/realms/{r}/spaces/{s}/stacks/{t}/cells"
    for dry_run in ("?dryRun=All", ""):
        async with http.post(cells + dry_run, json=cell_doc("c" * 63)) as response:
            status = _status(await response.read(), 422)
        assert [c["field"] for c in status["details"]["causes"]] == ["metadata.name"], status
        assert "over the 230" in status["message"]
    set_doc = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "CellSet",
        "metadata": {"name": "w" * 40},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "w"}},
            "template": {"metadata": {"labels": {"app": "w"}}, "spec": cell_doc("x")["spec"]},
        },
    }
    async with http.post(
        f"{V}/realms/{r}/spaces/{s}/stacks/{t}/cellsets", json=set_doc
    ) as response:
        status = _status(await response.read(), 422)
    assert "set's cells" in status["message"]
    assert await _keys(api.registry) == before
    # What fits is taken: 63 * 3 + 38 + 3 = 230.
    async with http.post(cells, json=cell_doc("c" * 38)) as response:
        assert response.status == 201, await response.text()


@pytest.mark.usefixtures("no_tracebacks")
async def test_an_oversized_content_length_is_refused_at_once(api: Api) -> None:
    started = time.monotonic()
    code, body = await _raw(
        api,
        b"POST " + V.encode() + b"/realms HTTP/1.1\r\nHost: kukeond\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n{}",
    )
    assert code == 413
    _status(body, 413)
    assert time.monotonic() - started < 3


@pytest.mark.usefixtures("no_tracebacks")
@pytest.mark.parametrize(
    ("request_bytes", "code"),
    [
        (b"GET " + V.encode() + b"/realms?x=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: k\r\n\r\n", 414),
        (b"GET /healthz HTTP/1.1\r\nHost: k\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"POST /x HTTP/1.1\r\nHost: k\r\nContent-Length: abc\r\n\r\n", 400),
    ],
    ids=["url over 8 KiB", "header over 8 KiB", "malformed content-length"],
)
async def test_what_the_http_parser_refuses_is_a_status(
    api: Api, request_bytes: bytes, code: int
) -> None:
    status, body = await _raw(api, request_bytes)
    assert status == code
    _status(body, code)


def _answered(api: Api, method: str, code: int) -> float:
    value = api.metrics.get_sample_value(
        "kukeon_apiserver_requests_total", {"method": method, "code": str(code)}
    )
    return value or 0.0


def _cut_body(framing: str, body: bytes) -> tuple[str, bytes]:
    """A header announcing ``body`` whole, and the half of it that is sent."""
    if framing == "chunked":
        return "Transfer-Encoding: chunked", b"%x\r\n" % len(body) + body[: len(body) // 2]
    return f"Content-Length: {len(body)}", body[: len(body) // 2]


@pytest.mark.usefixtures("hierarchy", "no_tracebacks")
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_a_body_its_client_stops_sending_writes_nothing_and_logs_no_error(
    api: Api, http: aiohttp.ClientSession, method: str, framing: str
) -> None:
    """The client closes its side halfway through the body: aiohttp fails the body's read
    with ConnectionResetError, which was logged at ERROR with a traceback and counted a 500."""
    path, stored = await _stored_cell(http, "cut")
    if method == "POST":
        path, body = CELLS, json.dumps(cell_doc("cut-new")).encode()
        content_type = "application/json"
    else:
        body = b'{"metadata": {"labels": {"app": "changed"}}}'
        content_type = "application/merge-patch+json"
    framing_header, sent = _cut_body(framing, body)
    before, answered = await _keys(api.registry), _answered(api, method, 400)
    reader, writer = await asyncio.open_unix_connection(str(api.socket))
    try:
        writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: kukeond\r\nContent-Type: {content_type}\r\n"
            f"{framing_header}\r\n\r\n".encode()
            + sent
        )
        await writer.drain()
        writer.write_eof()  # aiohttp takes the end of the client's sending as the connection's
        async with asyncio.timeout(10):
            assert await reader.read() == b""  # nobody left to answer
            while _answered(api, method, 400) == answered:  # noqa: ASYNC110 (the handler ended)
                await asyncio.sleep(0.02)
    finally:
        writer.close()
    assert await _keys(api.registry) == before
    async with http.get(f"{CELLS}/cut") as response:
        assert (await response.json())["metadata"] == stored["metadata"]


def _connections_served() -> list[asyncio.Task[Any]]:
    return [
        task
        for task in asyncio.all_tasks()
        if getattr(task.get_coro(), "__qualname__", "") == "StatusRequestHandler.start"
    ]


@pytest.mark.usefixtures("no_tracebacks")
async def test_a_malformed_request_over_tls_whose_client_hangs_up_logs_no_error(api: Api) -> None:
    """The malformed request's answer closes the TLS transport and the client's hang-up
    closes it again, which drops asyncio's TLS protocol: reading its unsent bytes then
    raised AttributeError in the connection's task ("Task exception was never retrieved",
    logged at ERROR by asyncio)."""
    url = urllib.parse.urlsplit(api.https)
    context = ssl.create_default_context(cafile=str(api.ca))
    for _ in range(3):
        _reader, writer = await asyncio.open_connection(url.hostname, url.port, ssl=context)
        writer.write(b"GET " + V.encode() + b"/realms HTTP/1.1\r\nHost: k\r\nX-A: a\x00b\r\n\r\n")
        await writer.drain()
        writer.close()
    async with asyncio.timeout(10):
        while _connections_served():  # noqa: ASYNC110 (each connection's task ended)
            await asyncio.sleep(0.05)
    gc.collect()  # a task's unretrieved exception is logged when the task is collected


@pytest.mark.usefixtures("hierarchy")
async def test_dry_run_create_checks_the_parent_and_writes_nothing(
    api: Api, http: aiohttp.ClientSession
) -> None:
    before = await _keys(api.registry)
    orphan = f"{V}/realms/default/spaces/default/stacks/missing/cells"
    async with http.post(orphan + "?dryRun=All", json=cell_doc("web")) as response:
        status = _status(await response.read(), 404)
    assert "does not exist" in status["message"]
    async with http.post(CELLS + "?dryRun=All", json=cell_doc("web")) as response:
        assert response.status == 201, await response.text()
    assert await _keys(api.registry) == before


# --- random mutations of a valid cell: never a 5xx -------------------------------------------

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["", "..", "/", "\x00", "\ud800", "a" * 300, "99999:-1/xyz"]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
_PATHS = [
    ("metadata", "name"),
    ("metadata", "labels"),
    ("spec", "nodeName"),
    ("spec", "containers"),
    ("spec", "containers", 0, "command"),
    ("spec", "containers", 0, "args"),
    ("spec", "containers", 0, "env"),
    ("spec", "containers", 0, "ports"),
    ("spec", "containers", 0, "resources"),
    ("spec", "containers", 0, "restartBackoffSeconds"),
    ("spec", "containers", 0, "secrets"),
    ("spec", "containers", 0, "volumes"),
    ("spec", "containers", 0, "image"),
    ("spec", "containers", 0, "unknownField"),
    ("spec", "rootContainerId"),
]


def _mutate(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    mutated = copy.deepcopy(doc)
    node: Any = mutated
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return mutated


@pytest.mark.usefixtures("hierarchy")
async def test_random_mutations_of_a_cell_never_get_a_5xx(
    api: Api, http: aiohttp.ClientSession
) -> None:
    base = cell_doc("mutant")
    base["spec"]["containers"][0]["restartPolicy"] = "always"
    answers: list[int] = []

    async def post(doc: dict[str, Any], as_yaml: bool) -> None:
        # ensure_ascii keeps lone surrogates as \\ud800 escapes, as a hostile client would
        body = yaml.safe_dump(doc).encode() if as_yaml else json.dumps(doc).encode()
        content_type = "application/yaml" if as_yaml else "application/json"
        async with http.post(
            CELLS + "?dryRun=All", data=body, headers={"Content-Type": content_type}
        ) as response:
            payload = await response.read()
            answers.append(response.status)
            assert response.status < 500, payload[:500]
            if response.status >= 400:
                _status(payload, response.status)

    @settings(
        max_examples=2000,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(path=st.sampled_from(_PATHS), value=_VALUES, as_yaml=st.booleans())
    def run(path: tuple[Any, ...], value: Any, as_yaml: bool) -> None:
        future = asyncio.run_coroutine_threadsafe(post(_mutate(base, path, value), as_yaml), loop)
        future.result(timeout=30)

    loop = asyncio.get_running_loop()
    before = await _keys(api.registry)
    await asyncio.to_thread(run)
    assert any(code == 201 for code in answers)
    assert any(400 <= code < 500 for code in answers)
    assert await _keys(api.registry) == before


# --- merge patches and replacements of a stored cell: a 4xx naming the field, never a 5xx -----


async def _stored_cell(http: aiohttp.ClientSession, name: str) -> tuple[str, dict[str, Any]]:
    async with http.post(CELLS, json=cell_doc(name, app="x")) as response:
        assert response.status == 201, await response.text()
        return f"{CELLS}/{name}", await response.json()


@pytest.mark.usefixtures("hierarchy", "no_tracebacks")
@pytest.mark.parametrize("metadata", [[1], "x", 3, True, [{"resourceVersion": "1"}]])
async def test_a_merge_patch_whose_metadata_is_no_object_is_400(
    api: Api, http: aiohttp.ClientSession, metadata: Any
) -> None:
    """The precondition was read with ``.get`` on whatever ``metadata`` was: a 500."""
    url, stored = await _stored_cell(http, "patched")
    before = await _keys(api.registry)
    for dry_run in ("?dryRun=All", ""):
        async with http.patch(
            url + dry_run,
            data=json.dumps({"metadata": metadata}),
            headers={"Content-Type": "application/merge-patch+json"},
        ) as response:
            status = _status(await response.read(), 400)
        assert [cause["field"] for cause in status["details"]["causes"]] == ["metadata"], status
    assert await _keys(api.registry) == before
    async with http.get(url) as response:
        unchanged = await response.json()
    assert unchanged["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]


@pytest.mark.usefixtures("hierarchy", "no_tracebacks")
@pytest.mark.parametrize("value", [{"a": 1}, [1], 1.5, True, 7])
@pytest.mark.parametrize("field", ["resourceVersion", "uid"])
@pytest.mark.parametrize("subresource", ["", "/status"])
async def test_a_patchs_precondition_that_is_no_string_is_422_naming_it(
    http: aiohttp.ClientSession, value: Any, field: str, subresource: str
) -> None:
    """A status patch drops the patch's metadata, so only the precondition read it: a 409
    "has been modified" for a version no object can have, a uid not checked (a spec patch
    was a 422 already)."""
    url, stored = await _stored_cell(http, "versioned")
    async with http.patch(
        url + subresource,
        data=json.dumps({"metadata": {field: value}, "status": {}}),
        headers={"Content-Type": "application/merge-patch+json"},
    ) as response:
        status = _status(await response.read(), 422)
    assert [cause["field"] for cause in status["details"]["causes"]] == [f"metadata.{field}"]
    async with http.get(url) as response:
        unchanged = await response.json()
    assert unchanged["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]


@pytest.mark.usefixtures("hierarchy", "no_tracebacks")
@pytest.mark.parametrize("subresource", ["", "/status"])
async def test_a_patch_for_another_uid_is_409_on_status_too(
    http: aiohttp.ClientSession, subresource: str
) -> None:
    """The uid a patch names is the object it was made against (one deleted and made again
    since is another): a status patch ignored it and wrote over the new object's status."""
    url, stored = await _stored_cell(http, "recreated")
    other = "0" * 8 + "-0000-0000-0000-" + "0" * 12
    async with http.patch(
        url + subresource,
        data=json.dumps({"metadata": {"uid": other}, "status": {"message": "x"}}),
        headers={"Content-Type": "application/merge-patch+json"},
    ) as response:
        status = _status(await response.read(), 409)
    assert "precondition failed: the uid given" in status["message"]
    async with http.get(url) as response:
        unchanged = await response.json()
    assert unchanged["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]


_WRITE_PATHS: list[tuple[Any, ...]] = [
    (),
    ("metadata",),
    ("metadata", "labels"),
    ("metadata", "finalizers"),
    ("metadata", "resourceVersion"),
    ("metadata", "uid"),
    ("metadata", "generation"),
    ("metadata", "deletionTimestamp"),
    ("kind",),
    ("apiVersion",),
    ("spec",),
    ("spec", "containers"),
    ("spec", "desiredState"),
    ("status",),
    ("status", "containers"),
    ("status", "state"),
]


def _put_at(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    """``doc`` with ``value`` at ``path`` (the whole body for an empty path)."""
    if not path:
        return value
    changed = copy.deepcopy(doc)
    node = changed
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    return changed


@pytest.mark.usefixtures("hierarchy")
async def test_random_patches_and_replacements_of_a_cell_never_get_a_5xx(
    api: Api, http: aiohttp.ClientSession
) -> None:
    """Any merge patch or PUT body (dry runs: each is checked as the write would be)."""
    url, stored = await _stored_cell(http, "target")
    answers: list[int] = []

    async def send(method: str, body: Any) -> None:
        content_type = "application/merge-patch+json" if method == "PATCH" else "application/json"
        async with http.request(
            method,
            url + "?dryRun=All",
            data=json.dumps(body),
            headers={"Content-Type": content_type},
        ) as response:
            payload = await response.read()
            answers.append(response.status)
            assert response.status < 500, (method, body, payload[:500])
            if response.status >= 400:
                _status(payload, response.status)

    @settings(
        max_examples=800,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )
    @given(
        method=st.sampled_from(["PATCH", "PUT"]), path=st.sampled_from(_WRITE_PATHS), value=_VALUES
    )
    def run(method: str, path: tuple[Any, ...], value: Any) -> None:
        body = _put_at({} if method == "PATCH" else stored, path, value)
        future = asyncio.run_coroutine_threadsafe(send(method, body), loop)
        future.result(timeout=30)

    loop = asyncio.get_running_loop()
    before = await _keys(api.registry)
    await asyncio.to_thread(run)
    assert any(code == 200 for code in answers)
    assert any(400 <= code < 500 for code in answers)
    assert await _keys(api.registry) == before


@pytest.mark.usefixtures("hierarchy", "no_tracebacks")
async def test_concurrent_patches_without_a_resource_version_all_land(
    http: aiohttp.ClientSession,
) -> None:
    """Twenty clients each adding a label of their own at once: a patch without a
    resourceVersion is applied to the newest version, so none is refused and none is lost
    (with five rounds, 14 of 20 were 409 "kept changing while being patched")."""
    url, _ = await _stored_cell(http, "crowded")

    async def label(index: int) -> int:
        async with http.patch(
            url,
            data=json.dumps({"metadata": {"labels": {f"k{index}": "v"}}}),
            headers={"Content-Type": "application/merge-patch+json"},
        ) as response:
            await response.read()
            return response.status

    assert await asyncio.gather(*(label(index) for index in range(20))) == [200] * 20
    async with http.get(url) as response:
        labels = (await response.json())["metadata"]["labels"]
    assert {f"k{index}" for index in range(20)} <= set(labels), labels


@pytest.mark.usefixtures("hierarchy", "no_tracebacks")
async def test_a_patch_with_an_empty_resource_version_is_unconditional(
    http: aiohttp.ClientSession,
) -> None:
    """``resourceVersion: ""`` asks for no version, as a replace's does: it was a 409."""
    url, stored = await _stored_cell(http, "unconditional")
    async with http.patch(
        url,
        data=json.dumps({"metadata": {"resourceVersion": "", "labels": {"b": "1"}}}),
        headers={"Content-Type": "application/merge-patch+json"},
    ) as response:
        assert response.status == 200, await response.text()
        patched = await response.json()
    assert patched["metadata"]["labels"]["b"] == "1"
    assert patched["metadata"]["resourceVersion"] != stored["metadata"]["resourceVersion"]
