"""The tty wrapper, run for real with the host's shells in a temporary directory.

Every shell the host has among /bin/sh (dash on Debian), busybox sh and bash runs the
generated script exactly as a container would (`sh -c WRAPPER kukeon-tty COMMAND ARGS`),
with a state directory and log file under tmp_path instead of /run/kukeon/tty.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kukeon.api import ContainerTty
from kukeon.runtime.containerd import ttyinit
from kukeon.runtime.containerd.ttyinit import (
    CREATE_MARKER,
    SHELL,
    WRAPPER_NAME,
    prompt_environment,
    prompt_value,
    wrapped_args,
    wrapper_needed,
    wrapper_script,
)
from tests.fixtures.services import require_binary


def _shells() -> list[Any]:
    found: list[Any] = [pytest.param(["/bin/sh"], id="bin-sh")]
    busybox = shutil.which("busybox")
    if busybox:
        found.append(pytest.param([busybox, "sh"], id="busybox"))
    bash = shutil.which("bash")
    if bash:
        found.append(pytest.param([bash, "--posix"], id="bash-posix"))
    return found


@pytest.fixture(params=_shells())
def shell(request: pytest.FixtureRequest) -> list[str]:
    argv: list[str] = request.param
    return argv


QUIRKY = [
    "two words",
    "it's",
    'say "hi"',
    "$HOME and ${PATH} and $(echo no) and `echo no`",
    "line one\nline two",
    "",
    "back\\slash\\n",
    "*",
    "-n",
    "--",
    "tab\there",
    "trailing newline\n",
    "'",
    '"',
    "ünïcödé ✓",
    "%s %d %%",
]
ECHO_ARGV = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]


def tty(**fields: Any) -> ContainerTty:
    return ContainerTty.model_validate(fields)


class Run:
    def __init__(self, result: subprocess.CompletedProcess[str], log: Path | None) -> None:
        self.result = result
        self.log = log

    @property
    def code(self) -> int:
        return self.result.returncode

    @property
    def out(self) -> str:
        return self.result.stdout

    @property
    def err(self) -> str:
        return self.result.stderr

    def log_lines(self) -> list[str]:
        assert self.log is not None
        return self.log.read_text().splitlines() if self.log.exists() else []

    def argv(self) -> list[str]:
        last = self.out.strip().splitlines()[-1]
        decoded: list[str] = json.loads(last)
        return decoded


def run(
    shell: list[str],
    options: ContainerTty,
    state: Path,
    command: list[str] | None = None,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> Run:
    script = wrapper_script(options, state_dir=str(state))
    argv = [*shell, "-c", script, WRAPPER_NAME, *(command or ECHO_ARGV)]
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd or state,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **(env or {})},
        check=False,
    )
    return Run(result, Path(options.log_file) if options.log_file else None)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    directory = tmp_path / "state"
    directory.mkdir()
    return directory


# --- which containers are wrapped -------------------------------------------------------


def test_only_on_init_scripts_or_a_log_file_need_the_wrapper() -> None:
    assert not wrapper_needed(None)
    assert not wrapper_needed(tty())
    assert not wrapper_needed(tty(prompt="$ "))
    assert not wrapper_needed(tty(onInit=[{"runOn": "create"}, {"script": ""}]))
    assert wrapper_needed(tty(onInit=[{"script": "true"}]))
    assert wrapper_needed(tty(logFile="/tmp/w.log"))


def test_wrapped_args_pass_the_command_as_parameters() -> None:
    options = tty(onInit=[{"script": "echo 'x'"}])
    args = wrapped_args(["/bin/app", "a b", "$X"], options)
    assert args[:2] == [SHELL, "-c"]
    assert args[3:] == [WRAPPER_NAME, "/bin/app", "a b", "$X"]
    # the command is never part of the script's text
    assert "/bin/app" not in args[2]


# --- the command and its arguments --------------------------------------------------------


def test_quirky_arguments_reach_the_command_unchanged(shell: list[str], state: Path) -> None:
    options = tty(onInit=[{"script": "echo init-ran"}], logFile=str(state / "w.log"))
    result = run(shell, options, state, [*ECHO_ARGV, *QUIRKY])
    assert result.code == 0, result.err
    assert result.argv() == QUIRKY
    assert "init-ran" in result.out


def test_quirky_scripts_are_embedded_verbatim(shell: list[str], state: Path) -> None:
    scripts = [
        "printf '%s\\n' \"it's 'quoted' and \\\"double\\\"\"",
        "printf '%s\\n' '$HOME stays literal' \"and `echo ran` runs\"",
        "cat <<'EOF'\nheredoc line $NOT\n'single' \"double\"\nEOF",
        "# only a comment; then a trailing backslash\\",
        "x='a\nb'; printf '[%s]\\n' \"$x\"",
    ]
    options = tty(onInit=[{"script": s} for s in scripts])
    result = run(shell, options, state)
    assert result.code == 0, result.err
    assert "it's 'quoted' and \"double\"" in result.out
    assert "$HOME stays literal" in result.out
    assert "and ran runs" in result.out
    assert "heredoc line $NOT\n'single' \"double\"" in result.out
    assert "[a\nb]" in result.out
    assert result.argv() == []


def test_stages_run_in_order_before_the_command_and_their_exports_carry_over(
    shell: list[str], state: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work dir"
    work.mkdir()
    options = tty(
        onInit=[
            {"script": "echo one"},
            {"script": "export GREETING='hello there'; echo two"},
            {"script": f"cd '{work}' && echo three"},
        ]
    )
    command = [
        sys.executable,
        "-c",
        "import json, os; print(json.dumps([os.environ.get('GREETING'), os.getcwd()]))",
    ]
    result = run(shell, options, state, command)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[:3] == ["one", "two", "three"]
    assert json.loads(lines[3]) == ["hello there", str(work)]


def test_stages_do_not_see_the_command_as_their_parameters(shell: list[str], state: Path) -> None:
    options = tty(onInit=[{"script": 'echo "n=$# first=${1-unset}"'}])
    result = run(shell, options, state, [*ECHO_ARGV, "a", "b"])
    assert "n=0 first=unset" in result.out
    assert result.argv() == ["a", "b"]


def test_the_command_replaces_the_wrapper(shell: list[str], state: Path) -> None:
    options = tty(onInit=[{"script": "echo $$ > pid"}])
    command = [sys.executable, "-c", "import os; print(os.getpid())"]
    result = run(shell, options, state, command)
    assert result.code == 0, result.err
    assert (state / "pid").read_text().strip() == result.out.strip().splitlines()[-1]


def test_the_command_exit_status_is_the_containers(shell: list[str], state: Path) -> None:
    options = tty(onInit=[{"script": "true"}])
    result = run(shell, options, state, [sys.executable, "-c", "raise SystemExit(42)"])
    assert result.code == 42


# --- failures -----------------------------------------------------------------------------


def test_a_failing_stage_stops_the_start_with_its_status(shell: list[str], state: Path) -> None:
    log = state / "w.log"
    options = tty(
        onInit=[
            {"script": "echo first"},
            {"script": "echo failing; (exit 7)"},
            {"script": "echo never"},
        ],
        logFile=str(log),
    )
    result = run(shell, options, state)
    assert result.code == 7
    assert "first" in result.out
    assert "failing" in result.out
    assert "never" not in result.out
    assert "[" not in result.out  # the command did not run
    assert "tty.onInit[1] (runOn: start) failed with status 7" in result.err
    errors = [line for line in result.log_lines() if " error " in line]
    assert len(errors) == 1
    assert "onInit[1] (runOn: start) failed with status 7" in errors[0]


def test_exit_in_a_stage_ends_the_start(shell: list[str], state: Path) -> None:
    log = state / "w.log"
    options = tty(onInit=[{"script": "exit 5"}, {"script": "echo never"}], logFile=str(log))
    result = run(shell, options, state)
    assert result.code == 5
    assert "never" not in result.out
    assert "tty.onInit[0] ended the wrapper with status 5" in result.err
    assert any("onInit[0] ended the wrapper with status 5" in line for line in result.log_lines())


def test_a_syntax_error_is_a_failing_stage(shell: list[str], state: Path) -> None:
    options = tty(onInit=[{"script": "if then fi ("}, {"script": "echo never"}])
    result = run(shell, options, state)
    assert result.code != 0
    assert "never" not in result.out
    assert "tty.onInit[0]" in result.err


def test_a_missing_command_fails_like_sh(shell: list[str], state: Path) -> None:
    options = tty(onInit=[{"script": "true"}])
    result = run(shell, options, state, ["/nonexistent/program", "x"])
    assert result.code in (126, 127)


# --- runOn ---------------------------------------------------------------------------------


def test_create_stages_run_once_start_stages_every_time(shell: list[str], state: Path) -> None:
    options = tty(
        onInit=[
            {"script": "echo create-a >> trace", "runOn": "create"},
            {"script": "echo start-b >> trace"},
            {"script": "echo create-c >> trace", "runOn": "create"},
            {"script": "echo start-d >> trace", "runOn": "start"},
        ],
        logFile=str(state / "w.log"),
    )
    for _ in range(3):
        result = run(shell, options, state)
        assert result.code == 0, result.err
    trace = (state / "trace").read_text().split()
    assert trace == [
        "create-a",
        "start-b",
        "create-c",
        "start-d",
        "start-b",
        "start-d",
        "start-b",
        "start-d",
    ]
    assert (state / CREATE_MARKER).exists()
    skipped = [line for line in result.log_lines() if "skipped" in line]
    assert len(skipped) == 4  # two create stages, at the second and the third start
    # a new container (kukeond removes the marker): the create stages run again
    (state / CREATE_MARKER).unlink()
    run(shell, options, state)
    assert (state / "trace").read_text().split()[-4:] == [
        "create-a",
        "start-b",
        "create-c",
        "start-d",
    ]


def test_a_failing_create_stage_runs_again_at_the_next_start(shell: list[str], state: Path) -> None:
    options = tty(
        onInit=[
            {
                "script": "echo try >> trace; [ -e ok ] || { touch ok; exit 3; }",
                "runOn": "create",
            }
        ]
    )
    assert run(shell, options, state).code == 3
    assert not (state / CREATE_MARKER).exists()
    assert run(shell, options, state).code == 0
    assert run(shell, options, state).code == 0
    assert (state / "trace").read_text().split() == ["try", "try"]


def test_an_unwritable_state_directory_is_reported_not_fatal(
    shell: list[str], state: Path, tmp_path: Path
) -> None:
    options = tty(onInit=[{"script": "echo c", "runOn": "create"}])
    script = wrapper_script(options, state_dir=str(tmp_path / "missing" / "dir"))
    result = subprocess.run(
        [*shell, "-c", script, WRAPPER_NAME, *ECHO_ARGV],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0
    assert "runOn create stages will run again" in result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == []


# --- the log file ----------------------------------------------------------------------------


def test_the_log_says_what_ran_with_status_and_timing(shell: list[str], state: Path) -> None:
    log = state / "logs" / "deeper" / "w.log"  # its directory is created
    options = tty(onInit=[{"script": "sleep 0.2"}], logFile=str(log))
    result = run(shell, options, state, [*ECHO_ARGV, "x y"])
    assert result.code == 0, result.err
    lines = result.log_lines()
    fields = [line.split(" ", 2) for line in lines]
    assert all(level in ("info", "debug", "warn", "error") for _, level, _ in fields)
    messages = [message for _, _, message in fields]
    assert messages[0].startswith("start: ")
    assert "onInit[0] (runOn: start) starting" in messages
    done = next(m for m in messages if m.startswith("onInit[0] (runOn: start) exited 0 in "))
    seconds = float(done.rsplit(" ", 1)[1].removesuffix("s"))
    assert 0.1 <= seconds < 10
    assert any(m.startswith("onInit done in ") and m.endswith(" x y") for m in messages)
    assert not any(level == "debug" for _, level, _ in fields)  # default level: info
    when = fields[0][0]
    assert when == "-" or (len(when) == 20 and when.endswith("Z"))


def test_log_levels_filter(shell: list[str], state: Path) -> None:
    def levels(level: str) -> set[str]:
        log = state / f"{level}.log"
        options = tty(
            onInit=[{"script": "echo ok"}, {"script": "exit 4"}],
            logFile=str(log),
            logLevel=level,
        )
        run(shell, options, state)
        return {line.split(" ", 2)[1] for line in log.read_text().splitlines()}

    assert levels("debug") == {"debug", "info", "error"}
    assert levels("info") == {"info", "error"}
    assert levels("warn") == {"error"}
    assert levels("error") == {"error"}


def test_debug_logs_scripts_and_each_argument(shell: list[str], state: Path) -> None:
    log = state / "w.log"
    options = tty(onInit=[{"script": "echo 'scripted'"}], logFile=str(log), logLevel="debug")
    run(shell, options, state, [*ECHO_ARGV, "a b"])
    text = log.read_text()
    assert "onInit[0] script: echo 'scripted'" in text
    assert "argv[3]: a b" in text


def test_an_unwritable_log_file_is_reported_once_and_the_command_runs(
    shell: list[str], state: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    options = tty(onInit=[{"script": "echo ran"}], logFile=str(blocker / "w.log"))
    result = run(shell, options, state, [*ECHO_ARGV, "z"])
    assert result.code == 0
    assert result.err.count("cannot write tty.logFile") == 1
    assert result.argv() == ["z"]


def test_a_log_file_alone_wraps_and_logs_the_exec(shell: list[str], state: Path) -> None:
    log = state / "w.log"
    result = run(shell, tty(logFile=str(log)), state, [*ECHO_ARGV, "q"])
    assert result.argv() == ["q"]
    assert "0 onInit stages" in log.read_text()


# --- the prompt ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "ps1"),
    [
        ("dev> ", "dev> "),
        ("\\u@\\h:\\w\\$ ", "\\u@\\h:\\w\\$ "),
        ('"[dev] \\\\u@\\\\h:\\\\w$ "', "[dev] \\u@\\h:\\w$ "),
        ('"[sbsh-$SBSH_TERM_ID] \\"x\\" "', '[sbsh-$SBSH_TERM_ID] "x" '),
        ("'[dev] \\w $ '", "[dev] \\w $ "),
        ('"a" and "b"', '"a" and "b"'),  # not one quoted word: as written
        ("'it''s'", "'it''s'"),
        ('"', '"'),
    ],
)
def test_prompt_value(written: str, ps1: str) -> None:
    assert prompt_value(written) == ps1


def first_prompt(argv: list[str], env: dict[str, str], expected: str) -> str:
    """What an interactive shell on a pseudo-terminal prints until ``expected`` (or 10 s)."""
    master, slave = os.openpty()
    process = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, env=env, cwd="/", start_new_session=True
    )
    os.close(slave)
    output = b""
    deadline = time.monotonic() + 10
    try:
        while expected.encode() not in output and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    finally:
        process.kill()
        process.wait()
        os.close(master)
    return output.decode(errors="replace")


def test_busybox_sh_shows_the_prompt() -> None:
    busybox = require_binary("busybox", "busybox-static", "/bin")
    env = {"PATH": "/usr/bin:/bin", "TERM": "dumb", **prompt_environment("kk-test:\\w> ", {})}
    assert "kk-test:/> " in first_prompt([busybox, "sh", "-i"], env, "kk-test:/> ")


def test_bash_shows_the_prompt_over_its_startup_files(tmp_path: Path) -> None:
    bash = require_binary("bash", "bash")
    rc = tmp_path / "bashrc"
    rc.write_text("PS1='from-startup-file$ '\n")  # as Debian's /etc/bash.bashrc does
    argv = [bash, "--noprofile", "--rcfile", str(rc), "-i"]
    env = {"PATH": "/usr/bin:/bin", "TERM": "dumb", **prompt_environment("kk-bash> ", {})}
    output = first_prompt(argv, env, "kk-bash> ")
    assert "kk-bash> " in output
    assert "from-startup-file" not in output
    # a PROMPT_COMMAND of the container's own is left alone
    assert prompt_environment("p> ", {"PROMPT_COMMAND": "history -a"}) == {"PS1": "p> "}


def test_shellcheck_finds_nothing_in_the_wrapper(tmp_path: Path) -> None:
    shellcheck = require_binary("shellcheck", "shellcheck")
    options = tty(
        onInit=[{"script": "echo a", "runOn": "create"}, {"script": "cd /tmp"}],
        logFile="/var/log/w.log",
    )
    script = tmp_path / "wrapper.sh"
    script.write_text(wrapper_script(options))
    result = subprocess.run(
        [shellcheck, "--shell=sh", str(script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout


def test_the_wrapper_fits_in_one_argument() -> None:
    script = wrapper_script(tty(onInit=[{"script": "true"}], logFile="/l"))
    assert len(script.encode()) < ttyinit.MAX_WRAPPER_BYTES
