"""What a process cannot be given: a NUL byte in an argument, a variable or its directory,
or a variable without a name.

execve(2) takes C strings, so runc refuses a spec whose ``args``, ``env`` or ``cwd`` holds a
NUL: its create fails ('environment variable value can't contain null'), and kukeond took
that for an unexpected error, retried for ever. The API refuses a NUL in every field it
stores, so such a byte comes from what the node reads: the image's config (``Entrypoint``,
``Cmd``, ``Env``, ``WorkingDir``, its author's), the home directory of its /etc/passwd,
or a secret's value. :func:`check_process_strings` names which, as a
:class:`~kukeon.runtime.containerd.specerrors.FieldError` (the cell fails as
InvalidSpec), without the value itself (a secret's must never be said).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kukeon.runtime.containerd.specerrors import FieldError
from kukeon.runtime.containerd.types import ImageConfig

_WHY = "holds a NUL byte, which no process can be given (execve takes C strings)"


def check_process_strings(
    *,
    args: Sequence[str],
    env: Sequence[str],
    cwd: str,
    image: ImageConfig,
    secret_names: Mapping[str, str],
    home: str,
) -> None:
    """Raise a FieldError naming where the first NUL of ``args``, ``env`` or ``cwd`` came
    from, or the image's variable without a name (``=x``: the container's ``env`` and
    secrets always have one); ``secret_names``: the variables set by secrets, ``home``:
    the passwd entry's."""
    for position, arg in enumerate(args):
        if "\0" in arg:
            field = "image config Entrypoint" if arg in image.entrypoint else "image config Cmd"
            raise FieldError(field, f"the command's argument {position} {_WHY}")
    if "\0" in cwd:
        raise FieldError("image config WorkingDir", f"the image's working directory {_WHY}")
    for entry in env:
        name = entry.partition("=")[0]
        if not name:  # runc: 'invalid environment variable: name cannot be empty'
            raise FieldError("image config Env", f"an entry has no name ({entry[:100]!a})")
        if "\0" not in entry:
            continue
        shown = ascii(name[:100])
        if name in secret_names:
            raise FieldError("secrets", f"the value of the secret variable {shown} {_WHY}")
        if name == "HOME" and entry == f"HOME={home}":
            raise FieldError("user", f"the user's home directory in the image's /etc/passwd {_WHY}")
        raise FieldError("image config Env", f"the image's variable {shown} {_WHY}")
