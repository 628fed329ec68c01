"""The package layout itself: import name, version, and the one-way dependency rule."""

import subprocess
import sys

import kukeon


def test_version_comes_from_package_metadata() -> None:
    assert kukeon.__version__ != "0.0.0+unknown"


def test_operator_does_not_shadow_stdlib() -> None:
    import operator

    assert hasattr(operator, "itemgetter")


def test_api_imports_nothing_of_daemon_store_or_runtime() -> None:
    code = (
        "import sys, kukeon.api; "
        "bad = [m for m in sys.modules if m.startswith(('kukeon.store', 'kukeon.runtime', "
        "'kukeon.daemon', 'kukeon.controllers', 'kukeon.framework', 'kukeon.apiserver'))]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
