"""aiohttp's server side, without running the ``aiohttp`` package's ``__init__`` (issue 18).

That ``__init__`` imports the client as well (``client``, ``connector``, ``cookiejar``,
``formdata``, ``tracing``, the resolvers, the client middlewares...): 15 modules and
~3.6 MiB of kukeond's idle RSS (docs/benchmarks/memory-idle.md), while kukeond's client
sessions are rare paths (forwarding a request to another node, pulling an image from a
registry). So the package is registered with its ``__init__`` not run: ``aiohttp.web`` and
the other submodules import as usual (each imports what it needs), the few names kukeond
takes from the package itself are served from the submodules that define them
(``SERVED``: the very objects the ``__init__`` re-exports), and the first other name asked
of the package (``aiohttp.ClientSession``) runs that ``__init__`` then (PEP 562), so code
using the client, or importing ``aiohttp`` the usual way, still gets all of it.

``kukeon.daemon``'s ``__init__`` runs this, before any module of kukeond imports aiohttp
(``kukeon.leanpackage``). When aiohttp is imported already (a test process, kukectl),
nothing changes.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from typing import Final

from kukeon.leanpackage import register_without_init as register_package

PACKAGE: Final = "aiohttp"
SERVED: Final = {
    "WSMsgType": "aiohttp.http",
    "ClientConnectionResetError": "aiohttp.client_exceptions",
}
"""Names of the package that kukeond's modules import from it, and where they are defined
(modules the server side loads anyway)."""
_VERSION = re.compile(r'^__version__ = "([^"]+)"', re.MULTILINE)


def register_without_init() -> None:
    """Put ``aiohttp`` in ``sys.modules`` with its ``__init__`` not run (see the module)."""
    if PACKAGE in sys.modules:
        return  # imported already (in full, or by an earlier call)
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"No module named {PACKAGE!r}", name=PACKAGE)
    with open(spec.origin, encoding="utf-8") as source:
        version = _VERSION.search(source.read())
    if version is None:  # an aiohttp this was not written for: import it in full
        importlib.import_module(PACKAGE)
        return
    # aiohttp.http reads the package's __version__.
    register_package(PACKAGE, SERVED, attributes={"__version__": version.group(1)})


def without_system_mime_types() -> None:
    """Python's own table of file types, not the system's ``/etc/mime.types`` (issue 18).

    Importing ``aiohttp.web`` makes ``aiohttp.web_fileresponse``'s ``MimeTypes()``, which
    reads every system table into ``mimetypes``' (~1,550 types against Python's ~150):
    1.3-1.6 MiB of idle kukeond's RSS (docs/benchmarks/memory-idle.md). Only a
    ``FileResponse`` (a static route) or a client upload guessing a file's type would look
    them up, and kukeond has neither: it names every content type it sends. So the system
    tables are not read; a guess for a type Python does not know finds none (aiohttp then
    says ``application/octet-stream``). Nothing changes if ``mimetypes`` was initialised
    already (a test process, kukectl)."""
    import mimetypes

    if not mimetypes.inited:
        mimetypes.knownfiles = []
