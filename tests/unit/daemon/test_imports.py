"""What importing kukeond loads, which it holds for as long as it runs (its idle RSS, issue 18).

Each check runs in a fresh interpreter: the test process has imported everything already.
The figures are docs/benchmarks/memory-idle.md's.
"""

from __future__ import annotations

from tests.fixtures.interpreter import printed_after

KUKEOND = "import kukeon.daemon.main, kukeon.daemon.app"

NOT_KUKEONDS = (
    # pyroute2's package __init__ (kukeon.runtime.network.netlink skips it): ~6 MiB.
    "pyroute2.ndb",
    "pyroute2.ipdb",
    "pyroute2.iwutil",
    "pyroute2.plan9",
    "sqlite3",
    # unittest's __init__ (case, loader, runner, difflib), which pyroute2's iprsocket ran for
    # its `from unittest import mock` (kukeon.runtime.network.netlink skips it).
    "unittest.case",
    "unittest.loader",
    "unittest.runner",
    "difflib",
    # aiohttp's client (kukeon.daemon.leanaiohttp skips the package __init__): ~3.6 MiB.
    "aiohttp.client",
    "aiohttp.connector",
    "aiohttp.cookiejar",
    "aiohttp.formdata",
    "aiohttp.tracing",
    "aiohttp.resolver",
    # cryptography: its x509 for the embedded etcd's certificates, its AES-GCM for sealed
    # Secret values and registry passwords, each imported at its first use: ~7.5 MiB.
    "kukeon.store.pki",
    "cryptography",
    "_cffi_backend",
    # prometheus-client's exposition, with its HTTP servers (kukeon.daemon.leanprometheus
    # skips the package __init__; the API's /metrics imports it at its first request).
    "prometheus_client.exposition",
    "http.server",
    "wsgiref",
    # kukectl's, not the daemon's; kukeond reads its flags with argparse (aiohttp.web loads
    # it anyway), not click: ~0.9 MiB.
    "kukeon.cli",
    "rich",
    "click",
)


def test_kukeond_loads_nothing_it_does_not_use() -> None:
    loaded = printed_after(
        f"{KUKEOND}\n"
        f"print(json.dumps(sorted(m for m in sys.modules\n"
        f"    if m in {NOT_KUKEONDS!r} or m.startswith(tuple(p + '.' for p in {NOT_KUKEONDS!r})))))"
    )
    assert loaded == []


def test_the_lean_pyroute2_is_the_real_one() -> None:
    """kukeon's IPRoute and netns are pyroute2's; any other name of the package loads the
    rest of it then, so code importing pyroute2 the usual way still gets everything."""
    found = printed_after(
        "from kukeon.runtime.network.netlink import IPRoute, netns\n"
        "import pyroute2\n"
        "from pyroute2.iproute.linux import IPRoute as Real\n"
        "lean = 'pyroute2.ndb' not in sys.modules\n"
        "from pyroute2 import NDB\n"
        "print(json.dumps([IPRoute is Real, netns.__name__, lean, pyroute2.IPRoute is Real,\n"
        "    NDB.__module__, pyroute2.__version__ != '']))"
    )
    assert found == [True, "pyroute2.netns", True, True, "pyroute2.ndb.main", True]


def test_pyroute2_imported_first_is_kept() -> None:
    found = printed_after(
        "import pyroute2\n"
        "from kukeon.runtime.network.netlink import IPRoute\n"
        "print(json.dumps([sys.modules['pyroute2'] is pyroute2, IPRoute is pyroute2.IPRoute]))"
    )
    assert found == [True, True]


def test_the_lean_unittest_is_the_real_one() -> None:
    """pyroute2's mock is unittest's; any other name of the package runs its __init__ then,
    and names the __init__ binds over a submodule's (unittest.main) are its own."""
    found = printed_after(
        f"{KUKEOND}\n"
        "from pyroute2.netlink.rtnl import iprsocket\n"
        "import unittest\n"
        "from unittest import mock\n"
        "print(json.dumps([iprsocket.mock is mock, mock.Mock.__module__,\n"
        "    unittest.TestCase.__module__, unittest.main.__name__,\n"
        "    unittest.IsolatedAsyncioTestCase.__module__, callable(mock.patch)]))"
    )
    assert found == [
        True,
        "unittest.mock",
        "unittest.case",
        "TestProgram",
        "unittest.async_case",
        True,
    ]


def test_unittest_imported_first_is_kept() -> None:
    found = printed_after(
        "import unittest\n"
        f"{KUKEOND}\n"
        "print(json.dumps([sys.modules['unittest'] is unittest, 'unittest.case' in sys.modules]))"
    )
    assert found == [True, True]


def test_the_lean_aiohttp_is_the_real_one() -> None:
    """The names kukeond takes from the lean aiohttp are the ones its ``__init__`` exports;
    any other name (the client) runs that ``__init__`` then, and the package is whole."""
    found = printed_after(
        "import kukeon.daemon.main, kukeon.daemon.app\n"
        "from kukeon.daemon.leanaiohttp import SERVED\n"
        "import aiohttp\n"
        "from aiohttp import web\n"
        "lean = 'aiohttp.client' not in sys.modules\n"
        "served = {name: getattr(aiohttp, name) for name in SERVED}\n"
        "still_lean = 'aiohttp.client' not in sys.modules\n"
        "from aiohttp import ClientSession\n"
        "from aiohttp.client import ClientSession as Real\n"
        "from importlib.metadata import version\n"
        "print(json.dumps([lean, still_lean, ClientSession is Real,\n"
        "    aiohttp.ClientSession is Real,\n"
        "    all(getattr(aiohttp, name) is value for name, value in served.items()),\n"
        "    aiohttp.web is web, aiohttp.__version__ == version('aiohttp'),\n"
        "    vars(aiohttp)['__getattr__'].__module__]))"
    )
    assert found == [True, True, True, True, True, True, True, "aiohttp"]


def test_aiohttp_imported_first_is_kept() -> None:
    found = printed_after(
        "import aiohttp\n"
        "import kukeon.daemon.main\n"
        "print(json.dumps([sys.modules['aiohttp'] is aiohttp, 'ClientSession' in vars(aiohttp)]))"
    )
    assert found == [True, True]


def test_forwarding_loads_the_client_when_it_forwards() -> None:
    """In a lean kukeond, the forwarding's response class (a ClientResponse) is made on
    first use and still keeps a refused upgrade's body (the whole path between two API
    servers: tests/integration/daemon/test_forwarding.py)."""
    found = printed_after(
        "import asyncio\n"
        "import kukeon.daemon.main, kukeon.daemon.app\n"
        "from kukeon.daemon import forwarding\n"
        "import aiohttp\n"
        "from aiohttp import web\n"
        "lean = 'aiohttp.client' not in sys.modules\n"
        "async def refuse(request):\n"
        "    return web.json_response({'message': 'not running'}, status=409)\n"
        "async def main():\n"
        "    app = web.Application()\n"
        "    app.router.add_get('/exec', refuse)\n"
        "    runner = web.AppRunner(app)\n"
        "    await runner.setup()\n"
        "    site = web.TCPSite(runner, '127.0.0.1', 0)\n"
        "    await site.start()\n"
        "    port = runner.addresses[0][1]\n"
        "    refusal = forwarding._Refusal()\n"
        "    forwarding._REFUSAL.set(refusal)\n"
        "    async with aiohttp.ClientSession(response_class=forwarding._keeps_refusals()) as s:\n"
        "        try:\n"
        "            await s.ws_connect(f'http://127.0.0.1:{port}/exec')\n"
        "        except aiohttp.WSServerHandshakeError as error:\n"
        "            status = error.status\n"
        "    await runner.cleanup()\n"
        "    return status, json.loads(refusal.body)\n"
        "status, body = asyncio.run(main())\n"
        "print(json.dumps([lean, status, body]))"
    )
    assert found == [True, 409, {"message": "not running"}]


def test_the_lean_prometheus_client_is_the_real_one() -> None:
    """The names kukeond takes from the lean prometheus_client are the ones its ``__init__``
    exports, its default registry holds the same collectors; any other name runs that
    ``__init__`` then; the API's /metrics imports the exposition at its first request."""
    found = printed_after(
        f"{KUKEOND}\n"
        "from kukeon.daemon.leanprometheus import SERVED\n"
        "from kukeon.apiserver.app import _prometheus_text\n"
        "import prometheus_client\n"
        "from prometheus_client import REGISTRY, CollectorRegistry, Counter\n"
        "lean = 'prometheus_client.exposition' not in sys.modules\n"
        "collectors = sorted(type(c).__name__ for c in REGISTRY._collector_to_names)\n"
        "served = {name: getattr(prometheus_client, name) for name in SERVED}\n"
        "registry = CollectorRegistry()\n"
        "Counter('kukeon_test_things', 'Things.', registry=registry).inc()\n"
        "text, content_type = _prometheus_text(registry)\n"
        "loaded = 'prometheus_client.exposition' in sys.modules\n"
        "from prometheus_client import generate_latest\n"
        "from prometheus_client.exposition import generate_latest as real\n"
        "print(json.dumps([lean, collectors, loaded, content_type,\n"
        "    'kukeon_test_things_total 1.0' in text.decode(), generate_latest is real,\n"
        "    all(getattr(prometheus_client, name) is value for name, value in served.items())]))"
    )
    assert found == [
        True,
        ["GCCollector", "PlatformCollector", "ProcessCollector"],
        True,
        "text/plain",
        True,
        True,
        True,
    ]


def test_prometheus_client_imported_first_is_kept() -> None:
    found = printed_after(
        "import prometheus_client\n"
        f"{KUKEOND}\n"
        "print(json.dumps([sys.modules['prometheus_client'] is prometheus_client,\n"
        "    'generate_latest' in vars(prometheus_client)]))"
    )
    assert found == [True, True]


def test_kukeond_reads_no_system_mime_types() -> None:
    """aiohttp's file responses' table is Python's, not /etc/mime.types' (~0.3 MiB of
    tables kukeond never looks up: it names every content type it sends); the web types
    are still known."""
    found = printed_after(
        f"{KUKEOND}\n"
        "import mimetypes\n"
        "from aiohttp.web_fileresponse import CONTENT_TYPES\n"
        "print(json.dumps([mimetypes.knownfiles, len(mimetypes.types_map) < 400,\n"
        "    [CONTENT_TYPES.guess_type('a' + suffix)[0]\n"
        "     for suffix in ('.html', '.js', '.css', '.json', '.svg', '.png', '.gz')]]))"
    )
    assert found == [
        [],
        True,
        [
            "text/html",
            "application/javascript",
            "text/css",
            "application/json",
            "image/svg+xml",
            "image/png",
            "application/gzip",
        ],
    ]


def test_mimetypes_initialised_first_are_kept() -> None:
    found = printed_after(
        "import mimetypes\n"
        "mimetypes.init()\n"
        "known = list(mimetypes.knownfiles)\n"
        f"{KUKEOND}\n"
        "print(json.dumps([mimetypes.knownfiles == known != []]))"
    )
    assert found == [True]
