"""Every `kukectl` example in README.md and docs/*.md runs, so the docs cannot drift.

A fenced block is an example unless its info string is `text` (a synopsis: placeholders
and alternatives, not a command). In an example block each `kukectl` line runs, in order,
against one test kukeond per document, from a directory holding what the examples name
(`busybox.tar`, `examples/`, `ca.pem`, `junk.tar`), with the objects they talk about
created first (`_WORLD`). In a console block (`$ kukectl ...` followed by its output) an
output starting with `error:` means the command must fail; otherwise it must succeed, or
exit with the code its comment names (`# ... exits 3`). A command that follows (`-f`, `-w`)
or serves (`ui`) runs for a few seconds; one that needs a terminal (`attach`, `exec -it`)
runs under a pseudo-terminal, typing what its block shows after the prompt, else detaching
or exiting.

A block that cannot run here says so in the line before its fence:
`<!-- docs-test: skip: REASON -->`, REASON naming the test that runs it instead.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from kukeon.api import Kind, Realm
from tests.fixtures.containerd import MAKE_TEST_IMAGE, clean_namespace
from tests.fixtures.kukectl import KUKECTL
from tests.fixtures.kukeond import Kukeond
from tests.integration.controllers.helpers import cell_doc, cell_key, container

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.S | re.M)
_SKIP = re.compile(r"<!-- docs-test: skip: (.+?) -->\s*$")
_EXIT = re.compile(r"#.*\bexits? (\d+)")
FOLLOW_SECONDS = 4


@dataclass
class Example:
    doc: str
    line: int
    command: str
    expect: int | None  # an exit code; None: any failure
    output: list[str]

    @property
    def follows(self) -> bool:
        words = self.command.split()
        serves = words[1] == "ui"  # the console's port-forward runs until interrupted
        return (
            serves or ("-f" in words and words[1] == "logs") or "-w" in words or "--watch" in words
        )

    @property
    def interactive(self) -> bool:
        words = self.command.split()
        return words[1] == "attach" or (words[1] == "exec" and "-it" in words)


def examples_of(doc: Path) -> tuple[list[Example], list[tuple[int, str]]]:
    """The runnable `kukectl` lines of a document, and its skipped blocks (line, reason)."""
    text = doc.read_text()
    found: list[Example] = []
    skipped: list[tuple[int, str]] = []
    for block in _FENCE.finditer(text):
        info, body = block.group(1), block.group(2)
        first = text.count("\n", 0, block.start()) + 1
        before = text[: block.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if info == "text" or "kukectl" not in body:
            continue
        if reason := _SKIP.search(before):
            skipped.append((first, reason.group(1)))
            continue
        lines = body.splitlines()
        console = any(line.startswith("$ ") for line in lines)
        for index, line in enumerate(lines):
            command = line[2:] if console and line.startswith("$ ") else line
            if not command.startswith("kukectl ") or (console and not line.startswith("$ ")):
                continue
            output: list[str] = []
            for after in lines[index + 1 :]:
                if not console or after.startswith("$ "):
                    break
                output.append(after)
            code = _EXIT.search(command)
            if code:
                expect: int | None = int(code.group(1))
            elif output and output[0].startswith("error:"):
                expect = None
            else:
                expect = 0
            found.append(Example(doc.name, first + 1 + index, command, expect, output))
    return found, skipped


def test_every_block_with_kukectl_is_run_or_says_why_not() -> None:
    for doc in DOCS:
        runnable, skipped = examples_of(doc)
        for line, reason in skipped:
            assert "test" in reason, f"{doc.name}:{line}: skip without the test that runs it"
        for example in runnable:
            words = example.command.split(" #")[0].split()
            placeholders = [w for w in words if re.fullmatch(r"[A-Z][A-Z_]+(\.\.\.)?", w)]
            where = f"{doc.name}:{example.line}: {example.command!r} is a synopsis"
            assert "|" not in words[1], f"{where}: put it in a ```text block"
            assert not placeholders, f"{where}: put it in a ```text block"


# --- the world each document's examples talk about -----------------------------------


async def _default_hierarchy(k: Kukeond) -> None:
    realm_of_test = k.realm
    k.realm = "default"
    try:
        await k.hierarchy(space="default", stack="default")
    finally:
        k.realm = realm_of_test


async def _readme(k: Kukeond, workdir: Path) -> None:
    await _default_hierarchy(k)
    shutil.copy(k.image.archive, workdir / "busybox.tar")
    (workdir / "examples").symlink_to(REPO / "examples")


async def _kukectl_md(k: Kukeond, workdir: Path) -> None:
    await _default_hierarchy(k)
    # the realm of the examples, with cells in it
    k.realm = "prod"
    await k.hierarchy(space="edge", stack="web")
    for name in ("api", "batch-job"):
        await k.apply(cell_doc(k, name, [container(k, "a")], space="edge", stack="web"))
    await k.wait_for(Kind.CELL, cell_key(k, "api", space="edge", stack="web"), state="Ready")
    # `image rm busybox` refused: a cell of realm default names docker.io/library/busybox
    k.realm = "default"
    official = workdir / "official.tar"
    process = await asyncio.create_subprocess_exec(
        str(MAKE_TEST_IMAGE), str(official), "docker.io/library/busybox:latest"
    )
    assert await process.wait() == 0
    controllers = k.daemon.controllers
    assert controllers is not None
    await controllers.images.import_archive(namespace=k.namespace, path=official)
    web = container(k, "a")
    web["image"] = "docker.io/library/busybox:latest"
    await k.apply(cell_doc(k, "web", [web], space="default", stack="default"))
    box = {**container(k, "sh", script="exec sh"), "attachable": True}
    await k.apply(cell_doc(k, "box", [box], space="default", stack="default"))
    await k.wait_for(Kind.CELL, cell_key(k, "box", space="default", stack="default"), state="Ready")
    (workdir / "junk.tar").write_bytes(b"not an archive\n" * 10)
    (workdir / "ca.pem").write_text(
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    )


_WORLD: dict[str, Callable[[Kukeond, Path], Awaitable[None]]] = {
    "README.md": _readme,
    "kukectl.md": _kukectl_md,
}


# --- running them -----------------------------------------------------------------------


def _typed(example: Example) -> bytes:
    """What to type into an interactive example: what its block shows after a prompt,
    then detach (attach) or exit (exec)."""
    typed = [line.split("# ", 1)[1] for line in example.output if re.match(r"^\S*# \S", line)]
    typed = [line for line in typed if not line.startswith("^]")]
    ending = b"\x1d\x1d" if example.command.split()[1] == "attach" else b"exit\n"
    return "".join(f"{line}\n" for line in typed).encode() + ending


async def _run(example: Example, k: Kukeond, workdir: Path) -> tuple[int, str]:
    env = {
        **os.environ,
        "KUKEON_SERVER": f"unix://{k.config.api_socket}",
        "PATH": f"{Path(KUKECTL).parent}:{os.environ['PATH']}",
        "TERM": "dumb",
    }
    script = f"set -o pipefail; {example.command}"
    argv = ["bash", "-c", script]
    stdin = b""
    if example.interactive:
        argv = ["script", "-qefc", example.command, "/dev/null"]
        stdin = _typed(example)
    elif example.follows:
        argv = ["timeout", str(FOLLOW_SECONDS), "bash", "-c", script]
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=workdir,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    if example.interactive:
        assert process.stdin is not None
        assert process.stdout is not None
        # Typed once kukectl shows it is attached (its first output: the attach notice, the
        # shell's prompt), not after a fixed wait: typed earlier, the terminal is still in
        # line mode and holds the detach keys (no newline) until kukectl reads it, which at
        # load 20-30 took over the 2 s once waited (stop 46's CI: no detach, no exit).
        first = await asyncio.wait_for(process.stdout.read(1), 60)
        try:
            for byte in stdin:
                process.stdin.write(bytes([byte]))
                await process.stdin.drain()
                await asyncio.sleep(0.02)
            await asyncio.sleep(1)
            process.stdin.close()
        except ConnectionResetError:
            pass  # it ended before all was typed: its output and code say why
        out = first + await asyncio.wait_for(process.stdout.read(), 60)
    else:
        out, _ = await asyncio.wait_for(process.communicate(stdin), 120)
    code = await process.wait()
    if example.follows and code == 124:
        code = 0  # followed until the timeout, as a user watching would
    return code, out.decode(errors="replace")


@pytest.mark.parametrize("doc", [d for d in DOCS if examples_of(d)[0]], ids=lambda d: d.name)
async def test_the_examples_of(doc: Path, kukeond: Kukeond, tmp_path: Path) -> None:
    runnable, _ = examples_of(doc)
    own_realm = kukeond.realm
    try:
        world = _WORLD.get(doc.name)
        if world is not None:
            await world(kukeond, tmp_path)
        for example in runnable:
            code, out = await _run(example, kukeond, tmp_path)
            where = f"{example.doc}:{example.line}: {example.command}"
            if example.expect is None:
                assert code != 0, f"{where}: expected a failure, got:\n{out}"
                assert example.output[0].split(":")[0] in out, f"{where}:\n{out}"
            else:
                assert code == example.expect, f"{where}: exit {code}, not {example.expect}:\n{out}"
    finally:
        # Every realm the examples made, not only the fixture's, goes with its host objects,
        # and its containerd namespace: the node keeps a realm's namespace (its images) once
        # its last cell there is gone, so the realm's deletion leaves it to the orphan
        # collector's next pass, after this daemon stops (the fixture purges its own realm's).
        kukeond.realm = own_realm
        controllers = kukeond.daemon.controllers
        assert controllers is not None
        for realm in (await kukeond.registry.list(Kind.REALM)).items:
            if realm.metadata.name != own_realm and isinstance(realm, Realm):
                await kukeond.registry.delete(Kind.REALM, (realm.metadata.name,), cascade=True)
                await kukeond.wait_gone(Kind.REALM, (realm.metadata.name,), within=120)
                await clean_namespace(kukeond.containerd, controllers.host.namespace_of(realm))
