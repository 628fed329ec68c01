"""Every route kukeond serves, every query parameter the server reads, hostile values: never a 500.

The routes come from kukeond's own router (``Daemon.api_app``), so a route added later is
sent the same requests without this file changing; its path parameters are filled from
``path_values`` (a new parameter name fails the test until it is named there). The query
parameter names are read from the server's source (every ``query.get("x")``,
``single(request, "x")``, ...), each sent alone on every route with hostile values.

Each answer must be below 500 (a 503 or 504 that is a Status with a reason is allowed),
a 4xx must be a JSON Status, and kukeond must log no traceback. The committed run sends a
fixed, seeded share of the values; ``KUKEON_EVERY_VALUE=1`` sends every value to every
route and parameter (a few minutes more), to look for what the share misses.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import random
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote as urlquote

import aiohttp
import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from kukeon.api import Kind
from tests.fixtures.kukeond import Kukeond

pytestmark = pytest.mark.integration

SOURCE = Path(__file__).resolve().parents[3] / "operator" / "kukeon"
SEED = 159
EVERY_VALUE = os.environ.get("KUKEON_EVERY_VALUE") == "1"
VALUES_PER_PARAMETER = 3
"""How many of ``HOSTILE`` each (route, parameter) gets in the committed run."""

HOSTILE: tuple[str, ...] = (
    "",
    "-1",
    "9" * 40,
    "²",
    "١٢",  # Arabic-Indic digits: str.isdigit() says yes, int() reads 12
    "1e309",
    "nan",
    "-0",
    "0x10",
    " 1",
    "\x00",
    "%00",
    "%zz",
    "é" * 3,
    "a" * 10_000,
    "TRUE",
    "on",
    "yes please",
    "2026-13-45T99:99:99Z",
    "../../etc/passwd",
    "[]",
    "{}",
)
"""Each sent as the value of one parameter (URL-encoded, so '%00' arrives as itself)."""

HOSTILE_SEGMENTS: tuple[str, ...] = (
    "",
    ".",
    "..",
    "%2E%2E",
    "%2F",
    "a%2Fb",
    "a%00b",
    "UPPER",
    "%C2%B2",
    "%ED%A0%80",  # a lone surrogate, UTF-8-encoded
    "%zz",
    "a%20b",
    "-",
    "x" * 300,
)
"""Each put, as URL text, in place of one path parameter of a route."""

# Names the source reads a query parameter by; ``name`` is the first string argument.
_READERS = re.compile(
    r"""(?:query\.get|query\.getall|query\.getone|\bsingle|\bflag|_flag|resource_version"""
    r"""|timeout_seconds|query_int)\(\s*(?:request(?:\.query)?,\s*|query,\s*)?"([A-Za-z]+)\""""
    r"""|query\[\s*"([A-Za-z]+)"\s*\]"""
)
_EXTRA = (
    "dryRun",
    "watch",
    "pretty",
    "container",
    "node",
    "command",
    "timeoutSeconds",
    "realm",
    "space",
    "stack",
)
"""Read through a helper the pattern above does not see (kept if the source drops them)."""


def query_parameters() -> list[str]:
    names: set[str] = set(_EXTRA)
    for path in SOURCE.rglob("*.py"):
        for match in _READERS.finditer(path.read_text()):
            names.add(match.group(1) or match.group(2))
    return sorted(names)


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str

    @property
    def parameters(self) -> list[str]:
        return [name.split(":")[0] for name in re.findall(r"\{([^}]+)\}", self.pattern)]

    def url(self, values: dict[str, str], *, raw: tuple[str, str] | None = None) -> str:
        """The route's URL with ``values`` quoted in; ``raw``: one (name, text) put in as is."""

        def fill(match: re.Match[str]) -> str:
            name = match.group(1).split(":")[0]
            if raw is not None and raw[0] == name:
                return raw[1]
            assert name in values, f"{self.pattern}: name a value for {{{name}}} in path_values"
            return urlquote(values[name], safe="")

        return re.sub(r"\{([^}]+)\}", fill, self.pattern)


def served_routes(k: Kukeond) -> list[Route]:
    app = k.daemon.api_app
    assert app is not None
    routes: set[Route] = set()
    for resource in app.router.resources():
        for route in resource:
            info = resource.get_info()
            pattern = info.get("formatter") or info.get("path") or resource.canonical
            methods = (
                ("GET", "POST", "PUT", "PATCH", "DELETE")
                if route.method == "*"
                else (route.method,)
            )
            routes.update(Route(method, str(pattern)) for method in methods if method != "HEAD")
    return sorted(routes, key=lambda r: (r.pattern, r.method))


def path_values(k: Kukeond) -> dict[str, str]:
    return {
        "realm": k.realm,
        "space": "s1",
        "stack": "st1",
        "cell": "c1",
        "node": k.config.node_name,
        "secret": "sec1",
        "cellprofile": "prof1",
        "cellset": "set1",
        "image": k.image.name,
        "name": "c1",
        "tail": "index.html",
        "path": "index.html",
        "filename": "index.html",
    }


async def _objects(k: Kukeond, http: aiohttp.ClientSession, api: str) -> None:
    await k.hierarchy()
    stack = f"{api}/realms/{k.realm}/spaces/s1/stacks/st1"
    cell = {
        "kind": "Cell",
        "metadata": {"name": "c1"},
        "spec": {
            "containers": [
                {"id": "main", "image": k.image.name, "command": "sleep", "args": ["3600"]}
            ]
        },
    }
    creates = [
        (f"{stack}/cells", cell),
        (
            f"{api}/realms/{k.realm}/spaces/s1/stacks/st1/secrets",
            {"kind": "Secret", "metadata": {"name": "sec1"}, "stringData": {"k": "v"}},
        ),
        (
            f"{api}/realms/{k.realm}/spaces/s1/stacks/st1/cellprofiles",
            {"kind": "CellProfile", "metadata": {"name": "prof1"}, "spec": {"cell": cell["spec"]}},
        ),
        (
            f"{stack}/cellsets",
            {
                "kind": "CellSet",
                "metadata": {"name": "set1"},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": {"app": "set1"}},
                    "template": {"metadata": {"labels": {"app": "set1"}}, "spec": cell["spec"]},
                },
            },
        ),
    ]
    for url, document in creates:
        async with http.post(url, json={"apiVersion": "kukeon.io/v1beta1", **document}) as answer:
            assert answer.status == 201, (url, await answer.text())
    await k.wait_for(Kind.CELL, (k.realm, "s1", "st1", "c1"), state="Ready")


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        f"{record.name}: {record.getMessage()[:200]}\n"
        + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        for record in caplog.records
        if record.exc_info or "Traceback" in record.getMessage()
    ]


def check_answer(where: str, status: int, content_type: str, body: bytes) -> str | None:
    """What is wrong with an answer, or None."""
    if status >= 500:
        if status in (503, 504) and content_type == "application/json":
            document = json.loads(body)
            if document.get("kind") == "Status" and document.get("message"):
                return None
        return f"{where}: {status} {body[:300]!r}"
    if 400 <= status < 500:
        if content_type != "application/json":
            return f"{where}: {status} is no JSON Status ({content_type}) {body[:200]!r}"
        document = json.loads(body)
        if document.get("kind") != "Status" or document.get("code") != status:
            return f"{where}: {status} is no Status: {body[:300]!r}"
    return None


async def send(
    http: aiohttp.ClientSession, route: Route, url: str, query: str, body: Any
) -> tuple[int, str, bytes]:
    """One request; a streamed 2xx (a watch, a followed log) is closed once it starts."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/merge-patch+json"} if route.method == "PATCH" else {}
    if data is not None and route.method != "PATCH":
        headers["Content-Type"] = "application/json"
    async with http.request(
        route.method, f"{url}?{query}" if query else url, data=data, headers=headers
    ) as answer:
        if answer.status < 300:
            return answer.status, answer.content_type, b""
        return answer.status, answer.content_type, await answer.read()


def body_for(route: Route, documents: dict[str, dict[str, Any]]) -> Any:
    """A body a write route could take: an object's own document, an empty merge patch."""
    if route.method == "PATCH":
        return {}
    if route.method in ("PUT", "POST"):
        pattern = route.pattern.removesuffix("/status")
        for param, document in documents.items():
            if pattern.endswith(f"/{{{param}}}") or pattern.endswith(f"/{PLURALS[param]}"):
                return document
        return []  # no object of a kind: a body no route takes (rotate-key rotates none)
    return None


PLURALS = {
    "realm": "realms",
    "space": "spaces",
    "stack": "stacks",
    "cell": "cells",
    "node": "nodes",
    "secret": "secrets",
    "cellprofile": "cellprofiles",
    "cellset": "cellsets",
}


async def stored_documents(
    http: aiohttp.ClientSession, routes: list[Route], values: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Each object's document as read, without its resourceVersion (no write conflicts)."""
    documents: dict[str, dict[str, Any]] = {}
    for route in routes:
        if route.method != "GET":
            continue
        for param in PLURALS:
            if route.pattern.endswith(f"/{{{param}}}") and param not in documents:
                async with http.get("http://kukeond" + route.url(values)) as answer:
                    if answer.status != 200:
                        continue
                    document = await answer.json()
                document["metadata"].pop("resourceVersion", None)
                documents[param] = document
    return documents


async def test_every_route_with_every_query_parameter_is_answered_below_500(
    kukeond: Kukeond, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    k = kukeond
    api = "http://kukeond/apis/kukeon.io/v1beta1"
    connector = aiohttp.UnixConnector(path=str(k.config.api_socket), limit=8)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        await _objects(k, http, api)
        values = path_values(k)
        routes = served_routes(k)
        names = query_parameters()
        documents = await stored_documents(http, routes, values)
        assert set(documents) == set(PLURALS), sorted(documents)
        chosen = random.Random(SEED)
        problems: list[str] = []
        requests: list[tuple[Route, str, str]] = []
        for route in routes:
            url = "http://kukeond" + route.url(values)
            for name in names:
                picks = HOSTILE if EVERY_VALUE else chosen.sample(HOSTILE, VALUES_PER_PARAMETER)
                queries = [f"{urlquote(name)}={urlquote(value, safe='%')}" for value in picks]
                # the parameter given twice, and with no value at all
                queries += [f"{name}=1&{name}=1", name]
                for query in queries:
                    if route.method == "DELETE" and name != "dryRun":
                        query += "&dryRun=All"  # the objects stay for the other requests
                    requests.append((route, url, query))
            for param in route.parameters:
                picks = (
                    HOSTILE_SEGMENTS
                    if EVERY_VALUE
                    else chosen.sample(HOSTILE_SEGMENTS, VALUES_PER_PARAMETER)
                )
                for segment in picks:
                    hostile = "http://kukeond" + route.url(values, raw=(param, segment))
                    requests.append((route, hostile, "dryRun=All"))
        limit = asyncio.Semaphore(8)
        answered: Counter[int] = Counter()

        async def one(route: Route, url: str, query: str) -> None:
            async with limit:
                where = f"{route.method} {url}?{query[:120]}"
                try:
                    status, content_type, body = await send(
                        http, route, url, query, body_for(route, documents)
                    )
                except (aiohttp.ClientError, TimeoutError) as error:
                    problems.append(f"{where}: {error!r}")
                    return
                answered[status] += 1
                if (problem := check_answer(where, status, content_type, body)) is not None:
                    problems.append(problem)

        # Writes that may remove what the others read (an image, a prune) go last.
        requests.sort(key=lambda request: request[0].method in ("DELETE", "POST"))
        await asyncio.gather(*(one(*request) for request in requests))
    problems.extend(tracebacks(caplog))
    assert not problems, f"{len(problems)} of {len(requests)} answers:\n" + "\n".join(
        sorted(problems)[:80]
    )
    # both sides were reached: some answered, some refused
    assert answered[200], answered
    assert answered[400], answered


# --- every writable kind: mutations of a valid document on create, replace, patch, status ---

MUTATIONS = int(os.environ.get("KUKEON_MUTATIONS", "250"))
"""Hypothesis examples in the committed run (derandomized: the same ones every run)."""
_SEED = os.environ.get("KUKEON_MUTATION_SEED")
SEED_FROM_ENV = int(_SEED) if _SEED else None
"""A seed to explore with instead (a longer run by hand)."""

MIB = "x" * (1 << 20)
"""Over the 1 MiB body limit (a 413 before decoding)."""
JUST_FITS = "x" * ((1 << 20) - 6000)
"""A body that just fits: the stored document (server fields, a status) may not."""
_FIXED: list[Any] = [
    None,
    True,
    0,
    -1,
    2**63,
    2**64,
    -(2**63) - 1,
    10**400,
    1e308,
    float("nan"),
    float("inf"),
    -0.0,
    0.5,
    "",
    "ñ名🙂",
    "\x00",
    "\ud800",
    "-",
    "..",
    "a" * 300,
    "999999999999Ti",
    [],
    {},
    [None],
    {"": None},
    {"zzUnknown": 1},
]


def _nested(depth: int) -> Any:
    value: Any = 1
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def hostile_values(original: Any) -> st.SearchStrategy[Any]:
    """Values for one place in a document: fixed hostile ones, its type swapped, nesting."""
    swapped: list[Any] = [[original], {"k": original}, str(original)]
    if isinstance(original, str):
        swapped += [original * 50, original.upper(), f" {original}"]
    return st.one_of(
        st.sampled_from(_FIXED),
        st.sampled_from(swapped),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=12),
        st.integers(1, 300).map(_nested),
        st.sampled_from([MIB, JUST_FITS]),
    )


def paths_of(document: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in ``document`` (and one unknown key in each object)."""
    if isinstance(document, dict):
        yield (*prefix, "zzUnknown")
        for key, value in document.items():
            yield (*prefix, key)
            yield from paths_of(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield (*prefix, index)
            yield from paths_of(value, (*prefix, index))


def value_at(document: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        document = document.get(part) if isinstance(document, dict) else document[part]
    return document


def put_at(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    changed = copy.deepcopy(document)
    node = changed
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return changed


def merge_patch_for(document: Any, path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A merge patch that sets ``path`` to ``value`` (a list on the way is sent whole)."""
    for cut, part in enumerate(path):
        if isinstance(part, int):
            top = path[: cut - 1] if cut else ()
            whole = put_at(value_at(document, path[:cut]), path[cut:], value)
            return put_at_nested({}, (*top, path[cut - 1]), whole)
    return put_at_nested({}, path, value)


def put_at_nested(document: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    node = document
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    return document


def unmoved(document: dict[str, Any]) -> dict[str, Any]:
    """What no controller writes: all but the status and the resourceVersion it moves."""
    metadata = {k: v for k, v in document["metadata"].items() if k != "resourceVersion"}
    return {**{k: v for k, v in document.items() if k != "status"}, "metadata": metadata}


@dataclass
class Target:
    param: str
    url: str
    collection: str
    document: dict[str, Any]


@dataclass
class Write:
    """One request of the mutation test and where its effect is read back."""

    method: str
    url: str
    body: Any
    read_at: str | None
    """The object that must read back as answered; None for a dry-run create."""


OPERATIONS = ("create", "replace", "patch", "status-replace", "status-patch")
FIELD_VALIDATION = ("Strict", "Warn", "Ignore")
"""Unknown fields refused, or stored without them: what reads back is what was answered."""
DRY_CREATES = frozenset({"realm", "node"})
"""Kinds created as dry runs: a realm's create makes host objects (cgroups, a containerd
namespace) and a node is kukeond's own. The others are created for real, then deleted."""


def write_for(target: Target, operation: str, path: tuple[Any, ...], value: Any, n: int) -> Write:
    base = target.document
    if operation == "create":
        body = put_at(put_at(base, ("metadata", "name"), f"m{n}"), path, value)
        metadata = body.get("metadata") if isinstance(body, dict) else None
        name = metadata.get("name") if isinstance(metadata, dict) else None
        shown = urlquote(
            name if isinstance(name, str) and name else "-", safe="", errors="surrogatepass"
        )
        if target.param in DRY_CREATES:
            return Write("POST", f"{target.collection}?dryRun=All", body, None)
        return Write("POST", target.collection, body, f"{target.collection}/{shown}")
    url = target.url + ("/status" if operation.startswith("status") else "")
    if operation.endswith("replace"):
        return Write("PUT", url, put_at(base, path, value), target.url)
    return Write("PATCH", url, merge_patch_for(base, path, value), target.url)


async def _read(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url) as answer:
        return answer.status, (await answer.json() if answer.status == 200 else {})


@dataclass
class Mutations:
    http: aiohttp.ClientSession
    problems: list[str]
    answered: Counter[str]

    async def write(
        self, target: Target, operation: str, path: tuple[Any, ...], value: Any, level: str
    ) -> None:
        where = f"{operation} {target.param} {path} = {json.dumps(value)[:80]} ({level})"
        code, before = await _read(self.http, target.url)
        assert code == 200, (where, "the target is gone", before)
        write = write_for(target, operation, path, value, sum(self.answered.values()))
        content_type = (
            "application/merge-patch+json" if write.method == "PATCH" else ("application/json")
        )
        separator = "&" if "?" in write.url else "?"
        async with self.http.request(
            write.method,
            f"{write.url}{separator}fieldValidation={level}",
            data=json.dumps(write.body).encode(),
            headers={"Content-Type": content_type},
        ) as answer:
            code, kind, payload = answer.status, answer.content_type, await answer.read()
        self.answered[f"{operation} {code}"] += 1
        if (problem := check_answer(where, code, kind, payload)) is not None:
            self.problems.append(problem)
        elif code >= 400:
            await self._nothing_written(where, code, write, target, before)
        elif write.read_at is not None:
            await self._stored_whole(where, code, write, json.loads(payload))
            await self._put_back(where, target, write)

    async def _nothing_written(
        self, where: str, code: int, write: Write, target: Target, before: dict[str, Any]
    ) -> None:
        if write.method == "POST" and write.read_at != target.url:  # not a create of itself
            if write.read_at is not None and (await _read(self.http, write.read_at))[0] == 200:
                self.problems.append(f"{where}: refused with {code} but {write.read_at} exists")
            return
        _, after = await _read(self.http, target.url)
        if unmoved(after) != unmoved(before):
            self.problems.append(
                f"{where}: refused with {code} but the object changed: "
                f"{json.dumps(before)[:400]} -> {json.dumps(after)[:400]}"
            )

    async def _stored_whole(
        self, where: str, code: int, write: Write, answered: dict[str, Any]
    ) -> None:
        assert write.read_at is not None
        status, after = await _read(self.http, write.read_at)
        # A controller may write between the answer and the read (the scheduler sets a
        # cleared nodeName again): the same resourceVersion must read back the same.
        version = answered["metadata"].get("resourceVersion")
        moved = after.get("metadata", {}).get("resourceVersion") != version
        if status != 200 or (not moved and after != answered):
            self.problems.append(
                f"{where}: {code} answered {json.dumps(answered)[:300]} "
                f"but reads back {json.dumps(after)[:300]}"
            )

    async def _put_back(self, where: str, target: Target, write: Write) -> None:
        """The target as it was, for the next example (a created object deleted)."""
        assert write.read_at is not None
        if write.method == "POST":
            async with self.http.delete(write.read_at) as answer:
                assert answer.status in (200, 202, 404), await answer.text()
            return
        _, now = await _read(self.http, target.url)
        restore = copy.deepcopy(target.document)
        # a client may remove a finalizer, never add one back
        restore["metadata"]["finalizers"] = now["metadata"].get("finalizers", [])
        async with self.http.put(target.url, json=restore) as answer:
            assert answer.status == 200, (where, await answer.text())


async def test_mutated_documents_of_every_kind_are_refused_whole_or_stored_whole(
    kukeond: Kukeond, caplog: pytest.LogCaptureFixture
) -> None:
    """Create, replace, merge patch and status writes of each kind's document with one
    place changed to a hostile value: never a 5xx; a refusal writes nothing; what a 2xx
    answers reads back the same."""
    caplog.set_level(logging.WARNING)
    k = kukeond
    connector = aiohttp.UnixConnector(path=str(k.config.api_socket))
    timeout = aiohttp.ClientTimeout(total=60)
    mutations = Mutations(
        aiohttp.ClientSession(connector=connector, timeout=timeout), [], Counter()
    )
    async with mutations.http as http:
        await _objects(k, http, "http://kukeond/apis/kukeon.io/v1beta1")
        values = path_values(k)
        routes = served_routes(k)
        documents = await stored_documents(http, routes, values)
        targets = [
            Target(param, url, url.rsplit("/", 1)[0], document)
            for route in routes
            for param, document in documents.items()
            if route.method == "PUT" and route.pattern.endswith(f"/{{{param}}}")
            for url in ["http://kukeond" + route.url(values)]
        ]
        assert {t.param for t in targets} == set(PLURALS)

        @settings(
            max_examples=MUTATIONS,
            derandomize=SEED_FROM_ENV is None,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(data=st.data())
        @seed(SEED_FROM_ENV or 0)
        def run(data: st.DataObject) -> None:
            target = data.draw(st.sampled_from(targets))
            operation = data.draw(st.sampled_from(OPERATIONS))
            path = data.draw(st.sampled_from(list(paths_of(target.document))))
            original = value_at(target.document, path) if path[-1] != "zzUnknown" else None
            value = data.draw(hostile_values(original))
            level = data.draw(st.sampled_from(FIELD_VALIDATION))
            write = mutations.write(target, operation, path, value, level)
            asyncio.run_coroutine_threadsafe(write, loop).result(timeout=120)

        loop = asyncio.get_running_loop()
        await asyncio.to_thread(run)
    problems = mutations.problems + tracebacks(caplog)
    answered = mutations.answered
    assert not problems, f"{len(problems)} problems; answers {sorted(answered.items())}:\n" + (
        "\n".join(problems[:60])
    )
    # both sides were reached: some writes stored, some refused
    assert sum(n for key, n in answered.items() if key.endswith((" 200", " 201"))), answered
    assert sum(n for key, n in answered.items() if key.endswith(" 422")), answered
