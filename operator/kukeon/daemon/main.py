"""The `kukeond` command: parse flags, merge configuration, run the daemon.

The flags are read with argparse, not click as kukectl's are: aiohttp's server imports
argparse anyway, and click stays in memory for as long as kukeond runs (~0.9 MiB of its idle
RSS, issue 18, docs/benchmarks/memory-idle.md) for a command line read once at start."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from .config import ConfigError, load_config


def _path(value: str) -> Path:
    """A path, as click's ``Path()`` takes it: it need not exist; if it does, it is readable."""
    if os.path.exists(value) and not os.access(value, os.R_OK):
        raise argparse.ArgumentTypeError(f"path {value!r} is not readable")
    return Path(value)


def _file(value: str) -> Path:
    """A file's path: it need not exist, but it is not a directory."""
    path = _path(value)
    with contextlib.suppress(OSError):
        if stat.S_ISDIR(os.stat(value).st_mode):
            raise argparse.ArgumentTypeError(f"file {value!r} is a directory")
    return path


def _count(value: str) -> int:
    """An integer >= 0."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"{number} is not in the range x>=0")
    return number


FLAGS: Final[tuple[tuple[str, dict[str, Any]], ...]] = (
    (
        "--config",
        {
            "dest": "config_file",
            "type": _file,
            "help": "YAML configuration file (flags and KUKEON_* override it).",
        },
    ),
    ("--etcd-endpoints", {"help": "Comma-separated etcd endpoints; none = embedded etcd."}),
    ("--etcd-ca-file", {"type": _path}),
    ("--etcd-cert-file", {"type": _path}),
    ("--etcd-key-file", {"type": _path}),
    (
        "--etcd-allow-insecure",
        {
            "dest": "etcd_allow_insecure",
            "action": "store_const",
            "const": True,
            "help": "Accept plaintext etcd endpoints that need no credential (off "
            "loopback, or on loopback without etcdUsername) (warned at every start).",
        },
    ),
    (
        "--containerd-address",
        {"type": _path, "help": "containerd socket (default /run/containerd/containerd.sock)."},
    ),
    ("--state-dir", {"type": _path, "help": "Default /var/lib/kukeon."}),
    (
        "--run-dir",
        {"type": _path, "help": "Default /run/kukeon; the API socket is <run-dir>/kukeond.sock."},
    ),
    ("--node-name", {"help": "This node's name (default: the hostname)."}),
    ("--cgroup-root", {"help": "cgroup subtree kukeon manages (default /kukeon)."}),
    ("--cni-bin-dir", {"dest": "cni_bin_dirs", "help": "Comma-separated CNI plugin directories."}),
    (
        "--cni-conf-dir",
        {"type": _path, "help": "Where space conflists go when a space names none."},
    ),
    ("--etcd-prefix", {"help": "Root of kukeon's keys in etcd (default /kukeon)."}),
    (
        "--netns-dir",
        {
            "type": _path,
            "help": "Where cell network namespaces are bind-mounted (default /var/run/netns).",
        },
    ),
    ("--nft-table", {"help": "The inet table holding the egress chains (default kukeon)."}),
    ("--subnet-pool", {"help": "IPv4 pool space subnets come from (default 10.88.0.0/16)."}),
    (
        "--stop-grace-seconds",
        {
            "type": float,
            "help": "SIGTERM, then SIGKILL after this long when stopping a task (default 10).",
        },
    ),
    (
        "--parent-wait-seconds",
        {"type": float, "help": "How soon a child waiting for its parent looks again (default 1)."},
    ),
    (
        "--node-label",
        {
            "dest": "node_labels",
            "action": "append",
            "help": "A label of this node, key=value (repeatable); cells select nodes by label.",
        },
    ),
    (
        "--node-lost-timeout",
        {
            "type": float,
            "help": "Seconds a node may be NotReady before its unpinned cells are rescheduled "
            "(default 300).",
        },
    ),
    (
        "--fence-after-seconds",
        {
            "type": float,
            "help": "Seconds without a renewed heartbeat lease before the node stops its unpinned "
            "cells by itself (default: the lease TTL).",
        },
    ),
    (
        "--event-ttl-seconds",
        {"type": int, "help": "How long an Event lives after its last occurrence (default 3600)."},
    ),
    (
        "--realm-quota-objects",
        {
            "type": _count,
            "help": "Objects a realm may hold when its spec.quota.objects is unset; 0: no limit "
            "(default 10000).",
        },
    ),
    (
        "--realm-quota-storage-bytes",
        {
            "type": _count,
            "help": "Bytes of etcd a realm's documents may take when its spec.quota.storageBytes "
            "is unset; 0: no limit (default 536870912, 512 MiB).",
        },
    ),
    (
        "--realm-image-storage-bytes",
        {
            "type": _count,
            "help": "Bytes of image content a realm may hold on this node when its "
            "spec.quota.imageStorageBytes is unset; imports and pulls past it are refused; "
            "0: no limit (default 0).",
        },
    ),
    (
        "--image-storage-max-bytes",
        {
            "type": _count,
            "help": "Bytes of image content every realm together may hold on this node; imports "
            "and pulls past it are refused; 0: no limit (default 0).",
        },
    ),
    (
        "--realm-pids-limit",
        {
            "type": _count,
            "help": "Processes each realm may run on this node when its spec.limits.pids is unset; "
            "0: no limit (default: half of kernel.pid_max or kernel.threads-max, the smaller).",
        },
    ),
    (
        "--host-reserved-pids",
        {
            "type": _count,
            "help": "Tasks every realm together leaves the host: the kukeon root cgroup's pids.max "
            "is the host's limit less this; 0: no root ceiling (default: 10%% of the host's "
            "limit, at least 1024).",
        },
    ),
    (
        "--cell-connections-limit",
        {
            "type": _count,
            "help": "Connections (host conntrack entries) each bridged cell may hold; its new "
            "ones past it are dropped; 0: no limit (default 16384).",
        },
    ),
    (
        "--image-import-max-bytes",
        {
            "type": _count,
            "help": "Bytes an imported image archive may hold, as sent and once decompressed; "
            "413 past it (default 17179869184, 16 GiB).",
        },
    ),
    (
        "--image-unpacked-max-bytes",
        {
            "type": _count,
            "help": "Bytes the layers of one image unpack (of all the images of one imported "
            "archive) may take once decompressed; 0: only "
            "the snapshotter disk's free space less the DiskPressure reserve (default 0).",
        },
    ),
    (
        "--image-zstd-window-budget-bytes",
        {
            "type": _count,
            "help": "Bytes the windows of the zstd layers kukeond decompresses at once may "
            "take together; a larger window is refused (default 268435456, 256 MiB).",
        },
    ),
    ("--metrics-address", {"help": "host:port of /metrics (default 127.0.0.1:9464)."}),
    (
        "--metrics-token-file",
        {
            "type": _path,
            "help": "File holding the bearer token /metrics asks for (root's, mode 0600 or "
            "0640); unset: the token kukeond generates in <state-dir>/metrics-token.",
        },
    ),
    (
        "--metrics-open",
        {
            "dest": "metrics_open",
            "action": "store_const",
            "const": True,
            "help": "Serve /metrics without a token: every local account reads every "
            "realm's series (warned at every start).",
        },
    ),
    ("--api-address", {"help": "Optional TCP listener host:port (TLS and tokens required)."}),
    (
        "--api-max-connections",
        {
            "type": _count,
            "help": "TCP API connections held open at once; more are closed at once. 0: "
            "4096, lowered to what the open-files limit leaves (default 0).",
        },
    ),
    ("--api-tls-cert-file", {"type": _path}),
    ("--api-tls-key-file", {"type": _path}),
    ("--api-tokens-file", {"type": _path}),
    (
        "--api-max-requests-inflight",
        {
            "type": _count,
            "help": "Short API requests of token holders answered at once; 429 past it "
            "(default 400).",
        },
    ),
    (
        "--api-max-long-running",
        {
            "type": _count,
            "help": "Watches, followed logs, sessions and image transfers open at once, "
            "everyone's; token holders together stop a tenth short of it; 429 past it "
            "(default 1000).",
        },
    ),
    (
        "--api-max-long-running-per-user",
        {
            "type": _count,
            "help": "Watches, followed logs, sessions and image transfers one token holder "
            "may have open; 429 past it (default 100).",
        },
    ),
    (
        "--api-socket-group",
        {
            "help": "Group of the API socket, whose members are local admins: a name or a "
            "numeric gid; '' root's only (default kukeon; the container image sets '': to "
            "give a group there, give the host's gid).",
        },
    ),
    (
        "--allowed-host-path",
        {
            "dest": "allowed_host_paths",
            "help": "Comma-separated host directories non-admins' bind volumes may be under "
            "(realms below privileged; default none); a {realm} component: each realm's own.",
        },
    ),
    (
        "--secret-dir",
        {
            "dest": "secret_dirs",
            "help": "Comma-separated host directories non-admins' fromFile secrets may be under "
            "(realms below privileged; default none); a {realm} component: each realm's own.",
        },
    ),
    (
        "--allowed-secret-env",
        {
            "dest": "allowed_secret_env",
            "help": "Comma-separated names of kukeond's environment non-admins' fromEnv secrets "
            "may read (realms below privileged; default none).",
        },
    ),
    (
        "--encryption-key-file",
        {
            "type": _file,
            "help": "Keys Secrets and registry passwords are sealed with in etcd "
            "(default <state-dir>/encryption-keys.yaml, generated when missing).",
        },
    ),
    (
        "--fleet-token-file",
        {
            "type": _path,
            "help": "Token this node forwards other nodes' cell requests (logs, exec, kill) with.",
        },
    ),
    (
        "--fleet-ca-file",
        {"type": _path, "help": "CA that signs the other nodes' API certificates."},
    ),
    (
        "--fleet-tls-server-domain",
        {
            "help": "Check another node's API certificate for <node>.DOMAIN (e.g. nodes.kukeon) "
            "instead of its address."
        },
    ),
    (
        "--insecure-registry",
        {
            "dest": "insecure_registries",
            "help": "Comma-separated registries reached over plain HTTP; the only registries "
            "on this node (loopback, link-local, localhost, its own addresses) pulled from.",
        },
    ),
    ("--log-level", {"choices": ["debug", "info", "warning", "error"]}),
    (
        "--no-bootstrap",
        {
            "dest": "no_bootstrap",
            "action": "store_true",
            "help": "Do not create the default realm, space and stack.",
        },
    ),
    (
        "--api-only",
        {
            "dest": "api_only",
            "action": "store_const",
            "const": True,
            "help": "Serve the API against shared etcd; run no controllers.",
        },
    ),
)
"""kukeond's flags (``argparse.ArgumentParser.add_argument``'s arguments): a flag not given
is None (the file's or the environment's value stands), ``--node-label`` repeats."""


def parser() -> argparse.ArgumentParser:
    """The command line of ``FLAGS``; no abbreviations (click took none)."""
    parser = argparse.ArgumentParser(
        prog="kukeond",
        usage="kukeond [OPTIONS]",
        description="kukeond: converge kukeon's resources on this host.",
        allow_abbrev=False,
    )
    for flag, settings in FLAGS:
        parser.add_argument(flag, **settings)
    return parser


def command(argv: Sequence[str] | None = None) -> None:
    """kukeond: read the flags (``argv``, default the process's), then run the daemon."""
    flags: dict[str, Any] = vars(parser().parse_args(argv))
    config_file: Path | None = flags.pop("config_file")
    if flags.pop("no_bootstrap"):
        flags["bootstrap"] = False
    try:
        config = load_config(config_file=config_file, overrides=flags)
    except ConfigError as error:
        print(f"kukeond: {error}", file=sys.stderr)
        sys.exit(2)

    from kukeon.runtime.hostfiles import PROCESS_UMASK

    from . import mallocpolicy
    from .app import run_daemon
    from .logs import configure_logging
    from .starterrors import StartupError

    # Defense in depth beside the explicit modes: nothing kukeond or the programs it starts
    # (etcd, CNI plugins) create is for other users. Containers' files are runc's.
    os.umask(PROCESS_UMASK)
    configure_logging(config.log_level)
    raise_open_files_limit()  # logged: after configure_logging
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
        logger = logging.getLogger(__name__)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as error:
            logger.warning(
                "cannot raise the open-files limit from %d to %d: %s", soft, wanted, error
            )
        else:
            logger.info("raised the open-files limit (RLIMIT_NOFILE) from %d to %d", soft, wanted)


def main() -> None:
    command()
