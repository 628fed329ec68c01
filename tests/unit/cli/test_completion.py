"""Shell completion on the skeleton tree, against a fake server on a unix socket.

The e2e test (tests/e2e/test_kukectl_completion.py) runs the real kukectl against a real
kukeond; these cover every completer, the connection rules, budgets and the cache.
"""

from __future__ import annotations

import http.server
import json
import os
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kukeon.cli import completion
from kukeon.cli.completion import (
    COMPLETE_VAR,
    Connection,
    cache_path,
    describe,
    load_description,
    skeleton,
)
from kukeon.cli.config import resolve_connection
from kukeon.cli.configfile import KukectlConfig
from kukeon.cli.main import cli, main

ROOT = "/apis/kukeon.io/v1beta1"
SERVER_POLL_SECONDS = 0.05


def listing(*names: str) -> dict[str, Any]:
    return {"items": [{"metadata": {"name": n}} for n in names], "metadata": {}}


ANSWERS: dict[str, Any] = {
    f"{ROOT}/realms": listing("default", "prod"),
    f"{ROOT}/realms/default/spaces": listing("default", "web"),
    f"{ROOT}/realms/prod/spaces": listing("shop"),
    f"{ROOT}/realms/prod/spaces/shop/stacks": listing("front", "back"),
    f"{ROOT}/realms/default/spaces/default/stacks/default/cells": listing("web", "api"),
    f"{ROOT}/realms/prod/spaces/shop/stacks/front/cells": listing("cart"),
    f"{ROOT}/cells": listing("web", "api", "cart", "web"),
    f"{ROOT}/realms/default/spaces/default/stacks/default/cells/web": {
        "spec": {"containers": [{"id": "main"}, {"id": "sidecar"}]}
    },
    f"{ROOT}/nodes": listing("n1", "n2"),
    f"{ROOT}/realms/prod/spaces/-/stacks/-/secrets": listing("db-password"),
}


class FakeServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: str) -> None:
        self.seen: list[tuple[str, str | None]] = []
        self.delay = 0.0
        super().__init__(path, Handler)


class Handler(http.server.BaseHTTPRequestHandler):
    server: FakeServer

    def address_string(self) -> str:  # a unix socket has no peer address
        return "local"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        if self.server.delay:
            time.sleep(self.server.delay)
        answer = ANSWERS.get(self.path)
        body = json.dumps(answer if answer is not None else {"kind": "Status"}).encode()
        try:
            self.send_response(200 if answer is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except BrokenPipeError:  # the client gave up: its budget was spent
            pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FakeServer]:
    fake = FakeServer(str(tmp_path / "k.sock"))
    # shutdown() waits for serve_forever's next poll (every 0.5 s by default).
    thread = threading.Thread(target=fake.serve_forever, args=(SERVER_POLL_SECONDS,), daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.shutdown()
        fake.server_close()


@pytest.fixture(autouse=True)
def environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: FakeServer) -> None:
    for name in ("KUKEON_TOKEN", "KUKEON_CA", "KUKEON_CONTEXT", COMPLETE_VAR):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KUKEON_SERVER", f"unix://{tmp_path / 'k.sock'}")
    monkeypatch.setenv("KUKEON_CONFIG", str(tmp_path / "config.yaml"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(completion, "shipped_path", lambda: tmp_path / "shipped" / "d.json")


def complete(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    line: str,
    shell: str = "bash",
) -> list[str]:
    """What `kukectl` answers for a TAB at the end of ``line`` (values only)."""
    words = line.split()
    current = len(words) if line.endswith(" ") else len(words) - 1
    monkeypatch.setenv("COMP_WORDS", line)
    monkeypatch.setenv("COMP_CWORD", str(current))
    code = completion.complete(f"{shell}_complete")
    assert code == 0
    out = capsys.readouterr().out
    return [entry.partition(",")[2] for entry in out.splitlines() if entry]


Complete = Any


@pytest.fixture
def tab(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Complete:
    return lambda line: complete(monkeypatch, capsys, line)


def test_verbs_and_flags_still_complete(tab: Complete) -> None:
    assert "describe" in tab("kukectl des")
    assert tab("kukectl get --re") == ["--realm"]
    assert "--container" in tab("kukectl logs web --con")


def test_kinds_and_names(tab: Complete, server: FakeServer) -> None:
    assert tab("kukectl get ") == [
        "realms",
        "spaces",
        "stacks",
        "cells",
        "nodes",
        "secrets",
        "cellprofiles",
        "cellsets",
    ]
    assert tab("kukectl get cells ") == ["api", "web"]
    assert tab("kukectl get ce w") == ["web"]
    assert tab("kukectl get cells web ") == ["api"]  # a name given is not offered again
    assert tab("kukectl describe cell ") == ["api", "web"]
    assert tab("kukectl delete cells a") == ["api"]
    assert tab("kukectl label cells ") == ["api", "web"]
    assert tab("kukectl edit cell ") == ["api", "web"]
    assert tab("kukectl patch cell w") == ["web"]
    assert tab("kukectl get cell/") == ["cell/api", "cell/web"]
    assert tab("kukectl get cell/w") == ["cell/web"]
    assert tab("kukectl delete cell/") == ["cell/api", "cell/web"]  # kubectl's KIND/NAME
    assert tab("kukectl label cell/w") == ["cell/web"]
    assert tab("kukectl get nodes ") == ["n1", "n2"]
    assert tab("kukectl get realms ") == ["default", "prod"]
    assert tab("kukectl get bogus ") == []


def test_names_respect_the_scope_typed(tab: Complete) -> None:
    assert tab("kukectl get cells --realm prod --space shop --stack front ") == ["cart"]
    assert tab("kukectl get stacks --realm prod --space shop ") == ["back", "front"]
    assert tab("kukectl get cells -A ") == ["api", "cart", "web"]
    # A Secret belongs to its realm unless --space narrows it.
    assert tab("kukectl get secrets --realm prod ") == ["db-password"]


def test_names_come_from_the_contexts_scope(tab: Complete, tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        "currentContext: team\ncontexts:\n"
        "  - {name: team, realm: prod, space: shop, stack: front}\n"
    )
    assert tab("kukectl get cells ") == ["cart"]
    assert tab("kukectl get stacks ") == ["back", "front"]
    assert tab("kukectl get secrets ") == []  # narrowed to the context's space, as typed
    # another realm typed: the context's space and stack are not of it
    assert tab("kukectl get cells --realm default ") == ["api", "web"]


def test_scope_option_values(tab: Complete) -> None:
    assert tab("kukectl get cells --realm ") == ["default", "prod"]
    assert tab("kukectl get cells --realm p") == ["prod"]
    assert tab("kukectl get cells --realm=p") == ["prod"]
    assert tab("kukectl get cells --realm prod --space ") == ["shop"]
    assert tab("kukectl get cells --space ") == ["default", "web"]
    assert tab("kukectl get cells --realm prod --space shop --stack ") == ["back", "front"]


def test_cell_commands_and_containers(tab: Complete) -> None:
    for verb in ("logs", "exec", "attach", "start", "stop", "restart", "kill"):
        assert tab(f"kukectl {verb} ") == ["api", "web"], verb
    assert tab("kukectl top cells ") == ["api", "web"]
    assert tab("kukectl logs web -c ") == ["main", "sidecar"]
    assert tab("kukectl exec web --container s") == ["sidecar"]
    assert tab("kukectl kill web -c ") == ["main", "sidecar"]
    assert tab("kukectl logs cell/web -c ") == ["main", "sidecar"]
    assert tab("kukectl kill cell web -c ") == ["main", "sidecar"]
    assert tab("kukectl logs missing -c ") == []
    assert tab("kukectl wait ") == ["cell/api", "cell/web"]
    assert tab("kukectl wait realm/") == ["realm/default", "realm/prod"]
    assert tab("kukectl logs cell/w") == ["cell/web"]
    assert tab("kukectl port-forward cell/") == ["cell/api", "cell/web"]


def test_nodes_and_contexts(tab: Complete, tmp_path: Path) -> None:
    for verb in ("cordon", "uncordon", "drain"):
        assert tab(f"kukectl {verb} ") == ["n1", "n2"], verb
    assert tab("kukectl top nodes ") == ["n1", "n2"]
    (tmp_path / "config.yaml").write_text(
        "contexts:\n  - {name: local, server: unix:///x.sock}\n  - {name: lab}\n"
    )
    assert tab("kukectl --context ") == ["local", "lab"]
    assert tab("kukectl config use-context l") == ["local", "lab"]


def test_explain_paths_come_from_the_schema(tab: Complete, server: FakeServer) -> None:
    assert tab("kukectl explain ") == [
        "realms",
        "spaces",
        "stacks",
        "cells",
        "nodes",
        "secrets",
        "cellprofiles",
        "cellsets",
    ]
    assert tab("kukectl explain cell.sp") == ["cell.spec"]
    assert "cells.spec.containers" in tab("kukectl explain cells.spec.")
    assert "ce.spec.containers.restartPolicy" in tab("kukectl explain ce.spec.containers.re")
    assert tab("kukectl explain cell.metadata.la") == ["cell.metadata.labels"]
    assert tab("kukectl explain cell.nope.") == []
    assert server.seen == []  # no server needed


def test_connection_comes_from_the_command_line_and_the_context(
    tab: Complete, server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = f"unix://{tmp_path / 'k.sock'}"
    monkeypatch.setenv("KUKEON_SERVER", f"unix://{tmp_path / 'nothing.sock'}")
    assert tab("kukectl get cells ") == []
    assert tab(f"kukectl --server {good} get cells ") == ["api", "web"]
    monkeypatch.delenv("KUKEON_SERVER")
    (tmp_path / "token").write_text("s3cret\n")
    (tmp_path / "other.yaml").write_text(
        f"currentContext: lab\ncontexts:\n  - name: lab\n    server: {good}\n"
        f"    tokenFile: {tmp_path / 'token'}\n"
    )
    server.seen.clear()
    assert tab(f"kukectl --config {tmp_path / 'other.yaml'} cordon ") == ["n1", "n2"]
    assert server.seen == [(f"{ROOT}/nodes", "Bearer s3cret")]
    assert tab(f"kukectl --config {tmp_path / 'other.yaml'} --context nope cordon ") == []


def test_unreachable_or_slow_server_completes_nothing_quickly(
    tab: Complete, server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Bounds far from the timeouts in play, so a loaded machine cannot fail them: what is
    # checked is that nothing waits for a timeout (or for the slow server), not a speed.
    monkeypatch.setenv(completion.TIMEOUT_VAR, "20")
    monkeypatch.setenv("KUKEON_SERVER", "unix:///nonexistent/kukeond.sock")
    started = time.monotonic()
    assert tab("kukectl get cells ") == []
    assert time.monotonic() - started < 10.0  # refused at once, not after the 20 s timeout
    monkeypatch.setenv("KUKEON_SERVER", "https://127.0.0.1:1")
    assert tab("kukectl logs ") == []
    monkeypatch.setenv("KUKEON_SERVER", f"unix://{tmp_path / 'k.sock'}")
    monkeypatch.setenv(completion.TIMEOUT_VAR, "0.3")
    server.delay = 30.0
    started = time.monotonic()
    assert tab("kukectl get cells ") == []
    assert time.monotonic() - started < 15.0  # gave up at its 0.3 s, not after the 30 s


def test_other_shells(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COMP_WORDS", "kukectl logs web -c ")
    monkeypatch.setenv("COMP_CWORD", "4")
    assert completion.complete("zsh_complete") == 0
    answer = capsys.readouterr().out.splitlines()
    assert answer == ["plain", "main", "_", "plain", "sidecar", "_"]
    monkeypatch.setenv("COMP_WORDS", "kukectl get cells w")
    monkeypatch.setenv("COMP_CWORD", "w")
    assert completion.complete("fish_complete") == 0
    assert capsys.readouterr().out.strip() == "plain,web"


def strip_completers(node: dict[str, Any]) -> dict[str, Any]:
    for spec in node["params"]:
        spec.pop("completer")
        spec.pop("type")
    for sub in node.get("commands", {}).values():
        strip_completers(sub)
    return node


def test_the_skeleton_parses_like_the_real_tree() -> None:
    description = load_description()
    completers = completion.Completers(description, 1.0)
    rebuilt = skeleton(description["tree"], completers, "kukectl")
    assert strip_completers(describe(rebuilt)) == strip_completers(describe(cli))


def test_the_cache_is_written_reused_and_refreshed(tmp_path: Path) -> None:
    path = cache_path()
    assert path.parent == tmp_path / "cache" / "kukeon"
    assert path.name.startswith("kukectl-completion-")
    first = load_description()
    assert json.loads(path.read_text()) == first
    marked = {**first, "defaultServer": "unix:///marked.sock"}
    path.write_text(json.dumps(marked))
    assert load_description()["defaultServer"] == "unix:///marked.sock"  # reused
    path.write_text(json.dumps({**marked, "key": "stale"}))
    assert load_description()["defaultServer"] == first["defaultServer"]  # rebuilt
    path.write_text("not json")
    assert load_description() == first


def test_a_planted_temporary_file_is_not_written_through(tmp_path: Path) -> None:
    """The cache went through ``NAME.<pid>.tmp`` opened without O_EXCL and then chmod-ed
    0644: a link planted there (the cache directory of a user who runs ``sudo kukectl``
    with their HOME) had root write the description where it pointed and make that
    file world-readable."""
    path = cache_path()
    path.parent.mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("secret\n")
    victim.chmod(0o600)
    path.with_name(f"{path.name}.{os.getpid()}.tmp").symlink_to(victim)
    assert load_description()["key"] == json.loads(path.read_text())["key"]
    assert victim.read_text() == "secret\n"
    assert victim.stat().st_mode & 0o777 == 0o600
    assert path.stat().st_mode & 0o777 == 0o644  # every user of the installation reads it


def test_a_users_first_tab_reads_the_installations_description(tmp_path: Path) -> None:
    """The installer writes the description beside the package: a user without a cache
    (the first TAB after an upgrade) reads it and keeps a copy, instead of importing every
    command; one written for other sources is not used."""
    written = completion.prebuild()
    assert written == tmp_path / "shipped" / "d.json"
    assert written.stat().st_mode & 0o777 == 0o644
    marked = {**json.loads(written.read_text()), "defaultServer": "unix:///shipped.sock"}
    written.write_text(json.dumps(marked))
    assert load_description()["defaultServer"] == "unix:///shipped.sock"
    assert json.loads(cache_path().read_text()) == marked
    cache_path().unlink()
    written.write_text(json.dumps({**marked, "key": "of another installation"}))
    assert load_description()["defaultServer"] != "unix:///shipped.sock"


@pytest.mark.parametrize(
    ("flags", "environ"),
    [
        ({}, {}),
        ({}, {"KUKEON_CONTEXT": "local"}),
        ({"context": "local"}, {"KUKEON_SERVER": "unix:///env.sock"}),
        ({"server": "unix:///flag.sock", "token": "t"}, {"KUKEON_TOKEN": "env"}),
        ({}, {"KUKEON_CA": "/env/ca.crt", "KUKEON_TOKEN": "env"}),
        ({"ca_file": Path("/flag/ca.crt")}, {"KUKEON_CA": "/env/ca.crt"}),
    ],
)
def test_connection_agrees_with_kukectl(
    tmp_path: Path, flags: dict[str, Any], environ: dict[str, str]
) -> None:
    config = tmp_path / "config.yaml"
    (tmp_path / "token").write_text("file-token\n")
    config.write_text(
        "currentContext: prod\ncontexts:\n"
        "  - {name: local, server: 'unix:///tmp/k.sock', tokenFile: '%s'}\n"
        "  - {name: prod, server: 'https://10.0.0.5:6443', token: ctx,"
        " certificateAuthority: /etc/ca.crt}\n" % (tmp_path / "token")
    )
    import yaml

    expected = resolve_connection(
        config=KukectlConfig.model_validate(yaml.safe_load(config.read_text())),
        environ=environ,
        **flags,
    )
    light = Connection({**flags, "config_path": config}, "unix:///default.sock", environ)
    assert light.server == expected.server
    assert light.token == expected.token
    assert light.ca_file == (str(expected.ca_file) if expected.ca_file else None)


def test_entry_point_keeps_completion_off_the_heavy_imports(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.argv = ['kukectl']\n"
        "from kukeon.cli.entry import main\n"
        "try:\n    main()\n"
        "except SystemExit:\n    pass\n"
        "heavy = [m for m in ('pydantic', 'aiohttp', 'rich', 'kukeon.cli.main') "
        "if m in sys.modules]\n"
        "print('HEAVY', heavy, file=sys.stderr)\n"
    )
    env = {
        **os.environ,
        COMPLETE_VAR: "bash_complete",
        "COMP_WORDS": "kukectl get cells ",
        "COMP_CWORD": "3",
    }
    # The first run builds the cache; a later one must not import the commands. A source file
    # changed while the run before it built the cache (a busy worktree) makes a run build it
    # again under a new key: only a run that left the key it found in the cache tells.
    cache = cache_path(env)
    keys: list[object] = []
    runs: list[subprocess.CompletedProcess[str]] = []
    while len(keys) < 2 or keys[-1] != keys[-2]:
        assert len(runs) < 5, f"the sources changed during every run: keys {keys}"
        runs.append(
            subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
            )
        )
        keys.append(json.loads(cache.read_text())["key"])
    second = runs[-1]
    assert "plain,api\nplain,web" in second.stdout
    assert "HEAVY []" in second.stderr


def test_broken_instruction_is_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    assert completion.complete("nosuchshell_complete") == 1
    assert capsys.readouterr().out == ""


def test_a_missing_shell_is_one_readable_line(capsys: pytest.CaptureFixture[str]) -> None:
    """Click's list of choices came out as 'Choose from:' and lines with '\\x09' in them."""
    with pytest.raises(SystemExit) as exit_:
        main(["completion"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err == (
        "error: Missing argument '{bash|zsh|fish}'. Choose from: bash, zsh, fish "
        "(see 'kukectl completion --help')\n"
    )
