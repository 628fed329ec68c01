"""kukeond started while containerd does not answer (stopped, being upgraded, not
installed) stops with one line naming it, as for its other causes (starterrors), instead of
a traceback: before, every start systemd made while containerd was down wrote a 47-line
ContainerdUnavailableError traceback to the journal."""

from __future__ import annotations

from pathlib import Path

import pytest

from kukeon.daemon import app
from kukeon.daemon.app import Daemon
from kukeon.daemon.starterrors import StartupError
from tests.fixtures.containerd import PrivateContainerd
from tests.fixtures.etcd import EtcdServer
from tests.fixtures.kukeond import kukeond_config

pytestmark = pytest.mark.integration


async def test_a_containerd_that_does_not_answer_stops_the_start_with_one_line(
    tmp_path: Path,
    etcd_server: EtcdServer,
    etcd_key_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    absent = PrivateContainerd(tmp_path / "containerd", binary="containerd")  # never started
    (tmp_path / "containerd").mkdir()
    config = kukeond_config(tmp_path, containerd=absent, etcd=etcd_server, prefix=etcd_key_prefix)
    monkeypatch.setattr(app, "CONTAINERD_START_WAIT_SECONDS", 1.0)

    daemon = Daemon(config)
    with pytest.raises(StartupError, match=r"containerd did not answer within 1 s") as refused:
        await daemon.start()
    assert str(absent.socket) in str(refused.value)
    assert "--containerd-address" in str(refused.value)
    assert daemon.operator is None  # refused before the controllers were made
