"""What a crash-looping busybox container's status says, as kukectl shows it.

While it runs again after a restart, `kukectl get cell -o yaml` shows no exit of its own
(no `exitCode`, `finishTime`), its previous run's end under `lastState`, `describe` a
`Last State:` table and `get` kubectl's `RESTARTS` with the age (`1 (3s ago)`); while it
waits out a back-off, it is `Waiting` with reason `CrashLoopBackOff` (kubectl's word, which
`get cells` shows as the STATE), the message states the back-off and its due time, the
same when read again later, and the exit is `lastState`; and no run, however short,
finishes before it started. A container that stays down (`never`, `on-failure` past
`restartMaxRetries`) is never `Waiting`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta

import pytest
import yaml

from kukeon.api import AnyResource, Cell, ContainerSpec, ContainerState, Kind
from tests.fixtures.kukectl import kukectl
from tests.fixtures.kukeond import Kukeond

from .helpers import cell_doc, cell_key, cell_versions, container, get_cell, update_cell

pytestmark = pytest.mark.integration

RUN_SECONDS = 6
"""How long the first run of `app` lasts (its length is checked in its lastState)."""
APP_SCRIPT = (
    "if [ -e /ran2 ]; then exec sleep 600; fi; "
    "if [ -e /ran ]; then while [ ! -e /release ]; do sleep 0.2; done; touch /ran2; exit 3; fi; "
    f"touch /ran; sleep {RUN_SECONDS}; exit 3"
)
"""`app`: its first run exits 3 after RUN_SECONDS; its second exits 3 once the test has read
its status and writes /release (a timed run ended under the checks' three kukectl processes
at load 20: 4 s once in stop 39, 6 s once in stop 46); its third runs on. The markers are
in the container's root filesystem, which a restart keeps."""


@contextlib.asynccontextmanager
async def backwards_runs(
    k: Kukeond, key: tuple[str, ...], *, since: int
) -> AsyncIterator[list[str]]:
    """Every container status of the cell, as written, whose run (or last run) finished
    before it started, described."""
    found: list[str] = []

    def note(obj: Cell) -> None:
        for status in obj.status.containers:
            runs = [(status.start_time, status.finish_time)]
            if status.last_state is not None:
                last = status.last_state
                runs.append((last.started_at, last.finished_at))
            for started, finished in runs:
                if started is not None and finished is not None and finished < started:
                    found.append(f"{status.id}: {started} > {finished}")

    async with cell_versions(k, key, note, since=since):
        yield found


def _app(obj: AnyResource) -> dict[str, object] | None:
    assert isinstance(obj, Cell)
    found = [c for c in obj.status.containers if c.id == "app"]
    return found[0].model_dump(mode="json", by_alias=True) if found else None


async def _kukectl(k: Kukeond, *args: str) -> str:
    scope = ("--realm", k.realm, "--space", "s1", "--stack", "st1")
    code, out, err = await kukectl(k, *args, *scope)
    assert code == 0, err
    return out


async def test_a_restarted_container_runs_with_its_last_exit_apart(kukeond: Kukeond) -> None:
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "crashy")
    since = await k.registry.current_revision()
    async with backwards_runs(k, key, since=since) as backwards:
        await k.apply(
            cell_doc(
                k,
                "crashy",
                [
                    container(k, "main"),
                    container(k, "app", script=APP_SCRIPT, restartPolicy="always"),
                    container(k, "blink", script="exit 1", restartPolicy="always"),
                ],
            )
        )

        def running_again(obj: AnyResource) -> bool:
            app = _app(obj)
            return app is not None and app.get("restartCount") == 1 and bool(app.get("pid"))

        await k.wait_for(Kind.CELL, key, until=running_again, within=30)
        document = yaml.safe_load(await _kukectl(k, "get", "cell", "crashy", "-o", "yaml"))
        [app] = [c for c in document["status"]["containers"] if c["id"] == "app"]
        assert app["state"] == "Running", app
        assert not {"exitCode", "exitSignal", "finishTime", "reason", "message"} & app.keys(), app
        last = app["lastState"]
        assert (last["exitCode"], last["reason"]) == (3, "Error"), app
        started = datetime.fromisoformat(last["startedAt"])
        finished = datetime.fromisoformat(last["finishedAt"])
        run = finished - started
        assert timedelta(seconds=RUN_SECONDS - 1) < run < timedelta(seconds=RUN_SECONDS + 5)
        assert datetime.fromisoformat(app["startTime"]) >= finished

        page = await _kukectl(k, "describe", "cell", "crashy")
        containers = page.split("\nContainers:\n", 1)[1].split("\nLast State:\n", 1)[0]
        [row] = [line.split() for line in containers.splitlines() if line.split()[:1] == ["app"]]
        assert (row[1], row[4]) == ("Running", "<none>"), page  # running, no exit code
        last_rows = page.split("\nLast State:\n", 1)[1].splitlines()
        [last_app] = [line.split() for line in last_rows if line.split()[:1] == ["app"]]
        assert last_app[1:3] == ["Error", "3"], page
        wide = (await _kukectl(k, "get", "cell", "crashy", "-o", "wide")).splitlines()
        assert " ago)" in wide[1], wide
        scope = ("--realm", k.realm, "--space", "s1", "--stack", "st1")
        code, _, err = await kukectl(
            k, "exec", "crashy", "-c", "app", *scope, "--", "touch", "/release"
        )
        assert code == 0, err

        # Its next exit waits 10 s: Waiting, said once with the due time, the same 3 s later.
        def waiting(obj: AnyResource) -> bool:
            app = _app(obj)
            return app is not None and app.get("state") == "Waiting"

        first = await k.wait_for(Kind.CELL, key, until=waiting, within=15)
        said = _app(first)
        assert said is not None
        assert said["reason"] == "CrashLoopBackOff", said
        message = str(said["message"])
        assert message.startswith("back-off 10s restarting failed container=app, due "), message
        due = datetime.fromisoformat(message.rsplit("due ", 1)[1])
        # Nothing runs: no pid, run or exit of its own; the exit is lastState, the due time
        # restartTime.
        none = ("pid", "startTime", "finishTime", "exitCode", "exitSignal")
        assert [said[name] for name in none] == [None] * len(none), said
        assert isinstance(said["lastState"], dict)
        last = {name: value for name, value in said["lastState"].items() if value is not None}
        assert (last["exitCode"], last["reason"]) == (3, "Error"), said
        exited = datetime.fromisoformat(str(last["finishedAt"]))
        assert timedelta(seconds=10) <= due - exited < timedelta(seconds=11), message
        restart_at = datetime.fromisoformat(str(said["restartTime"]))
        assert timedelta(0) <= due - restart_at < timedelta(seconds=1), said
        await asyncio.sleep(3)
        document = yaml.safe_load(await _kukectl(k, "get", "cell", "crashy", "-o", "yaml"))
        [app] = [c for c in document["status"]["containers"] if c["id"] == "app"]
        assert app["state"] == str(ContainerState.WAITING), app
        assert app["message"] == message
        assert (app["lastState"], app["restartCount"]) == (last, 1), app
        # The cell is Degraded for it, its reason kubectl's, its message a due time (app's
        # or blink's, the sooner).
        assert document["status"]["state"] == "Degraded"
        assert document["status"]["reason"] == "CrashLoopBackOff"
        cell_message = str(document["status"].get("message"))
        assert re.fullmatch(r"a restart is owed: container (app|blink) at \S+Z", cell_message)
        table = (await _kukectl(k, "get", "cells")).splitlines()
        [row] = [line.split() for line in table if line.split()[:1] == ["crashy"]]
        # READY: main, and blink when it has just been restarted.
        assert row[1] == "CrashLoopBackOff", table
        assert row[2] in ("1/3", "2/3"), table
        page = await _kukectl(k, "describe", "cell", "crashy")
        containers = page.split("\nContainers:\n", 1)[1].split("\nLast State:\n", 1)[0]
        [row] = [line.split() for line in containers.splitlines() if line.split()[:1] == ["app"]]
        assert row[:7] == ["app", "Waiting", "false", "<none>", "<none>", "1", "CrashLoopBackOff"]
        last_rows = page.split("\nLast State:\n", 1)[1].splitlines()
        [last_app] = [line.split() for line in last_rows if line.split()[:1] == ["app"]]
        assert last_app[1:3] == ["Error", "3"], page

        # Restarted once due: it runs again, the same exit as lastState, no due time.
        def running_twice(obj: AnyResource) -> bool:
            app = _app(obj)
            return app is not None and app.get("restartCount") == 2 and bool(app.get("pid"))

        again = _app(await k.wait_for(Kind.CELL, key, until=running_twice, within=15))
        assert again is not None
        assert again["state"] == "Running", again
        gone = ("restartTime", "reason", "message", "exitCode")
        assert [again[name] for name in gone] == [None] * len(gone), again
        assert isinstance(again["lastState"], dict)
        assert {n: v for n, v in again["lastState"].items() if v is not None} == last, again
        assert datetime.fromisoformat(str(again["startTime"])) >= due - timedelta(seconds=1)

        # `blink` exits at once, again and again: never a finish before its start.
        def blinked(obj: AnyResource) -> bool:
            assert isinstance(obj, Cell)
            return any(c.id == "blink" and c.restart_count >= 2 for c in obj.status.containers)

        await k.wait_for(Kind.CELL, key, until=blinked, within=30)
    assert backwards == []


async def test_a_container_that_stays_down_never_waits(kukeond: Kukeond) -> None:
    """`never` and `on-failure` past its `restartMaxRetries` end `Failed` with their exit:
    no `CrashLoopBackOff` (the on-failure one waits once, before its one restart)."""
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "down")
    since = await k.registry.current_revision()
    async with container_states(k, key, since=since) as states:
        await k.apply(
            cell_doc(
                k,
                "down",
                [
                    container(k, "main"),
                    container(k, "once", script="echo bye; exit 2", restartPolicy="never"),
                    container(
                        k,
                        "flaky",
                        script="echo boom; exit 4",
                        restartPolicy="on-failure",
                        restartMaxRetries=1,
                        restartBackoffSeconds=1,
                    ),
                ],
            )
        )

        def given_up(obj: AnyResource) -> bool:
            assert isinstance(obj, Cell)
            return str(obj.status.state) == "Error" and any(
                c.id == "flaky" and c.restart_count == 1 and c.state == ContainerState.FAILED
                for c in obj.status.containers
            )

        await k.wait_for(Kind.CELL, key, until=given_up, within=30)
        await asyncio.sleep(2.5)  # nothing more happens: no restart, no wait
    document = yaml.safe_load(await _kukectl(k, "get", "cell", "down", "-o", "yaml"))
    assert document["status"]["state"] == "Error"
    assert document["status"].get("reason") != "CrashLoopBackOff", document["status"]
    found = {c["id"]: c for c in document["status"]["containers"]}
    flaky, once = found["flaky"], found["once"]
    assert (flaky["state"], flaky["exitCode"], flaky["reason"]) == ("Failed", 4, "Error")
    assert flaky["message"] == "boom (not restarted: 1 restarts made (restartMaxRetries 1))"
    assert "restartTime" not in flaky, flaky
    assert flaky["lastState"]["exitCode"] == 4  # the run before its one restart
    assert (once["state"], once["exitCode"], once["message"]) == ("Failed", 2, "bye")
    assert not {"restartTime", "lastState"} & once.keys(), once
    assert "Waiting" not in states["once"], states
    # flaky may wait before its one restart (1 s), never after its last exit.
    flaky_states = states["flaky"]
    last_run = len(flaky_states) - 1 - flaky_states[::-1].index("Running")
    assert flaky_states[last_run:] == ["Running", "Failed"], states
    table = (await _kukectl(k, "get", "cells")).splitlines()
    [row] = [line.split() for line in table if line.split()[:1] == ["down"]]
    assert row[1:3] == ["Error", "1/3"], table


async def test_a_restart_policy_edited_during_the_wait_leaves_one_exit(
    kukeond: Kukeond,
) -> None:
    """A container waiting out its back-off whose `restartPolicy` is edited to `never`
    stays down, as Kubernetes shows it: its exit in its own fields (state.terminated), not
    in `lastState` as well; edited back to `always`, it waits (or restarts) with the exit
    in `lastState` only (lastState.terminated beside state.waiting)."""
    k = kukeond
    await k.hierarchy()
    key = cell_key(k, "edited")
    app = container(
        k, "app", script="echo boom; exit 3", restartPolicy="always", restartBackoffSeconds=60
    )
    await k.apply(cell_doc(k, "edited", [container(k, "main"), app]))

    def app_state(state: str) -> Callable[[AnyResource], bool]:
        def check(obj: AnyResource) -> bool:
            found = _app(obj)
            return found is not None and found.get("state") == state

        return check

    waiting = _app(await k.wait_for(Kind.CELL, key, until=app_state("Waiting"), within=30))
    assert waiting is not None
    assert isinstance(waiting["lastState"], dict), waiting
    exited = waiting["lastState"]
    assert (exited["exitCode"], exited["message"]) == (3, "boom"), waiting

    async def edit(**fields: object) -> None:
        cell = await get_cell(k, key)
        edited = [
            ContainerSpec.model_validate(
                {**c.model_dump(mode="json", by_alias=True, exclude_none=True), **fields}
            )
            if c.id == "app"
            else c
            for c in cell.spec.containers
        ]
        await update_cell(k, key, spec={"containers": edited})

    # restartBackoffSeconds needs a policy that restarts: it goes with it.
    await edit(restartPolicy="never", restartBackoffSeconds=None)
    down = _app(await k.wait_for(Kind.CELL, key, until=app_state("Failed"), within=15))
    assert down is not None
    run = ("exitCode", "reason", "message", "startTime", "finishTime")
    assert [down[name] for name in run] == [
        exited["exitCode"],
        exited["reason"],
        exited["message"],
        exited["startedAt"],
        exited["finishedAt"],
    ], down
    # One place says it: no lastState repeating the same exit, no due time.
    assert down.get("lastState") is None, down
    assert down.get("restartTime") is None, down

    await edit(restartPolicy="always", restartBackoffSeconds=60)
    again = _app(await k.wait_for(Kind.CELL, key, until=app_state("Waiting"), within=15))
    assert again is not None
    assert [again[name] for name in ("exitCode", "finishTime", "startTime")] == [None] * 3
    assert again["reason"] == "CrashLoopBackOff", again
    assert isinstance(again["lastState"], dict)
    assert {n: v for n, v in again["lastState"].items() if v is not None} == {
        n: v for n, v in exited.items() if v is not None
    }, again


@contextlib.asynccontextmanager
async def container_states(
    k: Kukeond, key: tuple[str, ...], *, since: int
) -> AsyncIterator[dict[str, list[str]]]:
    """Each container's states as the cell's documents report them, in order (repeats
    dropped)."""
    seen: dict[str, list[str]] = {}

    def note(obj: Cell) -> None:
        for status in obj.status.containers:
            states = seen.setdefault(status.id, [])
            if not states or states[-1] != str(status.state):
                states.append(str(status.state))

    async with cell_versions(k, key, note, since=since):
        yield seen
