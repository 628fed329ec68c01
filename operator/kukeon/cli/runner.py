"""How a kukectl command runs: the root options, the exit codes and one line per failure.

Every command resolves its connection lazily (``completion`` and ``version --client``
need no server), runs one coroutine against ``ApiClient`` and maps every failure to one
readable line on stderr and an exit code: 0 success, 1 the server (or reaching it) failed,
2 the command line or the manifests are wrong. A traceback is never shown.
"""

from __future__ import annotations

import asyncio
import os
import re
import select
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal, NamedTuple, NoReturn, TypeVar

import click

from kukeon.client.apiclient import (
    ApiClient,
    ApiRequestError,
    ServerAddressError,
    ServerUnreachable,
    StatusCause,
)
from kukeon.client.errors import shown

from .config import ConfigError, Connection, default_config_path, load_config, resolve_connection
from .terminal import terminal_safe

T = TypeVar("T")

EXIT_SERVER = 1
EXIT_USAGE = 2

if TYPE_CHECKING:
    from rich.status import Status

    from .configfile import KukectlConfig


class StderrLines:
    """kukectl's stderr: whole lines, coloured only on a terminal and never with ``NO_COLOR``
    (``FORCE_COLOR`` colours a pipe too); the spinner of a wait, drawn by rich, is loaded
    only by the commands that show one (rich costs every other run a tenth of a second)."""

    @staticmethod
    def _color() -> bool | None:
        if os.environ.get("NO_COLOR"):
            return False
        if os.environ.get("FORCE_COLOR"):
            return True
        if os.environ.get("TERM", "").lower() in ("dumb", "unknown"):
            return False
        return None  # click's choice: colour on a terminal only

    def print(self, text: str, *, style: Literal["red", "dim"] | None = None) -> None:
        """``text`` and a newline on stderr, ``style`` ``"red"`` or ``"dim"`` on a terminal.

        Its control characters but newlines are shown escaped: what it says may quote what
        a container or a realm's user wrote (tar's complaints, a symbolic link's target, a
        cell's last line), and an escape sequence there would act on the reader's terminal
        (OSC 52 writes the clipboard, others set the title or clear the screen)."""
        shown = "\n".join(terminal_safe(line) for line in text.split("\n"))
        if style is not None:
            shown = click.style(shown, fg="red") if style == "red" else click.style(shown, dim=True)
        click.echo(shown, err=True, color=self._color())

    def status(self, text: str) -> Status:
        """A spinner with ``text`` on stderr, to ``start()``, ``update()`` and ``stop()``."""
        from rich.console import Console

        console = Console(stderr=True, highlight=False, soft_wrap=True)
        return console.status(text)


stderr = StderrLines()


class ManifestProblems(Exception):  # noqa: N818 - a list of problems, not one error
    """The manifests cannot be used; ``lines`` says why, one problem per line."""

    def __init__(self, lines: Sequence[str]) -> None:
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))


class Options(NamedTuple):
    """kukectl's own options (before the command), kept as the root context's ``obj``."""

    context: str | None
    server: str | None
    token: str | None
    ca_file: Path | None
    config_path: Path | None
    request_timeout: float


def error_line(message: str) -> None:
    stderr.print(f"error: {message}", style="red")


def warning_line(message: str) -> None:
    stderr.print(f"warning: {message}")


def fail(message: str, code: int = EXIT_SERVER) -> NoReturn:
    error_line(message)
    raise click.exceptions.Exit(code)


def print_text(text: str) -> None:
    """``text`` on stdout without its trailing newlines; nothing at all when empty."""
    if text:
        click.echo(text.rstrip("\n"))


EXIT_READER_GONE = 141
"""128 + SIGPIPE: how a program killed by writing to a closed pipe (kubectl) ends."""


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def stdout_reader_gone() -> bool:
    """Whether stdout is a pipe nobody reads any more (``| head`` has exited); stdout is then
    silenced. A broken pipe elsewhere (a socket) is not this, and is not hidden."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        gone = any(event & select.POLLERR for _, event in poller.poll(0))
    except (OSError, ValueError):  # no stdout, or one poll cannot watch
        return False
    if gone:
        _silence_stdout()
    return gone


def write_stdout(chunk: bytes) -> None:
    """``chunk`` on stdout as it is. A reader that went away (``kukectl logs web | head``)
    ends the command quietly, as kubectl (killed by SIGPIPE) ends, not as an "unexpected
    failure"."""
    try:
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        _silence_stdout()
        raise click.exceptions.Exit(EXIT_READER_GONE) from None


def _config(path: Path) -> KukectlConfig | None:
    """The config file; None when there is none (nothing to parse: pydantic and yaml, which
    read it, are not loaded)."""
    try:
        path.stat()
    except FileNotFoundError:
        return None
    except OSError:
        pass  # load_config names the problem
    return load_config(path)


def _connection(options: Options) -> Connection:
    path = options.config_path or default_config_path()
    config = _config(path)
    if config is not None:
        from .configfile import exposure_warnings

        for warning in exposure_warnings(path, config):
            warning_line(warning)
    return resolve_connection(
        config=config,
        context=options.context,
        server=options.server,
        token=options.token,
        ca_file=options.ca_file,
    )


_CUT = re.compile(r"\.\.\. \([0-9]+ more characters\)\Z")
"""How the server ends a cause it cut to its limit (``apiserver.status.clip``)."""


def api_error_text(exc: ApiRequestError) -> str:
    """The server's message, then the causes it does not say (each said once)."""
    text = exc.message

    def said(cause: StatusCause) -> bool:
        kept = _CUT.sub("", cause.message)  # a cut cause: the part the message may hold
        return (not cause.field or cause.field in text) and kept in text

    missing = [
        f"{c.field}: {c.message}" if c.field else c.message for c in exc.causes if not said(c)
    ]
    return text + ("; " + "; ".join(missing) if missing else "")


_SHAPE_ERRORS = (KeyError, TypeError, AttributeError, IndexError)
"""What reading a field of an answer that has another shape raises (``answer["items"]`` of a
list, ``.get`` of a number)."""


def run(ctx: click.Context, work: Callable[[ApiClient], Awaitable[T]]) -> T:
    """Run ``work`` with a connected client; turn every failure into a line and an exit code."""
    options: Options = ctx.find_root().obj
    clients: list[ApiClient] = []

    async def main() -> T:
        connection = _connection(options)
        async with ApiClient(
            server=connection.server,
            token=connection.token,
            ca_file=connection.ca_file,
            # 0 is no limit, as kubectl's --request-timeout=0 (asyncio.timeout(0) expires at once)
            timeout=options.request_timeout or None,
            pooled=False,  # a connection per request: aiohttp only for streams and watches
        ) as client:
            clients.append(client)
            return await work(client)

    try:
        return asyncio.run(main())
    except click.exceptions.Exit:
        raise
    except ApiRequestError as exc:
        fail(api_error_text(exc))
    except ServerUnreachable as exc:
        fail(str(exc))
    except (ConfigError, ServerAddressError) as exc:
        fail(str(exc), EXIT_USAGE)
    except ManifestProblems as exc:
        for line in exc.lines:
            error_line(line)
        raise click.exceptions.Exit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        raise click.exceptions.Exit(130) from None
    except BrokenPipeError as exc:
        # `kukectl delete cells --all | head -3`: the rest is nobody's, as kubectl's end
        if stdout_reader_gone():
            raise click.exceptions.Exit(EXIT_READER_GONE) from None
        fail(f"unexpected failure: {type(exc).__name__}: {exc}")
    except _SHAPE_ERRORS as exc:
        last = clients[0].last_answer if clients else None
        if last is None:
            fail(f"unexpected failure: {type(exc).__name__}: {exc}")
        # An answer of another shape than kukectl reads, found where a command reads it.
        request, raw, total = last
        fail(
            f"kukectl cannot read the server's answer to {request} "
            f"({type(exc).__name__}: {exc}): {shown(raw, total)}"
        )
    except Exception as exc:  # the promise: never a traceback
        fail(f"unexpected failure: {type(exc).__name__}: {exc}")
