"""`kukectl logs --all-containers`, as kubectl's: each container's output after the
other's, in the spec's order, and with ``-f`` all at once by whole lines; a line starts
with kubectl's ``[pod/NAME/CONTAINER]``, here ``[cell/NAME/CONTAINER]``, only with
``--prefix``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import cast

import pytest

from kukeon.api import AnyResource, Kind, parse_resource
from kukeon.cli import logs
from kukeon.client.apiclient import ApiClient

_OUTPUT = {"one": [b"a1\na", b"2\n"], "other": [b"b1\nb", b"2\n", b"b3"]}
"""Each container's output as the route sends it, in pieces cut mid-line."""


class _Client:
    """The calls logs makes: the cell, and each container's log in its pieces."""

    async def get(self, kind: Kind, key: Sequence[str]) -> AnyResource:
        containers = [{"id": cid, "image": "busybox"} for cid in _OUTPUT]
        spec = {"realmId": "r", "spaceId": "s", "stackId": "st", "containers": containers}
        document = {"apiVersion": "kukeon.io/v1beta1", "kind": "Cell", "spec": spec}
        return parse_resource({**document, "metadata": {"name": key[-1]}})

    async def stream(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None
    ) -> AsyncIterator[bytes]:
        for piece in _OUTPUT[(params or {})["container"]]:
            yield piece
            await asyncio.sleep(0)  # the other container's piece comes in between


def _printed(monkeypatch: pytest.MonkeyPatch, *, follow: bool, prefix: bool) -> bytes:
    written: list[bytes] = []
    monkeypatch.setattr(logs, "write_stdout", written.append)
    params = {"follow": "true"} if follow else {}
    printer = logs._CellLogs(cast(ApiClient, _Client()), ("r", "s", "st", "web"), params)
    asyncio.run(printer.print(None, all_containers=True, prefix=prefix))
    return b"".join(written)


def test_all_containers_prints_each_after_the_other_without_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _printed(monkeypatch, follow=False, prefix=False) == b"a1\na2\nb1\nb2\nb3"
    assert _printed(monkeypatch, follow=False, prefix=True) == (
        b"[cell/web/one] a1\n[cell/web/one] a2\n[cell/web/other] b1\n[cell/web/other] b2\n"
        b"[cell/web/other] b3"
    )


@pytest.mark.parametrize("prefix", [False, True])
def test_all_containers_followed_at_once_are_printed_by_whole_lines(
    monkeypatch: pytest.MonkeyPatch, prefix: bool
) -> None:
    printed = _printed(monkeypatch, follow=True, prefix=prefix).decode()
    labels = {"a": "[cell/web/one] ", "b": "[cell/web/other] "} if prefix else {"a": "", "b": ""}
    expected = [labels[text[0]] + text for text in ("a1", "a2", "b1", "b2", "b3")]
    lines = printed.split("\n")
    assert sorted(lines) == expected, printed  # no line cut by the other container's
    assert lines.index(expected[0]) < lines.index(expected[1])


def test_a_prefix_names_the_root_container_when_none_is_chosen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kubectl's prefix always names the container, the default one included (it said
    ``[web] ``): without -c the route streams the root container, here the first."""
    written: list[bytes] = []
    monkeypatch.setattr(logs, "write_stdout", written.append)
    printer = logs._CellLogs(cast(ApiClient, _Client()), ("r", "s", "st", "web"), {})
    asyncio.run(printer.print(None, all_containers=False, prefix=True))
    assert b"".join(written) == b"[cell/web/one] a1\n[cell/web/one] a2\n"
