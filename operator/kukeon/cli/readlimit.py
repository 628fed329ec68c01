"""Reading what the user points kukectl at (``-f``, ``--patch-file``) with a bound.

A read without one never ends on ``-f /dev/zero`` or a pipe that never closes, and takes
memory until the host has none: these read in chunks and stop one byte past the limit.
"""

from __future__ import annotations

from typing import IO

MAX_SOURCE_BYTES = 64 * 1024 * 1024
"""The most kukectl reads of one manifest source (a file or stdin): 64 times the 1 MiB the
API server stores of one document (``store.codec.MAX_DOCUMENT_BYTES``) and takes as one
request's body by default (``apiserver.settings.MAX_BODY_BYTES``), or some 20,000 cells of
ordinary size (2-3 KiB of YAML each), each of which is a request of its own: more than one
command sends, far less than the memory of any host kukectl runs on."""

_CHUNK = 1024 * 1024


class TooLarge(Exception):  # noqa: N818 - what was read, not an error of kukectl's
    """More than ``limit`` bytes (characters of a text stream) were there to read."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"over {size_text(limit)}")


def size_text(size: int) -> str:
    """``64 MiB``, ``1 KiB`` or ``512 bytes``: a limit as a person reads it."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"


def read_limited(
    stream: IO[bytes] | IO[str], limit: int = MAX_SOURCE_BYTES, *, newlines: bool = True
) -> str:
    """All of ``stream``, decoded as UTF-8 (a binary one) with universal newlines, as
    ``Path.read_text`` gives it (``newlines=False``: the line ends as they are); TooLarge
    once more than ``limit`` bytes (characters, for a text stream: at least as many
    bytes) came, UnicodeDecodeError (offsets from the start) and OSError as a read raises
    them."""
    chunks: list[bytes | str] = []
    total = 0
    while chunk := stream.read(min(_CHUNK, limit + 1 - total)):
        chunks.append(chunk)
        total += len(chunk)
        if total > limit:
            raise TooLarge(limit)
    if all(isinstance(chunk, str) for chunk in chunks):
        return "".join(str(chunk) for chunk in chunks)
    text = b"".join(chunk for chunk in chunks if isinstance(chunk, bytes)).decode("utf-8")
    if not newlines:
        return text
    # Path.read_text's newline=None: \r\n and a lone \r end a line as \n does
    return text.replace("\r\n", "\n").replace("\r", "\n")
