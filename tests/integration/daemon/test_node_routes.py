"""The node routes of kukeond's API (logs, kill, images) through its real unix socket."""

from __future__ import annotations

import asyncio
import contextlib
import json

import aiohttp
import pytest

from kukeon.api import Kind
from tests.fixtures.kukeond import Kukeond

pytestmark = pytest.mark.integration

API = "http://kukeond/apis/kukeon.io/v1beta1"
TICKER = "i=0; while true; do echo line$i; i=$((i+1)); sleep 0.2; done"


def session(k: Kukeond) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(k.config.api_socket)))


async def test_image_import_then_logs_and_kill(kukeond: Kukeond) -> None:
    k = kukeond
    await k.apply({"kind": "Realm", "metadata": {"name": k.realm}, "spec": {}})
    await k.apply({"kind": "Space", "metadata": {"name": "s1"}, "spec": {"realmId": k.realm}})
    await k.apply(
        {
            "kind": "Stack",
            "metadata": {"name": "st1"},
            "spec": {"realmId": k.realm, "spaceId": "s1"},
        }
    )
    await k.wait_for(Kind.REALM, (k.realm,), state="Ready")
    async with session(k) as http:
        # import the test image through the API, as `kukectl image import` does
        async with http.post(
            f"{API}/realms/{k.realm}/images", data=k.image.archive.read_bytes()
        ) as response:
            assert response.status == 201, await response.text()
            assert k.image.name in (await response.json())["images"]
        async with http.get(f"{API}/realms/{k.realm}/images") as response:
            names = [item["name"] for item in (await response.json())["items"]]
            assert k.image.name in names

        await k.apply(
            {
                "kind": "Cell",
                "metadata": {"name": "ticker"},
                "spec": {
                    "realmId": k.realm,
                    "spaceId": "s1",
                    "stackId": "st1",
                    "containers": [
                        {"id": "t", "image": k.image.name, "command": "sh", "args": ["-c", TICKER]}
                    ],
                },
            }
        )
        key = (k.realm, "s1", "st1", "ticker")
        await k.wait_for(Kind.CELL, key, state="Ready")
        cell_url = f"{API}/realms/{k.realm}/spaces/s1/stacks/st1/cells/ticker"
        await asyncio.sleep(1.0)

        async with http.get(f"{cell_url}/log", params={"tailLines": "2"}) as response:
            lines = (await response.text()).splitlines()
            assert len(lines) == 2
            assert all(line.startswith("line") for line in lines)

        # follow: lines written after the request started arrive on the open stream
        async with http.get(
            f"{cell_url}/log", params={"follow": "true", "tailLines": "0"}
        ) as response:
            first = await asyncio.wait_for(response.content.readline(), 5)
            second = await asyncio.wait_for(response.content.readline(), 5)
        numbers = [int(line.decode().strip().removeprefix("line")) for line in (first, second)]
        assert numbers[1] == numbers[0] + 1

        # limitBytes, as kube-apiserver answers it: cut where the bytes end (mid-line);
        # followed, the stream ends once they are sent. Before, it was ignored.
        async with http.get(f"{cell_url}/log", params={"limitBytes": "8"}) as response:
            assert await response.text() == "line0\nli"
        params = {"follow": "true", "tailLines": "1", "limitBytes": "20"}
        async with asyncio.timeout(30):
            async with http.get(f"{cell_url}/log", params=params) as response:
                followed = (await response.read()).decode()
        assert len(followed) == 20
        assert followed.count("\n") >= 2  # lines written after the request: followed
        for bad in ("0", "-3", "x"):
            async with http.get(f"{cell_url}/log", params={"limitBytes": bad}) as response:
                assert response.status == 400, bad
                assert (await response.json())["message"].startswith("limitBytes: ")

        async with http.get(f"{cell_url}/log", params={"container": "nope"}) as response:
            assert response.status == 404
            assert "nope" in (await response.json())["message"]

        async with http.post(f"{cell_url}/kill", params={"signal": "KILL"}) as response:
            assert response.status == 200, await response.text()
            assert (await response.json())["containers"] == ["t"]
    cell = await k.wait_for(
        Kind.CELL,
        key,
        until=lambda c: bool(c.status.containers) and c.status.containers[0].exit_code == 137,
    )
    assert cell.status.containers[0].exit_signal == "SIGKILL"
    assert str(cell.status.state) == "Error"


async def _exec(
    http: aiohttp.ClientSession, url: str, command: list[str], stdin: bytes | None = None
) -> tuple[bytes, bytes, dict[str, object]]:
    params = [("command", part) for part in command]
    if stdin is not None:
        params.append(("stdin", "true"))
    out, err = b"", b""
    status: dict[str, object] = {}
    async with http.ws_connect(f"{url}/exec", params=params) as socket:
        if stdin is not None:
            await socket.send_bytes(b"\x00" + stdin)
            await socket.send_bytes(b"\x00")
        async for message in socket:
            if message.type != aiohttp.WSMsgType.BINARY:
                break
            channel, payload = message.data[:1], message.data[1:]
            if channel == b"\x01":
                out += payload
            elif channel == b"\x02":
                err += payload
            elif channel == b"\x03":
                status = json.loads(payload)
    return out, err, status


async def _sleeping_box(k: Kukeond) -> str:
    """A Ready cell `box` whose one container sleeps; its URL."""
    await k.hierarchy()
    await k.apply(
        {
            "kind": "Cell",
            "metadata": {"name": "box"},
            "spec": {
                "realmId": k.realm,
                "spaceId": "s1",
                "stackId": "st1",
                "containers": [
                    {"id": "main", "image": k.image.name, "command": "sleep", "args": ["3600"]}
                ],
            },
        }
    )
    await k.wait_for(Kind.CELL, (k.realm, "s1", "st1", "box"), state="Ready")
    return f"{API}/realms/{k.realm}/spaces/s1/stacks/st1/cells/box"


async def test_exec_streams_output_stdin_and_exit_code(kukeond: Kukeond) -> None:
    k = kukeond
    url = await _sleeping_box(k)
    async with session(k) as http:
        out, err, status = await _exec(http, url, ["sh", "-c", "echo out; echo err >&2; exit 7"])
        assert out == b"out\n"
        assert err == b"err\n"
        assert status == {"exitCode": 7}
        out, _, status = await _exec(http, url, ["cat"], stdin=b"through stdin\n")
        assert out == b"through stdin\n"
        assert status == {"exitCode": 0}
        async with http.get(
            f"{url}/exec", params={"command": "true", "container": "x"}
        ) as response:
            assert response.status == 404
        # An exec that is no WebSocket, or whose flags mean nothing, is refused before its
        # FIFO directory is made: each such request used to leave one behind.
        for params in (
            {"command": "true"},
            {"command": "true", "tty": "maybe"},
            {"command": "true", "stdin": "2"},
        ):
            async with http.get(f"{url}/exec", params=params) as response:
                assert response.status == 400, await response.text()
                assert (await response.json())["kind"] == "Status"
        exec_dir = k.config.state_dir / "exec"
        assert not exec_dir.exists() or not list(exec_dir.iterdir())


async def test_an_exec_whose_client_leaves_first_ends_its_process(kukeond: Kukeond) -> None:
    """A client closing its socket while the process runs (Ctrl-C on `kukectl exec -- sleep
    N`), or after a resize frame with a size int() refuses (1e309), ends the process: it ran
    on in the container before, its FIFO directory stayed, and the session never ended."""
    k = kukeond
    url = await _sleeping_box(k)
    exec_dir = k.config.state_dir / "exec"
    async with session(k) as http:
        for seconds, frames in (
            ("7771", []),
            ("7772", [b'\x04{"width": 5, "height": 1e309}']),
        ):
            params = [("command", "sleep"), ("command", seconds), ("stdin", "true")]
            params += [("tty", "true")] if frames else []
            async with http.ws_connect(f"{url}/exec", params=params) as socket:
                for frame in frames:
                    await socket.send_bytes(frame)
                out, _, _ = await _exec(http, url, ["ps", "-o", "args"])
                assert f"sleep {seconds}".encode() in out  # running while the client is there
            left: list[object] = []
            for _ in range(50):
                out, _, _ = await _exec(http, url, ["ps", "-o", "args"])
                await asyncio.sleep(0.1)  # the ps exec's own directory goes after its answer
                left = [out] if f"sleep {seconds}".encode() in out else []
                left += list(exec_dir.iterdir())
                if not left:
                    break
            assert not left  # neither the process nor its FIFO directory


async def test_the_log_of_a_container_that_never_started_says_why(kukeond: Kukeond) -> None:
    # kube-apiserver's 400 'container ... is waiting to start'; it was a 200 with no line.
    k = kukeond
    await k.hierarchy()
    containers = [{"id": "c", "image": "nosuch.invalid/x:1", "command": "true"}]
    await k.apply(
        {
            "kind": "Cell",
            "metadata": {"name": "never"},
            "spec": {
                "realmId": k.realm,
                "spaceId": "s1",
                "stackId": "st1",
                "containers": containers,
            },
        }
    )
    await k.wait_for(Kind.CELL, (k.realm, "s1", "st1", "never"), state="Failed", within=60)
    cell_url = f"{API}/realms/{k.realm}/spaces/s1/stacks/st1/cells/never"
    async with session(k) as http, http.get(f"{cell_url}/log") as response:
        assert response.status == 400
        message = (await response.json())["message"]
    assert "container c of cell never has not started on its node yet" in message
    assert "ImageUnavailable" in message


def _one_shot(k: Kukeond, name: str, script: str, policy: str) -> dict[str, object]:
    container: dict[str, object] = {"id": "c", "image": k.image.name, "command": "sh"}
    container["args"] = ["-c", script]
    container["restartPolicy"] = policy
    if policy != "never":
        container["restartBackoffSeconds"] = 1
    spec = {"realmId": k.realm, "spaceId": "s1", "stackId": "st1", "containers": [container]}
    return {"kind": "Cell", "metadata": {"name": name}, "spec": spec}


async def test_a_followed_log_ends_once_the_cells_run_is_over(kukeond: Kukeond) -> None:
    """kubectl's `logs -f` ends when its container does. A followed log here goes on across
    restarts, but that of a cell that exited for good waited until the cell was deleted
    (`kukectl logs -f` of a finished job hung). Its last line comes first (the end is seen
    at two checks a second apart); a cell whose container is restarted is still followed."""
    k = kukeond
    await k.hierarchy()
    await k.apply(_one_shot(k, "job", "echo one; sleep 2; echo two", "never"))
    await k.apply(_one_shot(k, "again", "echo run; sleep 1", "always"))
    cells = f"{API}/realms/{k.realm}/spaces/s1/stacks/st1/cells"
    await k.wait_for(Kind.CELL, (k.realm, "s1", "st1", "job"), state="Ready", within=60)
    async with session(k) as http:
        async with asyncio.timeout(30):
            async with http.get(f"{cells}/job/log", params={"follow": "true"}) as response:
                assert (await response.read()).decode() == "one\ntwo\n"
        cell = await k.registry.get(Kind.CELL, (k.realm, "s1", "st1", "job"))
        assert str(cell.status.state) == "Exited"
        # After its end too: at once, not after a wait for lines that cannot come.
        async with asyncio.timeout(10):
            async with http.get(f"{cells}/job/log", params={"follow": "true"}) as response:
                assert (await response.read()).decode() == "one\ntwo\n"
        await _followed_across_restarts(http, f"{cells}/again/log", {"follow": "true"})


async def test_a_followed_container_log_ends_with_its_container(kukeond: Kukeond) -> None:
    """kubectl's `logs -f -c X` ends when X's stream does, whatever the pod's other containers
    do (and `--all-containers -f` ends each stream with its container). A container that
    ended for good was followed here for as long as another container of its cell ran; one
    whose policy restarts it is still followed across the restart."""
    k = kukeond
    await k.hierarchy()

    def container(name: str, script: str, policy: str) -> dict[str, object]:
        return {"id": name, "image": k.image.name, "command": "sh", "args": ["-c", script],
                "restartPolicy": policy, "restartBackoffSeconds": 1}  # fmt: skip

    main = container("main", "sleep 3600", "always")
    side = container("side", "echo one; sleep 2; echo two", "never")
    side.pop("restartBackoffSeconds")  # only for a policy that restarts
    again = container("again", "echo run; sleep 1", "always")
    spec = {"realmId": k.realm, "spaceId": "s1", "stackId": "st1"}
    await k.apply({"kind": "Cell", "metadata": {"name": "pod"}, "spec": {**spec,
                   "containers": [main, side, again]}})  # fmt: skip
    key = (k.realm, "s1", "st1", "pod")
    await k.wait_for(Kind.CELL, key, state="Ready", within=60)
    log = f"{API}/realms/{k.realm}/spaces/s1/stacks/st1/cells/pod/log"
    async with session(k) as http:
        async with asyncio.timeout(30):
            params = {"follow": "true", "container": "side"}
            async with http.get(log, params=params) as response:
                assert (await response.read()).decode() == "one\ntwo\n"
        cell = await k.registry.get(Kind.CELL, key)
        running = [c.id for c in cell.status.containers if str(c.state) == "Running"]
        assert "main" in running  # the cell still runs: only its container ended
        await _followed_across_restarts(http, log, {"follow": "true", "container": "again"})


async def _followed_across_restarts(
    http: aiohttp.ClientSession, url: str, params: dict[str, str]
) -> None:
    """The followed log at ``url``, of a container that exits every second or so and is
    restarted, goes on across its restarts (6 s of it read: 2 lines or more, no end)."""
    async with http.get(url, params=params) as response:
        lines = []
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(6):
                while line := await response.content.readline():
                    lines.append(line)
        assert not response.content.at_eof()
    assert len(lines) >= 2, lines
