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

import contextlib

from kukeon.leanpackage import register_without_init

register_without_init("pyroute2", {})
# Only mock before its __init__: that __init__ binds names of its submodules' own
# (unittest.main is TestProgram, not the module). A Python without unittest: pyroute2's
# import fails as it would.
with contextlib.suppress(ModuleNotFoundError):
    register_without_init("unittest", {}, submodules={"mock"})

from pyroute2 import netns  # noqa: E402
from pyroute2.iproute import IPRoute  # noqa: E402

__all__ = ["IPRoute", "netns"]
