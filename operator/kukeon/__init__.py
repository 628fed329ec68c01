"""kukeon: run isolated containerd workloads on Linux hosts you own.

Resources form a hierarchy ``Realm -> Space -> Stack -> Cell -> Container`` stored as
versioned documents in etcd; per-host daemons (kukeond) converge them to containerd
tasks, cgroups, CNI networks and nftables rules. See ``docs/architecture.md``.

Dependencies point one way: ``cli -> apiserver client``; ``daemon -> controllers ->
framework -> store -> api``; ``controllers -> runtime``. ``api`` imports nothing of the
project and ``runtime`` never imports ``store`` or ``controllers``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kukeon")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
