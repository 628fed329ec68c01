"""kukectl end to end against a real API server on a real registry (etcd).

The server runs in a thread with its own event loop, because kukectl (run in-process by
click's CliRunner) starts its own loop with ``asyncio.run``. Parts that need running
containers (logs, exec, attach, run) are not covered here.
"""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from kukeon.api import Kind, RealmState
from kukeon.apiserver import ApiServerRunner, ApiSettings, serve_api
from kukeon.cli.main import cli
from kukeon.store import Registry
from tests.fixtures.etcd import EtcdServer

pytestmark = pytest.mark.e2e


class ThreadedApi:
    """An API server (and its registry) living on an event loop in a background thread."""

    def __init__(self, etcd: EtcdServer, prefix: str, **settings: Any) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.directory = Path(tempfile.mkdtemp(prefix="kukectl-e2e-"))
        self.socket = self.directory / "kukeond.sock"
        self.etcd = etcd
        self.prefix = prefix
        self.registry: Registry | None = None
        self.runner: ApiServerRunner | None = None

    def call(self, coro: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout=30)

    def start(self) -> None:
        self.thread.start()

        async def up() -> None:
            self.registry = await Registry.connect(self.etcd.config(key_prefix=self.prefix))
            self.runner = await serve_api(
                ApiSettings(socket_path=self.socket, socket_group=None, **self.settings),
                self.registry,
            )

        self.call(up())

    def stop(self) -> None:
        async def down() -> None:
            if self.runner is not None:
                await self.runner.stop()
            if self.registry is not None:
                await self.registry.client.delete_prefix(self.prefix.encode() + b"/")
                await self.registry.close()

        try:
            self.call(down())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()
            for path in self.directory.iterdir():
                path.unlink()
            self.directory.rmdir()


@pytest.fixture
def server(etcd_server: EtcdServer) -> Iterator[ThreadedApi]:
    api = ThreadedApi(etcd_server, f"/kukectl-test-{uuid.uuid4().hex[:12]}")
    api.start()
    try:
        yield api
    finally:
        api.stop()


@pytest.fixture
def kukectl(server: ThreadedApi, tmp_path: Path) -> Any:
    runner = CliRunner()
    config = tmp_path / "config.yaml"  # absent: no context configured

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(
            cli,
            ["--server", f"unix://{server.socket}", "--config", str(config), *args],
            input=input,
            catch_exceptions=False,
        )

    return invoke


HELLO = """\
apiVersion: v1beta1
kind: Cell
metadata:
  name: web
  labels: {app: hello}
spec:
  realmId: demo
  spaceId: net
  stackId: front
  containers:
    - id: httpd
      image: busybox:latest
      root: true
      command: httpd
      args: ["-f", "-p", "8080"]
---
apiVersion: kukeon.io/v1beta1
kind: Realm
metadata:
  name: demo
"""

REALM_R = "apiVersion: v1beta1\nkind: Realm\nmetadata: {name: r}\n"

AGE = re.compile(r"\b\d+s\b")


def _normalise(text: str) -> str:
    """Ages change from run to run; everything else of the table must not."""
    return AGE.sub("AGE", text)


def test_apply_creates_parents_first_then_reports_unchanged(kukectl: Any, tmp_path: Path) -> None:
    manifest = tmp_path / "hello.yaml"
    manifest.write_text(HELLO)
    first = kukectl("apply", "-f", str(manifest))
    assert first.exit_code == 0, first.output
    assert first.output.splitlines() == [
        "realm/demo created",
        "space/net created",
        "stack/front created",
        "cell/web created",
    ]
    again = kukectl("apply", "-f", str(manifest))
    assert again.exit_code == 0, again.output
    assert again.output.splitlines() == ["realm/demo unchanged", "cell/web unchanged"]

    changed = HELLO.replace("app: hello", "app: hello, tier: front")
    third = kukectl("apply", "-f", "-", input=changed)
    assert third.output.splitlines() == ["realm/demo unchanged", "cell/web configured"]


def test_get_tables(kukectl: Any, tmp_path: Path) -> None:
    (tmp_path / "hello.yaml").write_text(HELLO)
    assert kukectl("apply", "-f", str(tmp_path)).exit_code == 0
    table = kukectl("get", "cells", "--realm", "demo", "--space", "net", "--stack", "front")
    assert table.exit_code == 0, table.output
    assert _normalise(table.output) == (
        "NAME   STATE     READY   RESTARTS   AGE\nweb    Pending   0/1     0          AGE\n"
    )
    across = kukectl("get", "ce", "-A")
    assert _normalise(across.output) == (
        "REALM   SPACE   STACK   NAME   STATE     READY   RESTARTS   AGE\n"
        "demo    net     front   web    Pending   0/1     0          AGE\n"
    )
    realms = kukectl("get", "realm")
    assert _normalise(realms.output) == "NAME   STATE     AGE\ndemo   Pending   AGE\n"
    wide = kukectl("get", "realms", "-o", "wide")
    assert wide.output.splitlines()[0].split() == ["NAME", "STATE", "AGE", "NAMESPACE", "CGROUP"]
    names = kukectl("get", "stacks", "-A", "-o", "name")
    assert names.output == "stack/front\n"
    selected = kukectl("get", "cells", "-A", "-l", "app=nothing")
    assert selected.exit_code == 0
    assert selected.output.strip() == "No cells found anywhere."
    as_json = json.loads(kukectl("get", "space", "net", "--realm", "demo", "-o", "json").output)
    assert as_json["kind"] == "Space"
    assert as_json["spec"]["realmId"] == "demo"


def test_get_yaml_round_trips_through_apply(kukectl: Any, tmp_path: Path) -> None:
    (tmp_path / "hello.yaml").write_text(HELLO)
    assert kukectl("apply", "-f", str(tmp_path / "hello.yaml")).exit_code == 0
    dumped = kukectl("get", "cells", "-A", "-o", "yaml")
    assert dumped.exit_code == 0
    assert yaml.safe_load(dumped.output)["metadata"]["name"] == "web"
    reapplied = kukectl("apply", "-f", "-", input=dumped.output)
    assert reapplied.exit_code == 0, reapplied.output
    assert reapplied.output == "cell/web unchanged\n"
    everything = kukectl("get", "spaces", "-A", "-o", "yaml")
    assert kukectl("apply", "-f", "-", input=everything.output).output == "space/net unchanged\n"


def test_invalid_manifest_lists_every_field_and_writes_nothing(kukectl: Any) -> None:
    bad = """\
apiVersion: v1beta1
kind: Realm
metadata: {name: fine}
---
apiVersion: v1beta1
kind: Cell
metadata: {name: Bad_Name}
spec:
  containers:
    - id: a
    - id: a
      image: x
      bogus: true
---
kind: Space
metadata: {name: s}
"""
    result = kukectl("apply", "-f", "-", input=bad)
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert all(line.startswith("error: <stdin>: document ") for line in lines), lines
    text = result.output
    assert "document 1" in text
    assert "metadata.name" in text
    assert "spec.containers[0].image: required" in text
    assert "spec.containers[1].bogus: unknown field" in text
    assert "spec.containers[1].id" in text
    assert "document 2" in text
    assert "apiVersion" in text
    assert "Traceback" not in text
    listed = kukectl("get", "realms")
    assert "fine" not in listed.output  # nothing was written, not even the valid document


def test_a_refused_document_stops_the_whole_create(kukectl: Any, server: ThreadedApi) -> None:
    assert kukectl("apply", "-f", "-", input=REALM_R).exit_code == 0
    # create -f of a realm that exists: the server's dry run refuses it, so nothing is
    # written, not even the other document (every document is checked before any write)
    manifests = """\
apiVersion: v1beta1
kind: Realm
metadata: {name: r}
---
apiVersion: v1beta1
kind: Realm
metadata: {name: r2}
"""
    result = kukectl("create", "-f", "-", input=manifests)
    assert result.exit_code == 1
    assert "realm/r2 created" not in result.output
    assert re.search(r"error: realm/r: .*already exists", result.output)
    assert "nothing was written" in result.output
    assert "r2" not in kukectl("get", "realms").output


def test_a_servers_warning_is_said_once_written_or_refused(kukectl: Any) -> None:
    # apply's server dry run of every document, then its writes: each warned of once.
    line = HELLO.replace('command: httpd\n      args: ["-f", "-p", "8080"]', "command: httpd -f")
    written = kukectl("apply", "-f", "-", input=line)
    assert written.exit_code == 0, written.output
    warning = "Warning: spec.containers[0].command: 'httpd -f' is run as one program"
    assert written.stderr.count(warning) == 1, written.stderr
    # Refused (the cell's stack is missing in a realm that exists now, and another
    # document is refused): nothing written, the warning still said once.
    refused_line = line.replace("name: web", "name: web2").replace("stackId: front", "stackId: x")
    refused = kukectl("create", "-f", "-", input=refused_line)
    assert refused.exit_code == 1, refused.output
    assert "nothing was written" in refused.stderr
    assert refused.stderr.count(warning) == 1, refused.stderr


def test_dry_run_server_writes_nothing(kukectl: Any, tmp_path: Path) -> None:
    result = kukectl("apply", "--dry-run=server", "-f", "-", input=HELLO)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == "realm/demo created (server dry run)"
    assert "cell/web created (server dry run)" in result.output
    assert kukectl("get", "realms").output.strip() == "No realms found anywhere."


def test_describe(kukectl: Any) -> None:
    assert kukectl("apply", "-f", "-", input=HELLO).exit_code == 0
    page = kukectl(
        "describe", "cell", "web", "--realm", "demo", "--space", "net", "--stack", "front"
    )
    assert page.exit_code == 0, page.output
    text = page.output
    assert text.startswith("Name:")
    for fragment in (
        "Kind:",
        "Realm:",
        "demo",
        "Labels:",
        "app=hello",
        "Spec:",
        "httpd:",
        "image: busybox:latest",
        "Status:",
        "State:",
        "Pending",
        "Containers:",
    ):
        assert fragment in text, fragment


def test_delete_cascade_wait_and_errors(kukectl: Any) -> None:
    assert kukectl("apply", "-f", "-", input=HELLO).exit_code == 0
    refused = kukectl("delete", "realm", "demo")
    assert refused.exit_code == 1
    assert refused.output.startswith("error: realm/demo: ")
    assert "Traceback" not in refused.output
    dry = kukectl("delete", "realm", "demo", "--cascade", "--dry-run=server")
    assert dry.output == "realm/demo deleted (server dry run)\n"
    gone = kukectl("delete", "realm", "demo", "--cascade", "--wait", "--timeout", "20s")
    assert gone.exit_code == 0, gone.output
    assert gone.output == "realm/demo deleted\n"
    assert kukectl("get", "cells", "-A").output.strip() == "No cells found anywhere."
    missing = kukectl("delete", "cell", "nope")
    assert missing.exit_code == 1
    assert "not found" in missing.output
    assert kukectl("delete", "cell", "nope", "--ignore-not-found").exit_code == 0


def test_delete_from_file_children_first(kukectl: Any, tmp_path: Path) -> None:
    manifest = tmp_path / "hello.yaml"
    manifest.write_text(HELLO)
    assert kukectl("apply", "-f", str(manifest)).exit_code == 0
    result = kukectl("delete", "-f", str(manifest), "--cascade")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == ["cell/web deleted", "realm/demo deleted"]


def test_wait_for_state(kukectl: Any, server: ThreadedApi) -> None:
    assert kukectl("apply", "-f", "-", input=REALM_R).exit_code == 0
    timed_out = kukectl("wait", "realm/r", "--for=state=Ready", "--timeout=0.5s")
    assert timed_out.exit_code == 1
    assert "timed out" in timed_out.output
    assert "Pending" in timed_out.output

    async def mark_ready() -> None:
        assert server.registry is not None
        realm = await server.registry.get(Kind.REALM, ("r",))
        realm.status.state = RealmState.READY
        await server.registry.update_status(realm)

    server.call(mark_ready())
    met = kukectl("wait", "realm/r", "--for=state=Ready", "--timeout=5s")
    assert met.exit_code == 0, met.output
    assert met.output == "realm/r condition met\n"
    bad = kukectl("wait", "realm/r", "--for=color=blue")
    assert bad.exit_code == 2


def test_wait_for_every_object_or_a_selection(kukectl: Any, server: ThreadedApi) -> None:
    """kubectl's `wait --all` and `-l`: the objects listed once, each waited for."""
    for name, tier in (("a", "web"), ("b", "web"), ("c", "db")):
        realm = f"apiVersion: v1beta1\nkind: Realm\nmetadata:\n  name: {name}\n"
        realm += f"  labels:\n    tier: {tier}\n"
        assert kukectl("apply", "-f", "-", input=realm).exit_code == 0

    async def mark_ready(names: tuple[str, ...]) -> None:
        assert server.registry is not None
        for name in names:
            realm = await server.registry.get(Kind.REALM, (name,))
            realm.status.state = RealmState.READY
            await server.registry.update_status(realm)

    server.call(mark_ready(("a", "b")))
    web = kukectl("wait", "realms", "-l", "tier=web", "--for=state=Ready", "--timeout=5s")
    assert web.exit_code == 0, web.output
    assert web.output == "realm/a condition met\nrealm/b condition met\n"
    every = kukectl("wait", "realms", "--all", "--for=state=Ready", "--timeout=0.5s")
    assert every.exit_code == 1
    assert "realm/c to be Ready" in every.output
    none = kukectl("wait", "realms", "-l", "tier=cache", "--for=state=Ready")
    assert none.exit_code == 1
    assert "no matching objects found" in none.output
    # as kubectl's: for delete, nothing matching is nothing left to wait for
    none = kukectl("wait", "realms", "-l", "tier=cache", "--for=delete")
    assert (none.exit_code, none.output) == (0, "")


def test_watch_prints_changes(kukectl: Any) -> None:
    assert kukectl("apply", "-f", "-", input=REALM_R).exit_code == 0
    watched = kukectl("get", "realms", "-w", "--watch-timeout", "1s", "-o", "name")
    assert watched.exit_code == 0, watched.output
    assert watched.output == "realm/r\n"


def test_version_usage_errors_and_unreachable(kukectl: Any, tmp_path: Path) -> None:
    version = kukectl("version")
    assert version.exit_code == 0
    assert version.output.startswith("Client Version: ")
    assert "Server Version: " in version.output
    assert kukectl("get", "pods").exit_code == 2
    assert kukectl("get").exit_code == 2
    assert kukectl("apply").exit_code == 2
    assert kukectl("apply", "-f", str(tmp_path / "missing.yaml")).exit_code == 2
    runner = CliRunner()
    nowhere = runner.invoke(
        cli,
        [
            "--server",
            f"unix://{tmp_path}/none.sock",
            "--config",
            str(tmp_path / "c"),
            "get",
            "realms",
        ],
    )
    assert nowhere.exit_code == 1
    assert nowhere.output.startswith("error: cannot reach the kukeon API")
    plain = runner.invoke(cli, ["--server", "http://127.0.0.1:1", "get", "realms"])
    assert plain.exit_code == 2
    assert "https" in plain.output
    for shell in ("bash", "zsh", "fish"):
        script = runner.invoke(cli, ["completion", shell])
        assert script.exit_code == 0
        assert "_KUKECTL_COMPLETE" in script.output


def test_contexts_from_config(server: ThreadedApi, tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "currentContext": "here",
                "contexts": [
                    {"name": "here", "server": f"unix://{server.socket}"},
                    {"name": "elsewhere", "server": f"unix://{tmp_path}/absent.sock"},
                ],
            }
        )
    )
    runner = CliRunner()
    assert runner.invoke(cli, ["--config", str(config), "get", "realms"]).exit_code == 0
    other = runner.invoke(cli, ["--config", str(config), "--context", "elsewhere", "get", "realms"])
    assert other.exit_code == 1
    unknown = runner.invoke(cli, ["--config", str(config), "--context", "nope", "get", "realms"])
    assert unknown.exit_code == 2
    assert "context 'nope' not found" in unknown.output


def test_sync_client(server: ThreadedApi) -> None:
    from kukeon.api import parse_resource
    from kukeon.client.apiclient import ApiRequestError, SyncApiClient

    with SyncApiClient(server=f"unix://{server.socket}") as client:
        realm = parse_resource(
            {"apiVersion": "v1beta1", "kind": "Realm", "metadata": {"name": "s"}}
        )
        created = client.create(realm)
        assert created.metadata.uid
        patched = client.patch(Kind.REALM, ("s",), {"metadata": {"labels": {"a": "b"}}})
        assert patched.metadata.labels == {"a": "b"}
        assert [r.metadata.name for r in client.list(Kind.REALM).items] == ["s"]
        assert client.version()["gitVersion"]
        assert client.delete(Kind.REALM, ("s",)) is None
        with pytest.raises(ApiRequestError) as missing:
            client.get(Kind.REALM, ("s",))
        assert missing.value.code == 404


def test_kukectl_over_https_with_token(etcd_server: EtcdServer, tmp_path: Path) -> None:
    import subprocess

    from tests.fixtures.services import free_tcp_port, require_binary

    require_binary("openssl", "openssl")
    pki = tmp_path / "pki"
    subprocess.run(
        [
            "bash",
            str(Path(__file__).resolve().parents[2] / "hack/make-ca.sh"),
            "--out",
            str(pki),
            "--quiet",
            "--hosts",
            "127.0.0.1,localhost",
        ],
        check=True,
    )
    token = uuid.uuid4().hex
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(f"tokens:\n  - token: {token}\n    user: ops\n    role: admin\n")
    port = free_tcp_port()
    api = ThreadedApi(
        etcd_server,
        f"/kukectl-tls-{uuid.uuid4().hex[:12]}",
        tcp_address=f"127.0.0.1:{port}",
        tls_cert_file=pki / "server.crt",
        tls_key_file=pki / "server.key",
        tokens_file=tokens,
    )
    api.start()
    try:
        config = tmp_path / "config.yaml"
        runner = CliRunner()

        def kukectl(*args: str, stdin: str | None = None) -> Result:
            return runner.invoke(cli, ["--config", str(config), *args], input=stdin)

        assert (
            kukectl(
                "config",
                "set-context",
                "remote",
                "--server",
                f"https://127.0.0.1:{port}",
                "--token",
                token,
                "--certificate-authority",
                str(pki / "ca.crt"),
            ).exit_code
            == 0
        )
        applied = kukectl("apply", "-f", "-", stdin=REALM_R)
        assert applied.exit_code == 0, applied.output
        assert applied.output == "realm/r created\n"
        assert kukectl("get", "realms", "-o", "name").output == "realm/r\n"
        wrong = kukectl("--token", "not-the-token", "get", "realms")
        assert wrong.exit_code == 1
        assert "Unauthorized" in wrong.output
        untrusted = runner.invoke(
            cli,
            [
                "--server",
                f"https://127.0.0.1:{port}",
                "--token",
                token,
                "--config",
                str(tmp_path / "none.yaml"),
                "get",
                "realms",
            ],
        )
        assert untrusted.exit_code == 1
        assert "certificate" in untrusted.output.lower()
    finally:
        api.stop()
