"""A local user against a running kukeond: no side door to etcd, the API or kukeond's files.

kukeond runs as a real process (the ``kukeond`` command, so its umask and its children are
the production ones) with the embedded etcd, the session's private containerd, a TCP API
with an admin token and a fleet token, and private host resources (cgroup root, nft table,
netns and CNI directories, subnet pool). As admin (the unix socket) the test runs a cell
that logs and stages a ``fromEnv`` and a ``fromFile`` secret, an attachable (TTY) cell, in
a realm with an inline registry password. Then, as ``nobody`` (``runuser``), it checks:

- kukeond's etcd listens on no TCP port (/proc), and each of its unix sockets (client and
  peer) refuses ``etcdctl`` over plain http and over TLS without a client certificate, for
  reads and writes, and a raw HTTP request gets no data; root with the client certificate
  reads (the control);
- the API socket refuses the connection; the TCP API answers 401 without a token, and
  what it answers without one (health, readiness, version, the console's page) holds no
  credential;
- no file under the state and run directories can be read, a container log included, and
  its rotated files (the logs rotate at 64 KiB here); an open exec session's FIFOs are
  0600; no directory there grants others anything and no file does either, except the
  documented ``hosts``/``hostname``/``resolv.conf`` a container's user reads through its
  bind mount; what an older version left wider (made so before kukeond starts) was
  narrowed;
- no process's command line holds the admin token, the fleet token, the secrets' values,
  the registry password or etcd key material; nobody reads the environment of, nor lists
  the descriptors of, nor signals, kukeond, its etcd, the containers' loggers, a
  terminal's keeper, the containerd shims or the containers' processes (the fromEnv secret
  is in their environment; they run as root: a container run as a uid a host account
  uses is that account's, docs/kukectl.md, Secrets).

The temporary base directory is made ``0755`` so that what keeps ``nobody`` out is
kukeond's own modes, not pytest's ``0700`` temporary directories.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from kukeon.controllers.cellfiles import container_readable
from kukeon.daemon.config import DaemonConfig
from kukeon.daemon.metricstoken import read_metrics_token
from kukeon.runtime.containerd import ContainerdClient
from kukeon.runtime.containerd.crilog import KEEPER_NAME
from kukeon.runtime.hostfiles import TERMINAL_LOG_MARK
from kukeon.store.pki import EtcdPki
from tests.fixtures.containerd import BusyboxImage, PrivateContainerd, clean_namespace
from tests.fixtures.hostleaks import own_daemon, own_directory, random_pool
from tests.fixtures.kukeond import sweep_host
from tests.fixtures.procsockets import tcp_listeners
from tests.fixtures.services import free_tcp_port, require_binary, require_root, unavailable

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SPACE, STACK = "sec", "st"
NOBODY = "nobody"
BURST = f"i=0; while [ $i -lt 2000 ]; do echo burst-$i-{'x' * 90}; i=$((i+1)); done; "
"""~200 KB of output, so that the talker's log rotates (64 KiB files here, 3 kept)."""


@dataclass
class LocalKukeond:
    base: Path
    config: DaemonConfig
    process: subprocess.Popen[bytes]
    realm: str
    image: BusyboxImage
    admin_token: str
    fleet_token: str
    env_secret: str
    file_secret: str
    registry_password: str
    api_port: int

    @property
    def registry_realm(self) -> str:
        return f"{self.realm}-reg"

    @property
    def socket(self) -> Path:
        return self.config.api_socket

    @property
    def scope(self) -> list[str]:
        return ["--realm", self.realm, "--space", SPACE, "--stack", STACK]

    def kukectl(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "kukectl"), *args],
            env={**os.environ, "KUKEON_SERVER": f"unix://{self.socket}"},
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=180,
        )

    def log_tail(self) -> str:
        try:
            return (self.base / "kukeond.log").read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"


def as_nobody(*command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["runuser", "-u", NOBODY, "--", *command],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        cwd="/",
    )


def _make_api_certificate(directory: Path) -> tuple[Path, Path]:
    subprocess.run(
        ["bash", str(REPO / "hack" / "make-ca.sh"), "--out", str(directory), "--quiet"],
        check=True,
        capture_output=True,
    )
    return directory / "server.crt", directory / "server.key"


def _wait_ready(kukeond: LocalKukeond, within: float = 90.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if kukeond.process.poll() is not None:
            raise AssertionError(f"kukeond exited: {kukeond.log_tail()}")
        if kukeond.socket.exists() and kukeond.kukectl("get", "realms").returncode == 0:
            return
        time.sleep(0.3)
    raise AssertionError(f"kukeond not ready after {within:g}s: {kukeond.log_tail()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)


@pytest.fixture
def local_kukeond(
    containerd_daemon: PrivateContainerd, containerd_test_image: BusyboxImage
) -> Iterator[LocalKukeond]:
    require_root()
    for name, package in (
        ("runuser", "util-linux"),
        ("etcd", "etcd-server"),
        ("etcdctl", "etcd-client"),
        ("curl", "curl"),
        ("nft", "nftables"),
        ("openssl", "openssl"),
    ):
        require_binary(name, package)
    require_binary("bridge", "containernetworking-plugins", "/usr/lib/cni", "/opt/cni/bin")
    base = Path(tempfile.mkdtemp(prefix="kukeon-security-", dir="/tmp"))
    base.chmod(0o755)  # nobody may walk up to kukeond's directories; their modes decide
    own_directory(base)
    token = secrets.token_hex(3)
    config = DaemonConfig(
        containerd_address=Path(containerd_daemon.address),
        state_dir=base / "state",
        run_dir=base / "run",
        node_name=f"sec-{token}",
        cgroup_root=f"/kukeon-test-{token}",
        cni_conf_dir=base / "cni",
        netns_dir=base / "netns",
        nft_table=f"kukeon_test_{token}",
        subnet_pool=random_pool(),
        metrics_address=f"127.0.0.1:{free_tcp_port()}",
        bootstrap=False,
    )
    own_daemon(config)
    # What an older kukeon left: a 0755 state directory, a 0644 archive in a 0755 directory
    # (named in the store's index: an archive no name points at is removed at start).
    older = config.state_dir / "images" / "older.tar"
    older.parent.mkdir(parents=True)
    older.write_bytes(b"an image")
    (older.parent / "index.json").write_text('{"example.com/older:1": "older.tar"}')
    for path, wide in ((config.state_dir, 0o755), (older.parent, 0o755), (older, 0o644)):
        path.chmod(wide)
    private = base / "private"
    private.mkdir(mode=0o700)
    cert, key = _make_api_certificate(private / "ca")
    admin_token = "admin-" + secrets.token_hex(16)
    fleet_token = "fleet-" + secrets.token_hex(16)
    tokens = private / "tokens.yaml"
    tokens.write_text(
        yaml.safe_dump(
            {
                "tokens": [
                    {"token": admin_token, "user": "alice", "role": "admin"},
                    {"token": fleet_token, "user": "fleet", "role": "node"},
                ]
            }
        )
    )
    (private / "fleet-token").write_text(fleet_token + "\n")
    for credential in (tokens, private / "fleet-token"):
        credential.chmod(0o600)  # as docs/install.md asks (a 0644 one is warned about)
    secret_dir = private / "secrets"
    secret_dir.mkdir()
    file_secret = "file-secret-" + secrets.token_hex(16)
    (secret_dir / "token").write_text(file_secret)
    env_secret = "env-secret-" + secrets.token_hex(16)
    api_port = free_tcp_port()
    command = [
        str(BIN / "kukeond"),
        "--containerd-address", str(config.containerd_address),
        "--state-dir", str(config.state_dir),
        "--run-dir", str(config.run_dir),
        "--node-name", config.node_name,
        "--cgroup-root", config.cgroup_root,
        "--cni-conf-dir", str(config.cni_conf_dir),
        "--netns-dir", str(config.netns_dir),
        "--nft-table", config.nft_table,
        "--subnet-pool", str(config.subnet_pool),
        "--metrics-address", config.metrics_address,
        "--api-address", f"127.0.0.1:{api_port}",
        "--api-tls-cert-file", str(cert),
        "--api-tls-key-file", str(key),
        "--api-tokens-file", str(tokens),
        "--fleet-token-file", str(private / "fleet-token"),
        "--secret-dir", str(secret_dir),
        "--allowed-secret-env", "SECURITY_TEST_SECRET",
        "--no-bootstrap",
        # The cells' sh ignores SIGTERM: the realms' deletion need not wait 10 s for each.
        "--stop-grace-seconds", "1",
    ]  # fmt: skip
    log = (base / "kukeond.log").open("ab")
    os.chmod(base / "kukeond.log", 0o600)
    environment = {key: value for key, value in os.environ.items() if not key.startswith("KUKEON_")}
    process = subprocess.Popen(
        command,
        env={
            **environment,
            "SECURITY_TEST_SECRET": env_secret,
            # Small logs, so that the talker's rotate (their files are looked at too).
            "KUKEON_CONTAINER_LOG_MAX_SIZE": "65536",
            "KUKEON_CONTAINER_LOG_MAX_FILES": "3",
        },
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    running = LocalKukeond(
        base=base,
        config=config,
        process=process,
        realm=f"sec{token}",
        image=containerd_test_image,
        admin_token=admin_token,
        fleet_token=fleet_token,
        env_secret=env_secret,
        file_secret=file_secret,
        registry_password="registry-password-" + secrets.token_hex(16),
        api_port=api_port,
    )
    try:
        _wait_ready(running)
        yield running
    finally:
        if process.poll() is None:
            for realm in (running.realm, running.registry_realm):
                running.kukectl("delete", "realm", realm, "--cascade", "--wait", "--timeout=120s")
        _stop(process)
        _sweep(running, containerd_daemon)
        shutil.rmtree(base, ignore_errors=True)


def _sweep(kukeond: LocalKukeond, containerd_daemon: PrivateContainerd) -> None:
    """Whatever a failed test (or a realm deletion cut short) left on the host."""

    async def sweep() -> None:
        client = ContainerdClient(containerd_daemon.address)
        try:
            with contextlib.suppress(Exception):
                await clean_namespace(client, f"{kukeond.realm}.kukeon.io")
        finally:
            await client.close()
        await sweep_host(kukeond.config, realm=kukeond.realm, spaces=[SPACE])

    asyncio.run(sweep())


def _apply(kukeond: LocalKukeond, documents: list[dict[str, object]]) -> None:
    result = kukeond.kukectl("apply", "-f", "-", stdin=yaml.safe_dump_all(documents))
    assert result.returncode == 0, result.stderr + kukeond.log_tail()


def _run_workloads(kukeond: LocalKukeond) -> None:
    """A logging cell with a fromEnv and a fromFile secret, and a TTY cell."""
    realm, image = kukeond.realm, kukeond.image.name
    _apply(
        kukeond,
        [
            {"apiVersion": "kukeon.io/v1beta1", "kind": "Realm", "metadata": {"name": realm}},
            {
                "apiVersion": "kukeon.io/v1beta1",
                "kind": "Space",
                "metadata": {"name": SPACE},
                "spec": {"realmId": realm},
            },
            {
                "apiVersion": "kukeon.io/v1beta1",
                "kind": "Stack",
                "metadata": {"name": STACK},
                "spec": {"realmId": realm, "spaceId": SPACE},
            },
        ],
    )
    imported = kukeond.kukectl("image", "import", str(kukeond.image.archive), "--realm", realm)
    assert imported.returncode == 0, imported.stderr
    cell_spec = {"realmId": realm, "spaceId": SPACE, "stackId": STACK}
    secret_file = kukeond.base / "private" / "secrets" / "token"
    _apply(
        kukeond,
        [
            {
                "apiVersion": "kukeon.io/v1beta1",
                "kind": "Cell",
                "metadata": {"name": "talker"},
                "spec": {
                    **cell_spec,
                    "containers": [
                        {
                            "id": "app",
                            "image": image,
                            "root": True,
                            "command": "sh",
                            "args": [
                                "-c",
                                BURST
                                + 'test -s /run/secrets/token && test -n "$TOKEN" && echo staged; '
                                "while true; do echo tick; sleep 0.5; done",
                            ],
                            "secrets": [
                                {"name": "TOKEN", "fromEnv": "SECURITY_TEST_SECRET"},
                                {
                                    "name": "token-file",
                                    "fromFile": str(secret_file),
                                    "mountPath": "/run/secrets/token",
                                },
                            ],
                        }
                    ],
                },
            },
            {
                "apiVersion": "kukeon.io/v1beta1",
                "kind": "Cell",
                "metadata": {"name": "console"},
                "spec": {
                    **cell_spec,
                    "containers": [
                        {
                            "id": "sh",
                            "image": image,
                            "root": True,
                            "attachable": True,
                            "command": "sh",
                        }
                    ],
                },
            },
        ],
    )
    for cell in ("talker", "console"):
        waited = kukeond.kukectl(
            "wait", f"cell/{cell}", "--for=state=Ready", "--timeout=90s", *kukeond.scope
        )
        assert waited.returncode == 0, waited.stderr + kukeond.log_tail()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        logs = kukeond.kukectl("logs", "talker", *kukeond.scope)
        if "tick" in logs.stdout:
            break
        time.sleep(0.5)
    # Reading logs is root's (kukeond's) business: 0640 files are no obstacle to it.
    assert "staged" in logs.stdout, logs.stdout + logs.stderr
    assert "tick" in logs.stdout, logs.stdout + logs.stderr


def _create_realm_with_registry_password(kukeond: LocalKukeond) -> None:
    """A second realm holding an inline registry password (stored encrypted by kukeond)."""
    realm = kukeond.registry_realm
    # Straight to the API, the password inline (kukeon's compatibility form).
    realm_document = {
        "apiVersion": "kukeon.io/v1beta1",
        "kind": "Realm",
        "metadata": {"name": realm},
        "spec": {
            "registryCredentials": [
                {
                    "username": "robot",
                    "password": kukeond.registry_password,
                    "serverAddress": "registry.invalid",
                }
            ]
        },
    }
    created = subprocess.run(
        [
            "curl", "-sS", "-m", "30", "--unix-socket", str(kukeond.socket),
            "-H", "Content-Type: application/json", "-w", "\\n%{http_code}",
            "--data-binary", "@-", "http://kukeond/apis/kukeon.io/v1beta1/realms",
        ],
        input=json.dumps(realm_document),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )  # fmt: skip
    assert created.stdout.endswith("\n201"), created.stdout + created.stderr


# --- etcd ---------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _etcd_pid(kukeond_pid: int) -> int:
    for pid in _children(kukeond_pid):
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "etcd":
                return pid
    raise AssertionError(f"no etcd child of kukeond (pid {kukeond_pid})")


ETCDCTL_LIMITS = ["--dial-timeout=3s", "--command-timeout=5s"]


def _etcd_intrusions(path: Path) -> list[tuple[str, list[str]]]:
    """What nobody tries on one socket: (what it must not get, the command)."""
    intrusion = f"/kukeon-intrusion-{secrets.token_hex(4)}"
    attempts: list[tuple[str, list[str]]] = []
    for scheme, tls in (
        ("unix", []),
        ("unixs", ["--insecure-transport=false", "--insecure-skip-tls-verify"]),
    ):
        endpoint = ["--endpoints", f"{scheme}://{path}", *ETCDCTL_LIMITS, *tls]
        attempts.append(("read", ["etcdctl", *endpoint, "get", "/", "--prefix", "--keys-only"]))
        attempts.append(("write", ["etcdctl", *endpoint, "put", intrusion, "x"]))
    # A raw HTTP range request (etcd's JSON gateway), plain and TLS without a certificate.
    everything = json.dumps(
        {"key": base64.b64encode(b"/").decode(), "range_end": base64.b64encode(b"0").decode()}
    )
    for scheme in ("http", "https"):
        attempts.append((
            "raw",
            [
                "curl", "-sk", "-m", "5", "--unix-socket", str(path), "-X", "POST",
                "-d", everything, f"{scheme}://localhost/v3/kv/range",
            ],
        ))  # fmt: skip
    return attempts


def _assert_etcd_refuses_nobody(sockets: list[Path]) -> None:
    """Every attempt on every socket at once: a refused etcdctl waits out its whole
    command timeout (5 s), so one after the other they took 40 s."""
    attempts = [attempt for path in sockets for attempt in _etcd_intrusions(path)]
    with ThreadPoolExecutor(max_workers=len(attempts)) as pool:
        results = list(pool.map(lambda attempt: as_nobody(*attempt[1]), attempts))
    for (what, command), result in zip(attempts, results, strict=True):
        if what == "raw":
            assert '"kvs"' not in result.stdout, result.stdout[:500]
            assert '"count"' not in result.stdout, result.stdout[:500]
            prefix = base64.b64encode(b"/kukeon").decode()[:8]
            assert prefix not in result.stdout, result.stdout[:500]
            continue
        assert result.returncode != 0, f"nobody could {what} etcd: {command}: {result.stdout}"
        assert "/kukeon" not in result.stdout, result.stdout[:500]


def _assert_etcd_serves_its_client(kukeond: LocalKukeond) -> None:
    """The control: root with the client certificate reads, and nobody's write is not there."""
    pki = EtcdPki(kukeond.config.state_dir / "etcd" / "pki")
    endpoint = [
        "--endpoints", f"unixs://{kukeond.config.state_dir / 'etcd' / 'client:0'}",
        *ETCDCTL_LIMITS,
        "--cacert", str(pki.ca_file), "--cert", str(pki.client_cert_file),
        "--key", str(pki.client_key_file),
    ]  # fmt: skip
    keys = subprocess.run(
        ["etcdctl", *endpoint, "get", "/", "--prefix", "--keys-only"],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert keys.returncode == 0, keys.stderr
    assert f"/kukeon/registry/realms/{kukeond.realm}" in keys.stdout, keys.stdout[:2000]
    assert "kukeon-intrusion" not in keys.stdout


# --- files --------------------------------------------------------------------------------


def _tree(root: Path) -> list[Path]:
    paths = [root]
    for directory, subdirectories, files in os.walk(root):
        paths += [Path(directory) / name for name in (*subdirectories, *files)]
    return paths


def _assert_modes(root: Path, *, exceptions: bool) -> list[Path]:
    """No directory grants others anything, no file either (but the documented ones)."""
    regular: list[Path] = []
    wide: list[str] = []
    for path in _tree(root):
        info = path.lstat()
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISDIR(info.st_mode):
            if mode & 0o007 or mode & 0o020:
                wide.append(f"{path} {mode:o}")
        elif stat.S_ISREG(info.st_mode):
            regular.append(path)
            allowed = exceptions and container_readable(path.relative_to(root))
            if mode & 0o002 or (mode & 0o004 and not allowed):
                wide.append(f"{path} {mode:o}")
            if path.suffix == ".log" and path.parent.name == "logs":
                # A terminal's log carries its mark besides (the sticky bit: no access).
                assert mode & ~TERMINAL_LOG_MARK == 0o640, f"{path} {mode:o}"
        elif stat.S_ISSOCK(info.st_mode):
            assert mode & 0o007 == 0, f"{path} {mode:o}"
        elif stat.S_ISFIFO(info.st_mode):  # exec's and a TTY's stdio: the session's own
            assert mode == 0o600, f"{path} {mode:o}"
    assert not wide, "\n".join(wide)
    return regular


def _assert_nobody_reads_nothing(paths: list[Path]) -> None:
    script = 'for f; do cat -- "$f" >/dev/null 2>&1 && echo "$f"; done; exit 0'
    # /etc/passwd is the control: the loop does read what nobody may read.
    read = as_nobody("sh", "-c", script, "sh", "/etc/passwd", *map(str, paths), timeout=120)
    assert read.stdout == "/etc/passwd\n", f"nobody could read:\n{read.stdout}"


@contextlib.contextmanager
def _exec_session(kukeond: LocalKukeond) -> Iterator[list[Path]]:
    """``kukectl exec -i`` into the talker cell, held open; yields its FIFOs once there."""
    session = subprocess.Popen(
        [str(BIN / "kukectl"), "exec", "-i", "talker", *kukeond.scope, "--", "sh", "-c", "cat"],
        env={**os.environ, "KUKEON_SERVER": f"unix://{kukeond.socket}"},
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        fifos: list[Path] = []
        while not fifos and time.monotonic() < deadline and session.poll() is None:
            time.sleep(0.2)
            fifos = [p for p in (kukeond.config.state_dir / "exec").glob("*/*") if p.is_fifo()]
        yield fifos
    finally:
        session.kill()
        session.wait(timeout=30)


# --- processes ----------------------------------------------------------------------------


def _key_material(pki_dir: Path) -> list[str]:
    """The base64 lines of every private key under etcd's pki directory."""
    lines: list[str] = []
    for path in pki_dir.rglob("*"):
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if "PRIVATE KEY" in text:
            lines += [line for line in text.splitlines() if len(line) >= 32 and "-" not in line]
    return lines


def _processes_of(kukeond: LocalKukeond) -> dict[int, str]:
    """kukeond's processes (kukeond, its etcd, the containers' loggers and a terminal's
    keeper: their command lines name its base directory) and its containers' (their
    environment names its realm), with their names."""
    found: dict[int, str] = {}
    realm = f"KUKEON_REALM={kukeond.realm}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            command_line = (entry / "cmdline").read_bytes()
            environment = (entry / "environ").read_bytes().split(b"\0")
            if str(kukeond.base).encode() in command_line or realm in environment:
                found[int(entry.name)] = (entry / "comm").read_text().strip()
    return found


def _with_shims(processes: dict[int, str]) -> dict[int, str]:
    """``processes`` and the containerd shims among their parents (the containers')."""
    found = dict(processes)
    for pid in processes:
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
            name = Path(f"/proc/{parent}/comm").read_text().strip()
            if name.startswith("containerd-shim"):
                found[parent] = name
    return found


def _assert_nobody_reads_no_process(kukeond: LocalKukeond) -> None:
    processes = _with_shims(_processes_of(kukeond))
    assert kukeond.process.pid in processes
    assert KEEPER_NAME in processes.values(), processes  # the console cell's terminal
    assert {"sh", "python"} <= set(processes.values()), processes  # containers, loggers
    assert any(name.startswith("containerd-shim") for name in processes.values()), processes
    # nobody's cat of its own environment and signal to its own shell are the controls:
    # the loop does read and signal what it may. ``kill -0`` asks whether a signal would
    # be delivered without sending one: the containers here run as root, so no signal of
    # nobody's reaches them, nor kukeond, its etcd, the loggers, the keeper or the shims.
    script = (
        "cat /proc/self/environ >/dev/null && echo control; "
        "kill -0 $$ && echo signal-control; "
        'for p; do cat "/proc/$p/environ" >/dev/null 2>&1 && echo "environ $p"; '
        'ls "/proc/$p/fd" >/dev/null 2>&1 && echo "fd $p"; '
        'kill -0 "$p" 2>/dev/null && echo "signal $p"; done; exit 0'
    )
    read = as_nobody("sh", "-c", script, "sh", *map(str, processes), timeout=120)
    assert read.stdout == "control\nsignal-control\n", (
        f"nobody could read or signal, of {processes}:\n{read.stdout}"
    )


def _command_lines() -> dict[int, str]:
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                found[int(entry.name)] = (
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
    return found


# --- the test -----------------------------------------------------------------------------


@pytest.mark.timeout(600)
def test_a_local_user_reaches_nothing_of_kukeond(local_kukeond: LocalKukeond) -> None:
    kukeond = local_kukeond
    _run_workloads(kukeond)
    state, run = kukeond.config.state_dir, kukeond.config.run_dir

    # etcd: no TCP listener; each socket refuses nobody, plain and with TLS but no certificate.
    etcd = _etcd_pid(kukeond.process.pid)
    assert tcp_listeners(etcd) == [], "etcd listens on TCP"
    sockets = [state / "etcd" / "client:0", state / "etcd" / "peer:0"]
    assert all(path.is_socket() for path in sockets), sockets
    _assert_etcd_refuses_nobody(sockets)
    _assert_etcd_serves_its_client(kukeond)

    # The API: the socket refuses nobody; the TCP listener wants a token.
    info = kukeond.socket.stat()
    assert stat.S_IMODE(info.st_mode) == 0o660
    run_info = run.stat()
    assert stat.S_IMODE(run_info.st_mode) == 0o750
    assert run_info.st_uid == 0
    assert run_info.st_gid == info.st_gid  # the socket's group (kukeon) reaches it
    refused = as_nobody(
        "curl", "-sS", "-m", "5", "--unix-socket", str(kukeond.socket), "http://kukeond/apis"
    )
    assert refused.returncode != 0, refused.stdout
    assert "Permission denied" in refused.stderr or "Couldn't connect" in refused.stderr, (
        refused.stderr
    )
    anonymous = as_nobody(
        "curl", "-sk", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}",
        f"https://127.0.0.1:{kukeond.api_port}/apis/kukeon.io/v1beta1/realms",
    )  # fmt: skip
    assert anonymous.stdout == "401", anonymous.stdout + anonymous.stderr

    # Files: modes, then what nobody can really open.
    assert stat.S_IMODE(state.stat().st_mode) == 0o750
    assert state.stat().st_uid == 0
    older = state / "images" / "older.tar"  # narrowed at start
    assert stat.S_IMODE(older.stat().st_mode) == 0o640
    assert stat.S_IMODE(older.parent.stat().st_mode) == 0o750
    logs = sorted(state.glob(f"cells/{kukeond.realm}/{SPACE}/{STACK}/*/logs/*.log"))
    assert {path.parent.parent.name for path in logs} == {"talker", "console"}, logs
    rotated = sorted(state.glob(f"cells/{kukeond.realm}/{SPACE}/{STACK}/talker/logs/*.log.*"))
    assert rotated, "the talker's log did not rotate"
    logs += rotated
    for log in rotated:
        assert stat.S_IMODE(log.stat().st_mode) == 0o640, f"{log} {log.stat().st_mode:o}"
    # An exec session open meanwhile, so its FIFOs (<state>/exec/<id>/std*) are looked at.
    with _exec_session(kukeond) as fifos:
        assert {path.name for path in fifos} >= {"stdin", "stdout", "stderr"}, fifos
        state_files = _assert_modes(state, exceptions=True)
    run_files = _assert_modes(run, exceptions=False)
    staged = [path for path in state_files if "secrets" in path.parts]
    assert staged, "no secret file was staged"
    _assert_nobody_reads_nothing(state_files + run_files)
    for log in logs:
        denied = as_nobody("cat", str(log))
        assert denied.returncode != 0
        assert "Permission denied" in denied.stderr, denied.stderr

    # kukeond's processes and the containers': their environment and descriptors are theirs.
    _assert_nobody_reads_no_process(kukeond)

    # The process list: no credential in any process's arguments.
    _create_realm_with_registry_password(kukeond)
    credentials = {
        "admin token": kukeond.admin_token,
        "fleet token": kukeond.fleet_token,
        "fromEnv secret": kukeond.env_secret,
        "fromFile secret": kukeond.file_secret,
        "registry password": kukeond.registry_password,
        "metrics token": read_metrics_token(state / "metrics-token"),
    }
    for number, line in enumerate(_key_material(state / "etcd" / "pki")):
        credentials[f"etcd key line {number}"] = line
    for pid, command_line in _command_lines().items():
        for what, value in credentials.items():
            assert value not in command_line, f"the {what} is in the arguments of pid {pid}"
        assert "PRIVATE KEY" not in command_line, f"a private key in pid {pid}'s arguments"

    # The metrics listener asks for the token kukeond generated in its state directory (no
    # metrics setting given, docs/metrics.md): nobody gets a 401 and no series. What it
    # says to the token's holder must name objects and states only, never a credential.
    assert kukeond.config.metrics_address.startswith("127.0.0.1:")
    url = f"http://{kukeond.config.metrics_address}/metrics"
    asked = as_nobody("curl", "-sS", "-m", "10", "-w", "\n%{http_code}", url)
    body, _, status = asked.stdout.rpartition("\n")
    assert status == "401", asked.stdout[-500:] + asked.stderr
    assert "kukeon_" not in body
    scraped = _scrape_metrics(url, credentials["metrics token"])
    assert "kukeon_cell_state" in scraped, scraped[:2000]
    for what, value in credentials.items():
        assert value not in scraped, f"the {what} is in /metrics"

    # What the TCP API answers without a token (health, readiness with its checks, the
    # version, the console's page) holds no credential either; the rest is a 401.
    for path, code in (
        ("/healthz", "200"), ("/readyz?verbose", "200"), ("/version", "200"), ("/ui/", "200"),
        ("/metrics", "401"), ("/ui/whoami", "401"),
    ):  # fmt: skip
        answer = as_nobody(
            "curl", "-sk", "-m", "10", "-w", "\n%{http_code}",
            f"https://127.0.0.1:{kukeond.api_port}{path}",
        )  # fmt: skip
        body, _, status = answer.stdout.rpartition("\n")
        assert status == code, f"{path}: {answer.stdout[-500:]} {answer.stderr}"
        for what, value in credentials.items():
            assert value not in body, f"the {what} is in the TCP API's {path}"


def _scrape_metrics(url: str, token: str) -> str:
    """``url`` read with the metrics token, from this process (a curl's arguments would show
    the token to every local user)."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        text: str = answer.read().decode()
    return text


def test_nobody_is_really_nobody() -> None:
    """The premise: ``runuser -u nobody`` drops root (else the test above proves nothing)."""
    require_root()
    require_binary("runuser", "util-linux")
    who = as_nobody("id", "-u")
    if who.returncode != 0:
        unavailable(f"runuser -u {NOBODY} does not work here: {who.stderr.strip()}")
    assert who.stdout.strip() != "0"
    assert as_nobody("cat", "/etc/shadow").returncode != 0
