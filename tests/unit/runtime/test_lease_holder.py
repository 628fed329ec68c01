"""A containerd lease names the process that took it, and a lease whose holder no longer
runs is abandoned: another boot's, a pid gone, or a pid that is another process now."""

from __future__ import annotations

import subprocess

from kukeon.processes import identify
from kukeon.runtime.containerd.leases import _boot_id, holder, holder_gone


def test_this_process_holds_its_leases() -> None:
    name = holder()
    boot, pid, started = name.split("/")
    assert boot == _boot_id()
    me = identify(int(pid))
    assert me is not None
    assert me.started == int(started)
    assert not holder_gone(name)


def test_a_holder_that_ended_or_was_replaced_is_gone() -> None:
    child = subprocess.Popen(["sleep", "30"])
    alive = identify(child.pid)
    assert alive is not None
    label = f"{_boot_id()}/{child.pid}/{alive.started}"
    assert not holder_gone(label)
    # The same pid, another start time: another process (the pid was reused).
    assert holder_gone(f"{_boot_id()}/{child.pid}/{alive.started + 1}")
    child.kill()
    child.wait()
    assert holder_gone(label)
    assert holder_gone(f"another-boot/{child.pid}/{alive.started}")


def test_a_label_that_does_not_read_is_not_judged() -> None:
    for label in ("", "x", f"{_boot_id()}/pid/1", f"{_boot_id()}/1", "//"):
        assert not holder_gone(label)
