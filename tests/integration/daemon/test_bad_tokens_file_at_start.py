"""A tokens file kukeond cannot use (unreadable, not YAML, a bad entry) stops its start with
one line naming the file, as its other start failures do (starterrors), and leaves nothing
running. Before, the API server's error escaped as a traceback (helper-151 saw it setting
up a plane)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kukeon.daemon.app import Daemon
from kukeon.daemon.starterrors import StartupError
from tests.fixtures.containerd import PrivateContainerd
from tests.fixtures.etcd import EtcdServer
from tests.fixtures.kukeond import kukeond_config

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("content", "said"),
    [("tokens: [unclosed", "is not YAML"), (None, "cannot read tokens file")],
    ids=["not-yaml", "unreadable"],
)
async def test_a_tokens_file_kukeond_cannot_use_stops_the_start_with_one_line(
    tmp_path: Path,
    containerd_daemon: PrivateContainerd,
    etcd_server: EtcdServer,
    etcd_key_prefix: str,
    content: str | None,
    said: str,
) -> None:
    tokens = tmp_path / "tokens.yaml"
    if content is None:
        tokens.mkdir()  # read_text of a directory: IsADirectoryError
    else:
        tokens.write_text(content)
        tokens.chmod(0o600)
    config = kukeond_config(
        tmp_path,
        containerd=containerd_daemon,
        etcd=etcd_server,
        prefix=etcd_key_prefix,
        overrides={"api_tokens_file": str(tokens)},
    )
    daemon = Daemon(config)
    with pytest.raises(StartupError, match=said) as refused:
        await daemon.start()
    assert str(tokens) in str(refused.value)
    assert daemon.operator is None or not daemon.operator.running  # stopped again
