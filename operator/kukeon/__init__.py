"""kukeon: run isolated containerd workloads on Linux hosts you own.

Resources form a hierarchy ``Realm -> Space -> Stack -> Cell -> Container`` stored as
versioned documents in etcd; per-host daemons (kukeond) converge them to containerd
tasks, cgroups, CNI networks and nftables rules. See ``docs/architecture.md``.

Dependencies point one way: ``cli -> apiserver client``; ``daemon -> controllers ->
framework -> store -> api``; ``controllers -> runtime``. ``api`` imports nothing of the
project and ``runtime`` never imports ``store`` or ``controllers``.
"""

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    """``__version__``, read from the installed metadata on first use (importlib.metadata
    costs every kukectl run that does not print a version a few tens of milliseconds)."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("kukeon")
    except PackageNotFoundError:  # running from a source tree that was not installed
        found = "0.0.0+unknown"
    globals()["__version__"] = found
    return found
