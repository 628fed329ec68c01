"""A cell's /etc/resolv.conf: the host's resolvers that a cell's own network namespace can
reach (cells had none at all: no name resolved in a busybox cell)."""

from __future__ import annotations

from pathlib import Path

from kukeon.runtime.network import write_cell_host_files
from kukeon.runtime.network.resolvconf import host_resolv_conf, render_resolv_conf

HOST = """\
# written by dhclient
search corp.example lan
nameserver 127.0.0.1
nameserver 10.0.0.53
nameserver ::1
nameserver fe80::1%eth0
options ndots:2 timeout:1
"""


def test_loopback_resolvers_are_left_out_the_rest_kept() -> None:
    assert render_resolv_conf(HOST) == (
        "search corp.example lan\n"
        "nameserver 10.0.0.53\n"
        "nameserver fe80::1%eth0\n"
        "options ndots:2 timeout:1\n"
    )


def test_systemd_resolveds_stub_is_replaced_by_its_upstream(tmp_path: Path) -> None:
    host, upstream = tmp_path / "resolv.conf", tmp_path / "upstream.conf"
    host.write_text("nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n")
    upstream.write_text("nameserver 192.0.2.1\nnameserver 192.0.2.2\nsearch example.org\n")
    assert host_resolv_conf(host, upstream) == (
        "nameserver 192.0.2.1\nnameserver 192.0.2.2\nsearch example.org\n"
    )
    # Without the upstream list, no nameserver is left (never a public resolver).
    upstream.unlink()
    assert host_resolv_conf(host, upstream) == "options edns0 trust-ad\nsearch .\n"


def test_a_host_without_resolv_conf_gives_an_empty_file(tmp_path: Path) -> None:
    assert host_resolv_conf(tmp_path / "none", tmp_path / "none2") == ""


async def test_written_with_the_hosts_files_keeping_its_inode(tmp_path: Path) -> None:
    answers = iter(["nameserver 10.0.0.1\n", "nameserver 10.0.0.2\n"])
    files = await write_cell_host_files(
        directory=tmp_path, hosts_text="h\n", hostname_text="c\n", resolv_conf=lambda: next(answers)
    )
    inode = files.resolv_conf.stat().st_ino
    assert files.resolv_conf.read_text() == "nameserver 10.0.0.1\n"
    assert files.resolv_conf.stat().st_mode & 0o777 == 0o644
    await write_cell_host_files(
        directory=tmp_path, hosts_text="h\n", hostname_text="c\n", resolv_conf=lambda: next(answers)
    )
    assert files.resolv_conf.read_text() == "nameserver 10.0.0.2\n"
    assert files.resolv_conf.stat().st_ino == inode
