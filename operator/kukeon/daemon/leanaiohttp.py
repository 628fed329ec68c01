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

``kukeon.daemon``'s ``__init__`` runs this, before any module of kukeond imports aiohttp.
When aiohttp is imported already (a test process, kukectl), nothing changes.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import re
import sys
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Final

PACKAGE: Final = "aiohttp"
SERVED: Final = {
    "WSMsgType": "aiohttp.http",
    "ClientConnectionResetError": "aiohttp.client_exceptions",
}
"""Names of the package that kukeond's modules import from it, and where they are defined
(modules the server side loads anyway)."""
_VERSION = re.compile(r'^__version__ = "([^"]+)"', re.MULTILINE)
_FULL_INIT = threading.Lock()


def register_without_init() -> None:
    """Put ``aiohttp`` in ``sys.modules`` with its ``__init__`` not run (see the module)."""
    if PACKAGE in sys.modules:
        return  # imported already (in full, or by an earlier call)
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.loader is None or spec.origin is None:
        raise ModuleNotFoundError(f"No module named {PACKAGE!r}", name=PACKAGE)
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader
    with open(spec.origin, encoding="utf-8") as source:
        version = _VERSION.search(source.read())
    if version is None:  # an aiohttp this was not written for: import it in full
        importlib.import_module(PACKAGE)
        return
    package.__dict__["__version__"] = version.group(1)  # aiohttp.http reads it

    def rest_of_package(name: str) -> object:
        """A submodule or a served name, or anything else once the real ``__init__`` ran."""
        if name in SERVED:
            return getattr(importlib.import_module(SERVED[name]), name)
        if not name.startswith("__") and importlib.util.find_spec(f"{PACKAGE}.{name}"):
            return importlib.import_module(f"{PACKAGE}.{name}")
        _run_init(package, loader, rest_of_package)
        return getattr(package, name)  # the real package's (and its own __getattr__'s)

    package.__dict__["__getattr__"] = rest_of_package
    sys.modules[PACKAGE] = package


def _run_init(
    package: ModuleType, loader: importlib.abc.Loader, lean_getattr: Callable[[str], object]
) -> None:
    """aiohttp's ``__init__``, once (it defines a ``__getattr__`` of its own)."""
    with _FULL_INIT:
        if package.__dict__.get("__getattr__") is lean_getattr:
            del package.__dict__["__getattr__"]
            loader.exec_module(package)
