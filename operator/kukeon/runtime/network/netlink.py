"""pyroute2's ``IPRoute`` and ``netns``, without running the ``pyroute2`` package's ``__init__``.

That ``__init__`` imports every netlink family pyroute2 has (NDB with sqlite3, IPDB,
wireless, devlink, IPVS, WireGuard, 9p, ...): 64 more modules and ~6 MiB of kukeond's idle RSS
(issue 18, docs/benchmarks/memory-idle.md) for the two things kukeon uses. So the package
is registered with its ``__init__`` not run; its submodules import as usual (each imports
what it needs), and the first other name asked of the package (``pyroute2.NDB``) runs
that ``__init__`` then (PEP 562), so other code importing ``pyroute2`` still gets all of it.

Every pyroute2 import in kukeon goes through here, so this runs before any of them.

``pyroute2.netlink.rtnl.iprsocket`` also does ``from unittest import mock`` at import (for its
mock netlink mode, ``pyroute2.config.mock_netlink``, which kukeon never sets; it makes a
``Mock`` at import, so ``unittest.mock`` stays). That ran ``unittest``'s ``__init__`` too
(its case, loader, runner, suite, with ``difflib``): ~0.4 MB of objects in kukeond. Unless
``unittest`` is imported already, that package is registered as pyroute2's is, its
``__init__`` run at the first name asked of it other than ``mock``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading

PACKAGE = "pyroute2"
_FULL_INIT = threading.Lock()
_UNITTEST_INIT = threading.Lock()


def _package_without_init() -> None:
    if PACKAGE in sys.modules:
        return  # imported already (in full, or by an earlier call)
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {PACKAGE!r}", name=PACKAGE)
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def rest_of_package(name: str) -> object:
        """A submodule by its name, or anything else once the real ``__init__`` ran."""
        if not name.startswith("__") and importlib.util.find_spec(f"{PACKAGE}.{name}"):
            return importlib.import_module(f"{PACKAGE}.{name}")
        with _FULL_INIT:
            if package.__dict__.pop("__getattr__", None) is not None:
                loader.exec_module(package)
        try:
            return package.__dict__[name]
        except KeyError:
            raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}") from None

    package.__dict__["__getattr__"] = rest_of_package
    sys.modules[PACKAGE] = package


def _unittest_without_init() -> None:
    if "unittest" in sys.modules:
        return  # imported already
    spec = importlib.util.find_spec("unittest")
    if spec is None or spec.loader is None:
        return  # a Python without unittest: pyroute2's import fails as it would
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def rest_of_package(name: str) -> object:
        """``mock``, or anything else once the real ``__init__`` ran (it defines a
        ``__getattr__`` of its own). Only ``mock``: the ``__init__`` binds names of its
        submodules' own (``unittest.main`` is ``TestProgram``, not the module)."""
        if name == "mock":
            return importlib.import_module("unittest.mock")
        with _UNITTEST_INIT:
            if package.__dict__.get("__getattr__") is rest_of_package:
                del package.__dict__["__getattr__"]
                loader.exec_module(package)
        return getattr(package, name)

    package.__dict__["__getattr__"] = rest_of_package
    sys.modules["unittest"] = package


_package_without_init()
_unittest_without_init()

from pyroute2 import netns  # noqa: E402
from pyroute2.iproute import IPRoute  # noqa: E402

__all__ = ["IPRoute", "netns"]
