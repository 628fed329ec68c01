"""A server answering 200 with what the API never sends (HTML, a JSON array, an object of
another shape): every kukectl command that reads an answer says which request got what and
exits 1, never 'unexpected failure: AttributeError' (what it said before).

kukectl runs in-process against a fake server on a unix socket (``KUKEON_SERVER``) that
answers every request with the same body.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kukeon.cli.main import main
from kukeon.client.errors import ApiRequestError, UnreadableAnswer, decode_answer
from tests.unit.cli.listserver import answering

ROOT = "/apis/kukeon.io/v1beta1"
CELL = ["--realm", "r", "--space", "s", "--stack", "st"]
CELLS = f"{ROOT}/realms/r/spaces/s/stacks/st/cells"
IMAGES = f"{ROOT}/realms/r/images"


BODIES = {
    "html": b"<html><body>502 Bad Gateway</body></html>",
    "array": b"[1, 2, 3]",
    "number": b"42",
    "empty": b"",
    "other object": b'{"items": 5, "metadata": 7, "images": 5, "removed": {}, "containers": 1}',
    "object without fields": b'{"kind": 5}',
}

COMMANDS: list[tuple[list[str], str]] = [
    (["get", "cells", *CELL], f"GET {CELLS}"),
    (["get", "cell", "c", *CELL], f"GET {CELLS}/c"),
    (["describe", "cell", "c", *CELL], f"GET {CELLS}/c"),
    (["get", "cells", "-w", *CELL], f"GET {CELLS}"),
    (["delete", "cell", "c", *CELL], f"DELETE {CELLS}/c"),
    (["kill", "c", *CELL], f"POST {CELLS}/c/kill"),
    (["top", "cells", *CELL], f"GET {CELLS}"),
    (["events", "--realm", "r"], f"GET {ROOT}/realms/r/events"),
    (["version"], "GET /version"),
    (["image", "ls", "--realm", "r"], f"GET {IMAGES}"),
    (["image", "import", "ARCHIVE", "--realm", "r"], f"POST {IMAGES}"),
    (["image", "pull", "busybox:1", "--realm", "r"], f"POST {IMAGES}/pull"),
    (["image", "rm", "busybox:1", "--realm", "r"], f"DELETE {IMAGES}/busybox:1"),
    (["image", "prune", "--realm", "r"], f"POST {IMAGES}/prune"),
]


@pytest.fixture
def server_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    socket = tmp_path / "api.sock"
    monkeypatch.setenv("KUKEON_SERVER", f"unix://{socket}")
    monkeypatch.setenv("KUKEON_CONFIG", str(tmp_path / "config.yaml"))
    return socket


@pytest.mark.parametrize("body", list(BODIES.values()), ids=list(BODIES))
@pytest.mark.parametrize(
    ("argv", "request_line"), COMMANDS, ids=[" ".join(argv[:2]) for argv, _ in COMMANDS]
)
def test_a_garbage_answer_is_said_with_its_request(
    server_socket: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    request_line: str,
    body: bytes,
) -> None:
    archive = tmp_path / "image.tar"
    archive.write_bytes(b"not read by the fake server")
    argv = [str(archive) if arg == "ARCHIVE" else arg for arg in argv]
    with answering(server_socket, body), pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 1, err
    assert "unexpected failure" not in err
    assert f"answer to {request_line}" in err, err
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        (b"<html>", "is not JSON: '<html>'"),
        (b"[1]", "is JSON an array, not an object: '[1]'"),
        (b"null", "is JSON null, not an object"),
        (b"", "is empty: (empty)"),
        (b'"x' + b"y" * 300 + b'"', "... (303 bytes)"),
    ],
)
def test_decode_answer_names_the_request_and_the_first_bytes(raw: bytes, said: str) -> None:
    with pytest.raises(UnreadableAnswer) as refused:
        decode_answer(200, "OK", raw, request="GET /apis/x")
    assert refused.value.message.startswith("the server's answer to GET /apis/x ")
    assert said in refused.value.message
    # Without a request (a plain-text route such as /readyz) text is text.
    if raw and raw[:1] != b"[" and raw != b"null":
        assert isinstance(decode_answer(200, "OK", raw), str)


def test_a_status_of_another_shape_is_still_the_server_s_failure() -> None:
    # details: 5 gave 'unexpected failure: AttributeError' before.
    for status in (
        b'{"kind": "Status", "code": "x", "message": "no", "details": 5}',
        b'{"kind": "Status", "message": "no", "details": {"causes": 7, "kind": 3}}',
    ):
        with pytest.raises(ApiRequestError) as refused:
            decode_answer(422, "Unprocessable", status)
        assert (refused.value.code, refused.value.message) == (422, "no")
        assert refused.value.causes == []
        assert refused.value.kind is None
