"""A cell's /etc/hosts and /etc/hostname: rendering and writing."""

from __future__ import annotations

import os
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from kukeon.fileio import write_atomically
from kukeon.runtime.network import render_hostname, render_hosts, write_cell_host_files
from kukeon.runtime.network.hosts import (
    NODE_HOSTS_HEADER,
    render_node_hosts,
    validate_hostname,
    write_node_files,
)


def test_hosts_with_address_aliases_and_extra_hosts() -> None:
    text = render_hosts(
        cell_name="web-0",
        ip=IPv4Address("10.88.3.7"),
        aliases=("web", "web-0", "frontend.internal"),
        extra_hosts=[("db", IPv4Address("10.88.3.9")), ("v6", IPv6Address("fd00::9"))],
    )
    assert text == (
        "127.0.0.1\tlocalhost\n"
        "::1\tlocalhost ip6-localhost ip6-loopback\n"
        "fe00::0\tip6-localnet\n"
        "ff00::0\tip6-mcastprefix\n"
        "ff02::1\tip6-allnodes\n"
        "ff02::2\tip6-allrouters\n"
        "10.88.3.7\tweb-0 web frontend.internal\n"
        "10.88.3.9\tdb\n"
        "fd00::9\tv6\n"
    )


def test_hostname_differs_from_cell_name() -> None:
    text = render_hosts(cell_name="web-0", hostname="api", ip=IPv4Address("10.0.0.2"))
    assert "10.0.0.2\tapi web-0\n" in text


def test_cell_without_address_points_its_names_at_loopback() -> None:
    assert "127.0.1.1\tsolo\n" in render_hosts(cell_name="solo")


def test_hostname_file() -> None:
    assert render_hostname("web-0") == "web-0\n"


@pytest.mark.parametrize("bad", ["", "-web", "web-", "a..b", "under_score", "x" * 65, "a b"])
def test_invalid_names_are_refused_with_the_field(bad: str) -> None:
    with pytest.raises(ValueError, match="hostname"):
        validate_hostname(bad)
    with pytest.raises(ValueError, match="network alias"):
        render_hosts(cell_name="ok", aliases=[bad])


async def test_write_creates_then_rewrites_in_place(tmp_path: Path) -> None:
    directory = tmp_path / "cells" / "r" / "s" / "st" / "c"
    files = await write_cell_host_files(
        directory=directory, hosts_text="one\n", hostname_text="c\n"
    )
    assert files.hosts.read_text() == "one\n"
    assert files.hostname.read_text() == "c\n"
    inode = files.hosts.stat().st_ino
    # Containers bind-mount the file: a rewrite must keep the inode they hold.
    await write_cell_host_files(directory=directory, hosts_text="two\n", hostname_text="c\n")
    assert files.hosts.read_text() == "two\n"
    assert files.hosts.stat().st_ino == inode


async def test_only_missing_files_are_written_before_a_task_is_created(tmp_path: Path) -> None:
    """A cell's files made before its task (its bind mounts need them) leave those already
    there as they are: its running containers read them."""
    directory = tmp_path / "cell"
    files = await write_cell_host_files(
        directory=directory, hosts_text="none yet\n", hostname_text="c\n", only_missing=True
    )
    assert [path.read_text() for path in (files.hosts, files.hostname)] == ["none yet\n", "c\n"]
    assert files.resolv_conf.is_file()
    await write_cell_host_files(
        directory=directory, hosts_text="10.88.0.2 c\n", hostname_text="c\n"
    )
    files.hostname.unlink()
    await write_cell_host_files(
        directory=directory, hosts_text="none yet\n", hostname_text="c\n", only_missing=True
    )
    assert files.hosts.read_text() == "10.88.0.2 c\n"
    assert files.hostname.read_text() == "c\n"


async def test_host_files_are_not_flushed_to_disk_and_state_files_are(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every pass writes a cell's hosts files again: no fsync for them (a 50-cell burst's
    threads waited on four per cell); files written once, as the subnet store, still are."""
    flushed: list[int] = []
    monkeypatch.setattr(os, "fsync", flushed.append)
    directory = tmp_path / "cell"
    for hosts in ("one\n", "two\n"):  # created, then rewritten in place
        await write_cell_host_files(directory=directory, hosts_text=hosts, hostname_text="c\n")
    assert flushed == []
    write_atomically(tmp_path / "state.json", "{}", mode=0o600)
    assert len(flushed) == 2  # the file, then its directory


def test_node_files_copy_the_nodes_hosts_and_rewrite_in_place(tmp_path: Path) -> None:
    # A hostNetwork container's /etc/hosts is the node's (kubelet's and docker's), a copy.
    node = tmp_path / "etc-hosts"
    node.write_text("127.0.0.1\tlocalhost\n10.1.2.3\tnode1.example node1\n")
    hosts, hostname = tmp_path / "cell" / "node-hosts", tmp_path / "cell" / "node-hostname"
    write_node_files(hosts=hosts, hostname=hostname, node_hostname="node1", node_hosts=node)
    assert hosts.read_text() == NODE_HOSTS_HEADER + node.read_text()
    assert hostname.read_text() == "node1\n"
    assert oct(hosts.stat().st_mode & 0o777) == oct(0o644)
    inodes = (hosts.stat().st_ino, hostname.stat().st_ino)
    before = hosts.stat().st_mtime_ns
    write_node_files(hosts=hosts, hostname=hostname, node_hostname="node1", node_hosts=node)
    assert hosts.stat().st_mtime_ns == before  # unchanged: not written again
    node.write_text("127.0.0.1\tlocalhost\n")
    write_node_files(hosts=hosts, hostname=hostname, node_hostname="renamed", node_hosts=node)
    assert hosts.read_text() == NODE_HOSTS_HEADER + "127.0.0.1\tlocalhost\n"
    assert hostname.read_text() == "renamed\n"
    assert (hosts.stat().st_ino, hostname.stat().st_ino) == inodes  # running binds see it
    node.unlink()  # a node without /etc/hosts: the localhost lines
    write_node_files(hosts=hosts, hostname=hostname, node_hostname="n", node_hosts=node)
    assert hosts.read_text() == render_node_hosts(None)
    assert "127.0.0.1\tlocalhost\n" in render_node_hosts(None)
