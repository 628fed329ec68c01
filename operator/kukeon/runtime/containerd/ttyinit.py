"""What `tty.prompt`, `tty.onInit` and `tty.logFile` of an attachable container become.

kukeon's upstream runs attachable containers under its own terminal supervisor binary. Here
images are arbitrary and nothing is added to them, so the options are built from what a
container already has:

- ``prompt`` is the TTY shell's ``PS1``, set in the process environment (busybox ``sh``,
  dash and bash all take an exported ``PS1`` for an interactive shell), with a one-shot
  ``PROMPT_COMMAND`` for bash, whose startup files may set their own. The upstream
  spelling, one shell-quoted word such as ``'"[dev] \\w $ "'``, has its quotes removed as
  ``sh`` would.
- ``onInit`` and ``logFile`` need something to run before the command: the process becomes
  ``/bin/sh -c WRAPPER kukeon-tty COMMAND ARGS...``. The wrapper is a short POSIX script
  generated here; the command and its arguments reach it as positional parameters, never
  through the script's text, so no argument can be misquoted, and the scripts are embedded
  in single quotes (the only quoting without exceptions). It runs the stages in order in
  the TTY (their output is the container's log, as the command's is), then
  ``exec "$@"``: the command replaces the wrapper, keeps its PID, its TTY and its
  environment, including what the stages exported and the directory they moved to.

A stage runs in the wrapper's shell, as if typed at its prompt: ``export`` and ``cd``
carry over to the command, ``exit N`` ends the start. The first stage that fails (non-zero
status, or ``exit``) stops the start: the wrapper writes why on the TTY and in the log
file and exits with the stage's status, the command never runs, and the container's
restart policy decides what happens next (the next start runs the stages again). This is
the reading of the upstream rule "if one fails, subsequent commands may not run" that
never starts a command on a half-prepared environment.

``runOn: create`` stages run at the first start of a container created with this spec: the
wrapper writes a marker in ``/run/kukeon/tty`` once the last of them succeeded, and skips
them while the marker is there. That directory is bind-mounted from the cell's state
directory on the host (``tty/<container>/run``), so the marker survives task restarts,
``kukectl restart`` and a read-only root filesystem; kukeond removes it when the container's
spec changes (the container is then re-created), and it goes with the cell.

The wrapper's own log (``logFile``, filtered by ``logLevel``) says what it ran, each
stage's exit status and duration (from ``/proc/uptime``, no binary needed), and the
command it exec'd; lines are ``<UTC time> <level> <message>`` (the time is ``-`` when the
image has no ``date``). A log file that cannot be written is reported once on the TTY and
then skipped: logging never stops a container.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Final

from kukeon.api import ContainerTty, TtyStage

SHELL: Final = "/bin/sh"
"""The shell the wrapper needs in the image."""
WRAPPER_NAME: Final = "kukeon-tty"
"""``$0`` of the wrapper (what ``ps`` shows until the command replaces it)."""
STATE_MOUNT: Final = "/run/kukeon/tty"
"""Where the container sees its tty state directory (create marker; room for a log file)."""
CREATE_MARKER: Final = "onInit-create.done"
"""The file the wrapper writes in the state directory once the create stages succeeded."""
LOG_LEVELS: Final = {"debug": 0, "info": 1, "warn": 2, "error": 3}
DEFAULT_LOG_LEVEL: Final = "info"
MAX_WRAPPER_BYTES: Final = 120 * 1024
"""Linux refuses a single argument longer than 128 KiB (MAX_ARG_STRLEN) at exec."""


def active_stages(tty: ContainerTty | None) -> list[tuple[int, TtyStage]]:
    """The stages that have a script, with their index in ``onInit``."""
    if tty is None:
        return []
    return [(index, stage) for index, stage in enumerate(tty.on_init) if stage.script]


def wrapper_needed(tty: ContainerTty | None) -> bool:
    """Whether the command runs under the wrapper (an onInit script or a log file)."""
    return tty is not None and (tty.log_file is not None or bool(active_stages(tty)))


def wrapper_field(tty: ContainerTty) -> str:
    """The field a wrapper problem is reported against (what made the wrapper needed)."""
    return "tty.onInit" if active_stages(tty) else "tty.logFile"


_DOUBLE_QUOTED_ESCAPES: Final = re.compile(r"\\([\\\"$`\n])")


def prompt_value(prompt: str) -> str:
    """``PS1`` for ``tty.prompt``: as written, or unquoted when it is one quoted shell word.

    kukeon's upstream passes its prompt to the shell as a shell word
    (``prompt: '"[dev] \\w $ "'``); a value wholly inside one pair of double or single
    quotes is unquoted as ``sh`` would (in double quotes ``\\\\``, ``\\"``, ``\\$`` and
    ``\\``` lose their backslash; ``$VAR`` is left for the shell to expand at each prompt).
    """
    if len(prompt) >= 2 and prompt[0] == prompt[-1] == "'" and "'" not in prompt[1:-1]:
        return prompt[1:-1]
    if len(prompt) >= 2 and prompt[0] == prompt[-1] == '"':
        inner = prompt[1:-1]
        # One word only: an unescaped quote inside would end it.
        if re.search(r'(?<!\\)(?:\\\\)*"', inner) is None:
            return _DOUBLE_QUOTED_ESCAPES.sub(lambda m: "" if m[1] == "\n" else m[1], inner)
    return prompt


def prompt_environment(prompt: str, environment: Mapping[str, str]) -> dict[str, str]:
    """The variables that make ``prompt`` the TTY shell's prompt.

    ``PS1``, which busybox ``sh`` and dash show as it is. bash reads its startup files
    after the environment, and Debian's ``/etc/bash.bashrc`` sets its own ``PS1``; so,
    unless the container sets one itself, a one-shot ``PROMPT_COMMAND`` (run by bash
    before its first prompt, ignored by other shells) sets ``PS1`` again and unsets itself.
    """
    ps1 = prompt_value(prompt)
    found = {"PS1": ps1}
    if "PROMPT_COMMAND" not in environment:
        found["PROMPT_COMMAND"] = f"PS1={_quote(ps1)}; unset PROMPT_COMMAND"
    return found


def _quote(text: str) -> str:
    # shlex.quote gives POSIX single quotes ('...' with ' as '"'"'), safe for any text,
    # newlines included.
    return shlex.quote(text)


# The fixed part of the wrapper. Everything is a function or a `_kk_` variable so the
# stages (which run in this shell) are unlikely to collide with it; `printf` and `read`
# are regular built-ins, so a failed redirection returns an error instead of ending sh.
_PRELUDE: Final = r"""
_kk_date=
command -v date >/dev/null 2>&1 && _kk_date=1
_kk_log() {
	[ -n "$_kk_file" ] && [ "$1" -ge "$_kk_level" ] || return 0
	case $1 in
	0) _kk_name=debug ;;
	1) _kk_name=info ;;
	2) _kk_name=warn ;;
	*) _kk_name=error ;;
	esac
	shift
	_kk_when=-
	if [ -n "$_kk_date" ]; then
		_kk_when=$(date -u +%Y-%m-%dT%H:%M:%SZ 2>/dev/null) || _kk_when=-
	fi
	if ! printf '%s %s %s\n' "$_kk_when" "$_kk_name" "$*" 2>/dev/null >>"$_kk_file"; then
		printf 'kukeon-tty: cannot write tty.logFile %s; not logging\n' "$_kk_file" >&2
		_kk_file=
	fi
}
_kk_say() {
	printf 'kukeon-tty: %s\n' "$*" >&2
}
_kk_now() {
	_kk_cs=
	if read -r _kk_up _kk_idle 2>/dev/null </proc/uptime; then
		case $_kk_up in
		*.[0-9][0-9]) _kk_cs=$(( ${_kk_up%.*} * 100 + 1${_kk_up#*.} - 100 )) ;;
		esac
	fi
}
_kk_since() {
	_kk_now
	if [ -n "$1" ] && [ -n "$_kk_cs" ]; then
		_kk_d=$(( _kk_cs - $1 ))
		_kk_took=$(( _kk_d / 100 )).$(( _kk_d / 10 % 10 ))$(( _kk_d % 10 ))s
	else
		_kk_took='?'
	fi
}
_kk_eval() {
	command eval "$_kk_script"
}
_kk_gone() {
	if [ "$_kk_at" = - ]; then
		_kk_what="the wrapper ended with status $1"
	else
		_kk_what="tty.onInit[$_kk_at] ended the wrapper with status $1"
	fi
	_kk_log 3 "$_kk_what; the command was not started"
	_kk_say "$_kk_what; the command was not started"
}
_kk_run() {
	_kk_at=$1
	if [ "$2" = create ] && [ -z "$_kk_fresh" ]; then
		_kk_log 1 "onInit[$1] (runOn: create) skipped: done at an earlier start of this container"
		return 0
	fi
	_kk_log 1 "onInit[$1] (runOn: $2) starting"
	_kk_log 0 "onInit[$1] script: $_kk_script"
	_kk_now
	_kk_begun=$_kk_cs
	_kk_eval
	_kk_status=$?
	_kk_since "$_kk_begun"
	if [ "$_kk_status" -ne 0 ]; then
		trap - EXIT
		_kk_what="onInit[$1] (runOn: $2) failed with status $_kk_status"
		_kk_log 3 "$_kk_what after $_kk_took; the command was not started"
		_kk_say "tty.$_kk_what; the command was not started"
		exit "$_kk_status"
	fi
	_kk_log 1 "onInit[$1] (runOn: $2) exited 0 in $_kk_took"
	_kk_at=-
}
_kk_created() {
	[ -n "$_kk_fresh" ] || return 0
	if printf 'done\n' 2>/dev/null >"$_kk_marker"; then
		_kk_log 0 "create stages done; marker $_kk_marker written"
	else
		_kk_log 2 "cannot write $_kk_marker: runOn create stages will run again at the next start"
		_kk_say "cannot write $_kk_marker: runOn create stages will run again at the next start"
	fi
}
if [ -n "$_kk_file" ]; then
	_kk_dir=${_kk_file%/*}
	if [ -n "$_kk_dir" ] && [ ! -d "$_kk_dir" ]; then
		mkdir -p "$_kk_dir" 2>/dev/null || :
	fi
fi
_kk_at=-
trap '_kk_gone $?' EXIT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 130' INT
_kk_now
_kk_started=$_kk_cs
_kk_log 1 "start: $# command words, $_kk_count onInit stages"
"""

_EPILOGUE: Final = r"""
_kk_since "$_kk_started"
_kk_log 1 "onInit done in $_kk_took; exec: $*"
_kk_n=0
for _kk_arg in "$@"; do
	_kk_log 0 "argv[$_kk_n]: $_kk_arg"
	_kk_n=$(( _kk_n + 1 ))
done
trap - EXIT TERM HUP INT
exec "$@"
"""


def wrapper_script(tty: ContainerTty, *, state_dir: str = STATE_MOUNT) -> str:
    """The ``sh -c`` text that runs ``tty``'s stages, logs, then execs ``"$@"``."""
    stages = active_stages(tty)
    level = LOG_LEVELS[tty.log_level or DEFAULT_LOG_LEVEL]
    creates = [index for index, stage in stages if stage.run_on == "create"]
    marker = f"{state_dir.rstrip('/')}/{CREATE_MARKER}"
    lines = [
        "# kukeon tty wrapper, generated by kukeond: tty.onInit and tty.logFile, then",
        '# exec "$@" (the container\'s command and arguments, passed as parameters).',
        f"_kk_file={_quote(tty.log_file or '')}",
        f"_kk_level={level}",
        f"_kk_count={len(stages)}",
        f"_kk_marker={_quote(marker)}",
    ]
    body = [_PRELUDE.strip("\n")]
    if creates:
        body.append(
            "\n".join(
                (
                    "_kk_fresh=1",
                    'if [ -e "$_kk_marker" ]; then',
                    "\t_kk_fresh=",
                    "fi",
                )
            )
        )
    for index, stage in stages:
        assert stage.script is not None  # active_stages keeps only stages with a script
        run_on = stage.run_on or "start"
        body.append(f"_kk_script={_quote(stage.script)}\n_kk_run {index} {run_on}")
        if creates and index == creates[-1]:
            body.append("_kk_created")
    body.append(_EPILOGUE.strip("\n"))
    return "\n".join([*lines, *body]) + "\n"


def wrapped_args(args: Sequence[str], tty: ContainerTty) -> list[str]:
    """The process args that run ``args`` under the wrapper."""
    return [SHELL, "-c", wrapper_script(tty), WRAPPER_NAME, *args]
