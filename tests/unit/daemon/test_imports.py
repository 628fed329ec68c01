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
    # kukectl's, not the daemon's.
    "kukeon.cli",
    "rich",
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
