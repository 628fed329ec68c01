"""A package registered with its ``__init__`` not run (issue 18: kukeond's idle RSS).

Some packages' ``__init__`` imports much more than kukeond uses: aiohttp's imports its
client, prometheus-client's its HTTP servers and push-gateway client. kukeond holds all of it
for as long as it runs (docs/benchmarks/memory-idle.md). So such a package is put in
``sys.modules`` with its ``__init__`` not run: its submodules import as usual (each imports
what it needs), the names kukeond takes from the package itself are served from the
submodules that define them (the very objects the ``__init__`` re-exports), and the first
other name asked of the package runs that ``__init__`` then (PEP 562), so code importing
the package the usual way still gets all of it.

When the package is imported already (a test process, kukectl), nothing changes.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
from collections.abc import Collection, Mapping


def register_without_init(
    package: str,
    served: Mapping[str, str],
    *,
    attributes: Mapping[str, object] | None = None,
    submodules: Collection[str] | None = None,
) -> bool:
    """Put ``package`` in ``sys.modules`` with its ``__init__`` not run (see the module).

    ``served``: a name of the package -> the submodule that defines it; ``attributes``: set
    on the lean package (names its submodules read from it); ``submodules``: the ones its
    attributes may name before the ``__init__`` runs (default: any; a package whose
    ``__init__`` binds a submodule's name to something else lists the others). False when
    the package was imported already: nothing is changed then.
    """
    if package in sys.modules:
        return False
    spec = importlib.util.find_spec(package)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"No module named {package!r}", name=package)
    module = importlib.util.module_from_spec(spec)
    loader = spec.loader
    module.__dict__.update(attributes or {})
    full_init = threading.Lock()

    def rest_of_package(name: str) -> object:
        """A served name or a submodule, or anything else once the real ``__init__`` ran
        (which may define a ``__getattr__`` of its own)."""
        if name in served:
            return getattr(importlib.import_module(served[name]), name)
        if _is_submodule(package, name, submodules):
            return importlib.import_module(f"{package}.{name}")
        with full_init:
            if module.__dict__.get("__getattr__") is rest_of_package:
                del module.__dict__["__getattr__"]
                loader.exec_module(module)
        return getattr(module, name)

    module.__dict__["__getattr__"] = rest_of_package
    sys.modules[package] = module
    return True


def _is_submodule(package: str, name: str, submodules: Collection[str] | None) -> bool:
    if submodules is not None:
        return name in submodules
    return not name.startswith("__") and importlib.util.find_spec(f"{package}.{name}") is not None
