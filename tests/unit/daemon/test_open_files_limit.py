"""kukeond raises its soft limit of open files to the hard one (a pidfd per container)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import logging
import resource
logging.basicConfig(level=logging.INFO, format="%(message)s")
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
from kukeon.daemon.main import raise_open_files_limit
raise_open_files_limit()
soft, after = resource.getrlimit(resource.RLIMIT_NOFILE)
expected = hard if hard != resource.RLIM_INFINITY else 1 << 20
print(soft == expected, after == hard)
"""


def test_the_soft_limit_is_raised_to_the_hard_one() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.split() == ["True", "True"], done.stderr
    assert done.stderr.count("raised the open-files limit (RLIMIT_NOFILE) from 256 to ") == 1
