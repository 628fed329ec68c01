"""One kukeond per state and run directory: the second is refused before it does
anything, naming the holder; the lock goes with its holder, however it ends."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kukeon.daemon.instancelock import LOCK_NAME, AlreadyRunningError, held


def test_a_second_holder_is_refused_with_the_first_ones_pid(tmp_path: Path) -> None:
    state, run = tmp_path / "state", tmp_path / "run"
    with held([state, run]):
        assert (state / LOCK_NAME).read_text() == f"{os.getpid()}\n"
        assert (state / LOCK_NAME).stat().st_mode & 0o777 == 0o600
        for directories in ([state], [tmp_path / "other", run]):
            refused = pytest.raises(AlreadyRunningError, match=rf"\(pid {os.getpid()}\)")
            with refused, held(directories):
                pass
        # The refused attempt held nothing: "other" is free.
        with held([tmp_path / "other"]):
            pass
    with held([state, run]):  # released on exit
        pass


def test_the_lock_goes_with_a_killed_holder(tmp_path: Path) -> None:
    holder = textwrap.dedent(
        f"""
        import os, signal, sys
        from pathlib import Path
        from kukeon.daemon.instancelock import held
        with held([Path({str(tmp_path)!r})]):
            print("held", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    process = subprocess.run(
        [sys.executable, "-c", holder], capture_output=True, text=True, check=False
    )
    assert process.stdout == "held\n", process.stderr
    assert process.returncode == -9
    with held([tmp_path]):  # nothing stale blocks the next start
        pass
