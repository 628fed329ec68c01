"""Who holds a port kukeond serves on (processes.py): the listening sockets' owners from
/proc/net/tcp and tcp6, and whether they are other accounts' only (a local user's, which
must not keep kukeond down: daemon/metricslistener.py, apiserver/runner.py)."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from kukeon import processes
from kukeon.daemon.metricslistener import squatters
from kukeon.processes import account, held_by_others, listener_uids, squatter_uids

HEADER = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
    "timeout inode\n"
)


def _row(local: str, state: str, uid: int) -> str:
    return (
        f"   0: {local} 00000000:0000 {state} 00000000:00000000 00:00000000 00000000 "
        f"{uid:>5}        0 12345 1 0000000000000000 100 0 0 10 0\n"
    )


def test_the_owners_of_the_listeners_on_a_port_any_address(tmp_path: Path) -> None:
    tcp, tcp6 = tmp_path / "tcp", tmp_path / "tcp6"
    tcp.write_text(
        HEADER
        + _row("0100007F:24F8", "0A", 65534)  # 127.0.0.1:9464, listening, nobody's
        + _row("0100007F:24F8", "01", 1000)  # an established connection: not a listener
        + _row("00000000:0016", "0A", 0)  # :22, root's
    )
    tcp6.write_text(HEADER + _row("00000000000000000000000000000000:24F8", "0A", 1000))
    assert listener_uids(9464, (tcp, tcp6)) == {65534, 1000}
    assert listener_uids(22, (tcp, tcp6)) == {0}
    assert listener_uids(80, (tcp, tmp_path / "absent")) == set()


@pytest.mark.parametrize(
    ("uids", "code", "expected"),
    [
        ({65534}, errno.EADDRINUSE, [65534]),
        ({1000, 65534}, errno.EADDRINUSE, [1000, 65534]),
        ({0, 65534}, errno.EADDRINUSE, []),  # root's among them: another service
        ({0}, errno.EADDRINUSE, []),
        (set(), errno.EADDRINUSE, []),  # gone meanwhile, or another namespace's
        ({65534}, errno.EACCES, []),  # not "in use": a setting to fix
    ],
)
def test_only_other_accounts_listeners_are_squatters(
    monkeypatch: pytest.MonkeyPatch, uids: set[int], code: int, expected: list[int]
) -> None:
    asked: list[int] = []

    def listeners(port: int) -> set[int]:
        asked.append(port)
        return uids

    monkeypatch.setattr(processes, "listener_uids", listeners)
    assert squatter_uids(9464, OSError(code, "refused")) == expected
    named = ", ".join(map(account, expected)) if expected else None
    assert held_by_others(9464, OSError(code, "refused")) == named
    assert squatters("[::1]:9464", OSError(code, "refused")) == named  # the metrics address
    assert set(asked) <= {9464}


def test_an_account_is_named_with_its_uid() -> None:
    assert account(0) == "uid 0 (root)"
    assert account(2**31 - 7) == f"uid {2**31 - 7}"
