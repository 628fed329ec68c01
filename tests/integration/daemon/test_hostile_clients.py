"""Hostile clients on what the other sweeps leave out, against a real kukeond.

``test_every_route.py`` sends hostile query parameters and path segments to every route, and
mutations of each kind's document; ``apiserver/test_hostile_requests.py`` hostile bodies to
the resource routes. This module sends the rest, each answer a Status below 500, nothing
stored when refused, and no traceback in kukeond's log:

- bodies of every sort (content types, codings that do not decode or decode to a lot,
  charsets, nesting, sizes, headers) to every route that takes one, as a realm's editor and
  as an admin, so the routes that refuse a body unread (401, 403, 415) get them too;
- profile runs and CellSets whose values would be put in at many places of a template.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import random
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from kukeon.api import AnyResource, Kind
from tests.fixtures.kukeond import Kukeond
from tests.fixtures.tlskukeond import TlsKukeond, tls_kukeond  # noqa: F401 - the fixture
from tests.integration.daemon.test_every_route import (
    Route,
    _objects,
    check_answer,
    path_values,
    served_routes,
    tracebacks,
)

pytestmark = pytest.mark.integration

API = "http://kukeond/apis/kukeon.io/v1beta1"
SEED = 198
DEEP = b"[" * 100_000 + b"]" * 100_000
Case = tuple[str, str, bytes, dict[str, str]]
"""(name, Content-Type, body, more headers)"""

CODED: list[Case] = [
    ("gzip not gzip", "application/json", b"not gzip", {"Content-Encoding": "gzip"}),
    ("deflate not deflate", "application/json", b"no", {"Content-Encoding": "deflate"}),
    (
        "gzip cut",
        "application/json",
        gzip.compress(b"{}" * 1000)[:30],
        {"Content-Encoding": "gzip"},
    ),
    ("gzip deep", "application/json", gzip.compress(DEEP), {"Content-Encoding": "gzip"}),
    (
        "gzip of 64 MiB",
        "application/json",
        gzip.compress(b"\x00" * (64 << 20), compresslevel=9),
        {"Content-Encoding": "gzip"},
    ),
    (
        "deflate of 64 MiB",
        "application/json",
        zlib.compress(b"\x00" * (64 << 20), 9),
        {"Content-Encoding": "deflate"},
    ),
]
"""Coded bodies: refused unread (a 403, a 415), aiohttp's lingering read decoded them."""

OTHERS: list[Case] = [
    ("text/plain", "text/plain", b"hello", {}),
    ("form", "application/x-www-form-urlencoded", b"a=1&b=2", {}),
    ("multipart", "multipart/form-data; boundary=x", b"--x\r\n\r\nzz\r\n--x--\r\n", {}),
    ("yaml broken", "application/yaml", b"a: [\n: : :", {}),
    ("yaml python tag", "application/yaml", b"!!python/object/apply:os.system ['true']", {}),
    ("json patch", "application/json-patch+json", b'[{"op":"replace","path":"/x","value":1}]', {}),
    ("strategic merge", "application/strategic-merge-patch+json", b"{}", {}),
    ("apply patch", "application/apply-patch+yaml", b"{}", {}),
    ("utf-16", "application/json; charset=utf-16", "{}".encode("utf-16"), {}),
    ("latin-1", "application/json; charset=latin-1", b'{"a":"\xe9"}', {}),
    ("no content type", "", b"{}", {}),
    ("content type ==/==", "==/==", b"{}", {}),
    ("json cut", "application/json", b'{"kind":', {}),
    ("invalid utf-8", "application/json", b'{"kind":"\xff\xfe"}', {}),
    ("NUL", "application/json", b'{"kind":"Cell\x00"}', {}),
    ("null", "application/json", b"null", {}),
    ("1e999", "application/json", b"1e999", {}),
    ("deep json", "application/json", DEEP, {}),
    ("deep yaml", "application/yaml", DEEP, {}),
    ("3 MiB", "application/json", b'{"a":"' + b"x" * (3 << 20) + b'"}', {}),
    ("br", "application/json", b"{}", {"Content-Encoding": "br"}),
    ("Expect 200-ok", "application/json", b"{}", {"Expect": "200-ok"}),
    ("Accept protobuf;;", "application/json", b"{}", {"Accept": "application/x;;;=="}),
    ("Authorization latin-1", "application/json", b"{}", {"Authorization": "Bearer \u00e9"}),
    ("Authorization Basic", "application/json", b"{}", {"Authorization": "Basic Zm9vOmJhcg=="}),
]
CODED_PER_ROUTE = 2
OTHERS_PER_ROUTE = 2
"""How many of ``CODED`` and of ``OTHERS`` each (route, caller) gets, seeded (each case is
sent to dozens of routes: the whole product takes a minute)."""


async def _send(http: aiohttp.ClientSession, url: str, route: Route, case: Case) -> str | None:
    """What is wrong with the answer to ``case`` on ``route``, or None."""
    name, content_type, body, more = case
    headers = {**more, **({"Content-Type": content_type} if content_type else {})}
    skip = () if content_type else ("Content-Type",)
    where = f"{route.method} {url} [{name}]"
    try:
        async with (
            asyncio.timeout(30),
            http.request(
                route.method, url, data=body, headers=headers, skip_auto_headers=skip
            ) as answer,
        ):
            payload = b"" if answer.status < 300 else await answer.read()
            return check_answer(where, answer.status, answer.content_type, payload)
    except (aiohttp.ClientError, TimeoutError) as error:
        return f"{where}: {error!r}"


async def _sweep(
    http: aiohttp.ClientSession, cases: dict[Route, list[Case]], values: dict[str, str]
) -> list[str]:
    """Every case of each route, four at a time; what was wrong with the answers."""
    limit = asyncio.Semaphore(4)

    async def one(route: Route, case: Case) -> str | None:
        async with limit:
            return await _send(http, route.url(values), route, case)

    answers = await asyncio.gather(
        *(one(route, case) for route, listed in cases.items() for case in listed)
    )
    return [answer for answer in answers if answer is not None]


async def test_every_body_route_answers_hostile_bodies_with_a_status_and_logs_no_traceback(
    tls_kukeond: TlsKukeond,  # noqa: F811 - the fixture imported above
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    node, k = tls_kukeond, tls_kukeond.k
    connector = aiohttp.UnixConnector(path=str(k.config.api_socket))
    async with aiohttp.ClientSession(connector=connector) as local:
        await _objects(k, local, API)
    values = path_values(k)
    routes = [r for r in served_routes(k) if r.method in ("POST", "PUT", "PATCH")]
    chosen = random.Random(SEED)
    problems: list[str] = []
    for who in ("editor", "admin"):
        cases = {
            route: chosen.sample(CODED, CODED_PER_ROUTE) + chosen.sample(OTHERS, OTHERS_PER_ROUTE)
            for route in routes
        }
        async with node.session(who) as http:
            answers = await _sweep(http, cases, values)
        problems.extend(f"{who}: {problem}" for problem in answers)
    problems.extend(tracebacks(caplog))
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(sorted(problems)[:40])


# --- profile values put in at many places -------------------------------------------------

REFERENCES = 250
VALUE = "a" * 900_000
"""At each of REFERENCES places: 225 MB of cell made from a body under 1 MiB."""


async def test_values_that_would_make_a_cell_over_the_limit_are_422_naming_the_parameter(
    kukeond: Kukeond, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    k = kukeond
    await k.hierarchy()
    stack = f"{API}/realms/{k.realm}/spaces/s1/stacks/st1"
    profile = {
        "kind": "CellProfile",
        "metadata": {"name": "many"},
        "spec": {
            "parameters": [{"name": "X"}],
            "cell": {
                "containers": [
                    {
                        "id": "main",
                        "image": k.image.name,
                        "command": "sh",
                        "args": ["-c", "${X}" * REFERENCES],
                    }
                ]
            },
        },
    }
    cellset = {
        "kind": "CellSet",
        "metadata": {"name": "many"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "many"}},
            "template": {"metadata": {"labels": {"app": "many"}}},
            "profile": "many",
            "params": {"X": VALUE},
        },
    }
    connector = aiohttp.UnixConnector(path=str(k.config.api_socket))
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.post(f"{stack}/cellprofiles", json=profile) as answer:
            assert answer.status == 201, await answer.text()
        writes = [
            (
                f"{stack}/profileruns",
                {"profile": "many", "name": "big", "parameters": {"X": VALUE}},
                "parameters.X",
                f"{stack}/cells/big",
            ),
            (f"{stack}/cellsets", cellset, "spec.params.X", f"{stack}/cellsets/many"),
        ]
        for url, body, field, stored in writes:
            for dry_run in ({"dryRun": "All"}, {}):
                started = time.perf_counter()
                async with http.post(url, json=body, params=dry_run) as answer:
                    status, refused = answer.status, await answer.json()
                took = time.perf_counter() - started
                assert status == 422, (url, status, str(refused)[:300])
                causes = refused["details"]["causes"]
                assert [c["field"] for c in causes] == [field], causes
                assert f"{REFERENCES} references" in causes[0]["message"]
                assert took < 10, took  # counted, not made and measured
                async with http.get(stored) as answer:
                    assert answer.status == 404, await answer.text()
    assert not tracebacks(caplog)


# --- cells whose host paths are not what they name -------------------------------------


async def failed_cell(
    k: Kukeond, name: str, fields: dict[str, Any], until: Callable[[AnyResource], bool]
) -> AnyResource:
    """A cell of one container with ``fields``, as read once ``until`` holds; deleted after."""
    await k.hierarchy()
    container = {"id": "main", "image": k.image.name, "command": "sleep", "args": ["60"]}
    spec = {"realmId": k.realm, "spaceId": "s1", "stackId": "st1"}
    cell = {"containers": [{**container, **fields}], **spec}
    await k.apply({"kind": "Cell", "metadata": {"name": name}, "spec": cell})
    key = (k.realm, "s1", "st1", name)
    try:
        return await k.wait_for(Kind.CELL, key, until=until)
    finally:
        await k.registry.delete(Kind.CELL, key)
        await k.wait_gone(Kind.CELL, key)


@pytest.mark.parametrize("path", ["/", "/dev/zero"])
async def test_a_cni_config_path_naming_no_conflist_file_fails_the_cell_not_kukeond(
    kukeond: Kukeond, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    """A directory was read as a file (IsADirectoryError, a traceback at every retry) and a
    device for ever (/dev/zero: kukeond's memory): each is the cell's NetworkFailed."""
    caplog.set_level(logging.WARNING)
    failed = await failed_cell(
        kukeond,
        "noconf",
        {"cniConfigPath": path},
        lambda cell: "is not a regular file" in str(cell.status.message),
    )
    assert failed.status.reason == "NetworkFailed", failed.status
    assert not tracebacks(caplog)


async def test_a_missing_bind_source_with_a_newline_is_the_cells_bind_source_refused(
    kukeond: Kukeond, caplog: pytest.LogCaptureFixture
) -> None:
    """runc writes the path raw after `stat`: a newline in it hid the refusal, and the cell
    failed as UnexpectedError with a traceback at every retry (found with a profile value
    put in a volume's source)."""
    caplog.set_level(logging.WARNING)
    volume = {"source": f"/tmp/{kukeond.realm}-none\nb", "target": "/a\nb"}
    refused = await failed_cell(
        kukeond,
        "nl",
        {"volumes": [volume]},
        lambda cell: cell.status.reason == "BindSourceRefused",
    )
    assert "volumes[0].source" in str(refused.status.message), refused.status
    assert not tracebacks(caplog)


# --- a cell deleted as it should be -------------------------------------------------------


async def test_a_cell_deleted_through_the_api_is_not_taken_for_one_gone_without_deletion(
    kukeond: Kukeond, caplog: pytest.LogCaptureFixture
) -> None:
    """Found sweeping profile runs, whose cells were deleted right after their create: every
    deletion logged 'gone from etcd without being deleted' and started an orphan pass of the
    whole node, the last version seen still holding the finalizer whose removal took the key."""
    caplog.set_level(logging.WARNING)
    k = kukeond
    await k.hierarchy()
    controllers = k.daemon.controllers
    assert controllers is not None
    cells = f"{API}/realms/{k.realm}/spaces/s1/stacks/st1/cells"
    container = {"id": "main", "image": k.image.name, "command": "sleep", "args": ["60"]}
    connector = aiohttp.UnixConnector(path=str(k.config.api_socket))
    async with aiohttp.ClientSession(connector=connector) as http:
        for name, wait_ready in (("ready", True), ("young", False)):
            cell = {"kind": "Cell", "metadata": {"name": name}, "spec": {"containers": [container]}}
            async with http.post(cells, json=cell) as answer:
                assert answer.status == 201, await answer.text()
            key = (k.realm, "s1", "st1", name)
            if wait_ready:
                await k.wait_for(Kind.CELL, key, state="Ready")
            passes = controllers.orphan_passes
            async with http.delete(f"{cells}/{name}") as answer:
                assert answer.status in (200, 202), await answer.text()
            await k.wait_gone(Kind.CELL, key)
            await asyncio.sleep(1)  # the change listener has heard the key go
            assert controllers.orphan_passes == passes, name
    warned = [r.getMessage() for r in caplog.records if "without being deleted" in r.getMessage()]
    assert not warned, warned


# --- websocket sessions and bodies a client breaks off ------------------------------------

RESIZE = b"\x04"
STDIN = b"\x00"
SESSIONS: list[tuple[str, str, list[tuple[str, str]], Sequence[bytes | str]]] = [
    (
        "frames no client sends",
        "exec",
        [("command", "cat"), ("stdin", "true"), ("tty", "true")],
        [
            RESIZE + b"{",
            RESIZE + json.dumps({"Width": -1, "Height": 10**30}).encode(),
            RESIZE + json.dumps({"Width": 1e308, "Height": "x"}).encode(),
            RESIZE + b"null",
            b"\x09unknown channel",
            "a text frame",
            STDIN + b"hi\n",
            STDIN,
            STDIN,  # stdin closed twice
            STDIN + b"after its end",
        ],
    ),
    (
        "a frame over 1 MiB",
        "exec",
        [("command", "cat"), ("stdin", "true")],
        [STDIN + b"x" * (1 << 20)],
    ),
    ("NUL command", "exec", [("command", "\x00")], []),
    (
        "no tar stream",
        "cp",
        [("mode", "write"), ("path", "/tmp/x")],
        [STDIN + b"garbage" * 1000, STDIN],
    ),
    ("a closed port", "portforward", [("port", "81")], [STDIN + b"hello", b"\x07?", "text"]),
]
ABORTED: list[tuple[str, list[tuple[str, str]], list[bytes]]] = [
    ("exec", [("command", "cat"), ("stdin", "true")], [STDIN + b"abc"]),
    ("cp", [("mode", "write"), ("path", "/tmp/x")], [STDIN + b"\x00" * 5000]),
    ("cp", [("mode", "read"), ("path", "/bin")], []),
]


async def _session(
    http: aiohttp.ClientSession,
    url: str,
    query: list[tuple[str, str]],
    frames: Sequence[bytes | str],
    *,
    abort: bool = False,
) -> int | None:
    """Send ``frames``, then read to the end (the close code) or break the connection."""
    async with asyncio.timeout(30), http.ws_connect(url, params=query) as socket:
        for frame in frames:
            await (socket.send_str(frame) if isinstance(frame, str) else socket.send_bytes(frame))
        if abort:
            await asyncio.sleep(0.3)
            connection = socket._response.connection  # a hang-up, not a close
            assert connection is not None
            assert connection.transport is not None
            connection.transport.abort()
            return None
        async for _ in socket:
            pass
        return socket.close_code


async def _cut_short(k: Kukeond, head: bytes, sent: bytes) -> None:
    """A request whose client hangs up after ``sent`` of the body ``head`` announces."""
    _, writer = await asyncio.open_unix_connection(str(k.config.api_socket))
    writer.write(head + sent)
    await writer.drain()
    writer.transport.abort()


async def test_broken_sessions_and_bodies_leave_nothing_and_kukeond_answers(
    kukeond: Kukeond, caplog: pytest.LogCaptureFixture
) -> None:
    """What held on HEAD (helper-198's sweep), kept: hostile frames end a session with its
    status or a close code, a client that leaves mid-session or mid-body leaves no session
    directory, cell or image behind, and kukeond logs no traceback."""
    caplog.set_level(logging.WARNING)
    k = kukeond
    connector = aiohttp.UnixConnector(path=str(k.config.api_socket))
    async with aiohttp.ClientSession(connector=connector) as http:
        await _objects(k, http, API)
        cells = f"{API}/realms/{k.realm}/spaces/s1/stacks/st1/cells"
        for name, route, query, frames in SESSIONS:
            code = await _session(http, f"{cells}/c1/{route}", query, frames)
            assert code in (1000, 1009), (name, code)  # 1009: over max_msg_size
        for route, query, frames in ABORTED:
            await _session(http, f"{cells}/c1/{route}", query, frames, abort=True)
        images = f"/apis/kukeon.io/v1beta1/realms/{k.realm}/images"
        async with http.get(f"http://kukeond{images}") as answer:
            before = (await answer.json())["items"]
        path = cells.removeprefix("http://kukeond")
        for head, sent in (
            (f"POST {images} HTTP/1.1\r\nContent-Length: 50000000", b"\x00" * 200_000),
            (f"POST {path} HTTP/1.1\r\nContent-Length: 5000", b'{"kind":'),
        ):
            await _cut_short(k, f"{head}\r\nHost: k\r\n\r\n".encode(), sent)
        sessions = Path(k.config.state_dir) / "exec"
        deadline = time.monotonic() + 20
        while (left := list(sessions.iterdir())) and time.monotonic() < deadline:  # noqa: ASYNC110 - a directory, no event
            await asyncio.sleep(0.2)
        assert not left
        async with http.get(f"http://kukeond{images}") as answer:
            assert (await answer.json())["items"] == before
        async with http.get(cells) as answer:
            assert [c["metadata"]["name"] for c in (await answer.json())["items"]] == ["c1"]
        async with http.get("http://kukeond/readyz") as answer:
            assert answer.status == 200, await answer.text()
    assert not tracebacks(caplog)
