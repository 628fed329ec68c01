"""Warnings on a write that is stored as asked but is likely not what its author meant.

Each is a ``Warning: 299`` header of the answer (``fieldvalidation.warn``, as
kube-apiserver's), which kukectl prints on stderr; the write itself goes on. What always
fails is refused instead (``writerules``): these are what a node could still run.
"""

from __future__ import annotations

from kukeon.api import AnyResource
from kukeon.api.meta import quote
from kukeon.apiserver.writerules import containers_of

COMMAND_SHOWN = 60
"""The most characters of a command a warning repeats."""


def command_line_warnings(res: AnyResource, current: AnyResource | None) -> list[str]:
    """A container whose ``command`` is a whole command line (docker-compose's habit:
    compose splits a string into words). kukeon runs ``command`` as one program, spaces
    and all, so such a cell fails with CommandNotFound on its node, unless the image has a
    file of that name; said at write time, with the way to write it."""
    texts = []
    for prefix, container, _ in containers_of(res, current):
        program = container.command
        if program is None or container.args or len(program.split()) < 2:
            continue
        texts.append(
            f"{prefix}.command: {quote(program, COMMAND_SHOWN)} is run as one program, spaces "
            "and all; a command line's words go in args (a shell line: command: sh, args: "
            "[-c, 'LINE'])"
        )
    return texts
