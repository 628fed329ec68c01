"""The `kukeond` command: parse flags, merge configuration, run the daemon."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click

from .config import ConfigError, load_config


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="YAML configuration file (flags and KUKEON_* override it).",
)
@click.option("--etcd-endpoints", help="Comma-separated etcd endpoints; none = embedded etcd.")
@click.option("--etcd-ca-file", type=click.Path(path_type=Path))
@click.option("--etcd-cert-file", type=click.Path(path_type=Path))
@click.option("--etcd-key-file", type=click.Path(path_type=Path))
@click.option(
    "--etcd-allow-insecure",
    "etcd_allow_insecure",
    is_flag=True,
    default=None,
    help="Accept plaintext etcd endpoints that are not on loopback (warned at every start).",
)
@click.option(
    "--containerd-address",
    type=click.Path(path_type=Path),
    help="containerd socket (default /run/containerd/containerd.sock).",
)
@click.option("--state-dir", type=click.Path(path_type=Path), help="Default /var/lib/kukeon.")
@click.option(
    "--run-dir",
    type=click.Path(path_type=Path),
    help="Default /run/kukeon; the API socket is <run-dir>/kukeond.sock.",
)
@click.option("--node-name", help="This node's name (default: the hostname).")
@click.option("--cgroup-root", help="cgroup subtree kukeon manages (default /kukeon).")
@click.option("--cni-bin-dir", "cni_bin_dirs", help="Comma-separated CNI plugin directories.")
@click.option(
    "--cni-conf-dir",
    type=click.Path(path_type=Path),
    help="Where space conflists go when a space names none.",
)
@click.option("--etcd-prefix", help="Root of kukeon's keys in etcd (default /kukeon).")
@click.option(
    "--netns-dir",
    type=click.Path(path_type=Path),
    help="Where cell network namespaces are bind-mounted (default /var/run/netns).",
)
@click.option("--nft-table", help="The inet table holding the egress chains (default kukeon).")
@click.option("--subnet-pool", help="IPv4 pool space subnets come from (default 10.88.0.0/16).")
@click.option(
    "--stop-grace-seconds",
    type=float,
    help="SIGTERM, then SIGKILL after this long when stopping a task (default 10).",
)
@click.option(
    "--parent-wait-seconds",
    type=float,
    help="How soon a child waiting for its parent looks again (default 1).",
)
@click.option(
    "--node-label",
    "node_labels",
    multiple=True,
    help="A label of this node, key=value (repeatable); cells select nodes by label.",
)
@click.option(
    "--node-lost-timeout",
    type=float,
    help="Seconds a node may be NotReady before its unpinned cells are rescheduled (default 300).",
)
@click.option(
    "--fence-after-seconds",
    type=float,
    help="Seconds without a renewed heartbeat lease before the node stops its unpinned "
    "cells by itself (default: the lease TTL).",
)
@click.option(
    "--event-ttl-seconds",
    type=int,
    help="How long an Event lives after its last occurrence (default 3600).",
)
@click.option(
    "--realm-quota-objects",
    type=click.IntRange(min=0),
    help="Objects a realm may hold when its spec.quota.objects is unset; 0: no limit "
    "(default 10000).",
)
@click.option(
    "--realm-quota-storage-bytes",
    type=click.IntRange(min=0),
    help="Bytes of etcd a realm's documents may take when its spec.quota.storageBytes is "
    "unset; 0: no limit (default 536870912, 512 MiB).",
)
@click.option(
    "--realm-pids-limit",
    type=click.IntRange(min=0),
    help="Processes each realm may run on this node when its spec.limits.pids is unset; 0: "
    "no limit (default: half of kernel.pid_max or kernel.threads-max, the smaller).",
)
@click.option(
    "--host-reserved-pids",
    type=click.IntRange(min=0),
    help="Tasks every realm together leaves the host: the kukeon root cgroup's pids.max is "
    "the host's limit less this; 0: no root ceiling (default: 10% of the host's limit, at "
    "least 1024).",
)
@click.option("--metrics-address", help="host:port of /metrics (default 127.0.0.1:9464).")
@click.option("--api-address", help="Optional TCP listener host:port (TLS and tokens required).")
@click.option("--api-tls-cert-file", type=click.Path(path_type=Path))
@click.option("--api-tls-key-file", type=click.Path(path_type=Path))
@click.option("--api-tokens-file", type=click.Path(path_type=Path))
@click.option(
    "--allowed-host-path",
    "allowed_host_paths",
    help="Comma-separated host directories non-admins' bind volumes may be under "
    "(realms below privileged; default none).",
)
@click.option(
    "--secret-dir",
    "secret_dirs",
    help="Comma-separated host directories non-admins' fromFile secrets may be under "
    "(realms below privileged; default none).",
)
@click.option(
    "--allowed-secret-env",
    "allowed_secret_env",
    help="Comma-separated names of kukeond's environment non-admins' fromEnv secrets may "
    "read (realms below privileged; default none).",
)
@click.option(
    "--encryption-key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Keys Secrets and registry passwords are sealed with in etcd "
    "(default <state-dir>/encryption-keys.yaml, generated when missing).",
)
@click.option(
    "--fleet-token-file",
    type=click.Path(path_type=Path),
    help="Token this node forwards other nodes' cell requests (logs, exec, kill) with.",
)
@click.option(
    "--fleet-ca-file",
    type=click.Path(path_type=Path),
    help="CA that signs the other nodes' API certificates.",
)
@click.option(
    "--fleet-tls-server-domain",
    help="Check another node's API certificate for <node>.DOMAIN (e.g. nodes.kukeon) "
    "instead of its address.",
)
@click.option(
    "--insecure-registry",
    "insecure_registries",
    help="Comma-separated registries reached over plain HTTP.",
)
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
@click.option(
    "--no-bootstrap",
    "no_bootstrap",
    is_flag=True,
    default=False,
    help="Do not create the default realm, space and stack.",
)
@click.option(
    "--api-only",
    "api_only",
    is_flag=True,
    default=None,
    help="Serve the API against shared etcd; run no controllers.",
)
def command(config_file: Path | None, no_bootstrap: bool, **flags: Any) -> None:
    """kukeond: converge kukeon's resources on this host."""
    if no_bootstrap:
        flags["bootstrap"] = False
    if not flags.get("node_labels"):
        flags["node_labels"] = None  # not given: keep the file's or the environment's labels
    try:
        config = load_config(config_file=config_file, overrides=flags)
    except ConfigError as error:
        click.echo(f"kukeond: {error}", err=True)
        sys.exit(2)

    from kukeon.runtime.hostfiles import PROCESS_UMASK

    from . import mallocpolicy
    from .app import run_daemon
    from .logs import configure_logging
    from .starterrors import StartupError

    # Defense in depth beside the explicit modes: nothing kukeond or the programs it starts
    # (etcd, CNI plugins) create is for other users. Containers' files are runc's.
    os.umask(PROCESS_UMASK)
    raise_open_files_limit()
    configure_logging(config.log_level)
    mallocpolicy.cap_arenas()  # before kukeond's threads start: they share one arena
    try:
        with contextlib.suppress(KeyboardInterrupt):  # a second ^C during shutdown
            asyncio.run(run_daemon(config))
    except StartupError as error:
        logging.getLogger(__name__).error("kukeond cannot start: %s", error)
        sys.exit(1)


def raise_open_files_limit() -> None:
    """The soft limit of open files up to the hard one, as Go programs do at start: kukeond
    holds a descriptor per running container's log copier (a pidfd) beside its sockets, and
    1,024 (the usual soft limit outside the systemd unit, which sets 1048576) is too few
    for a host of a thousand containers."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def main() -> None:
    command()
