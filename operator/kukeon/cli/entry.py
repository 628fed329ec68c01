"""The ``kukectl`` console script.

A shell asks for completions by running ``kukectl`` with ``_KUKECTL_COMPLETE`` set, once per
TAB: that path is answered by ``kukeon.cli.completion`` without importing the commands
(pydantic, aiohttp, rich), so a TAB costs a fraction of a second. Everything else is
``kukeon.cli.main``.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    if os.environ.get("_KUKECTL_COMPLETE"):
        from kukeon.cli.completion import run_from_environment

        sys.exit(run_from_environment())
    from kukeon.cli.main import main as kukectl

    kukectl()
