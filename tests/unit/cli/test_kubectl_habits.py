"""What a kubectl user types by habit gets an error that says what kukeon calls it:
``get pods`` listed kukeon's kinds only, and ``-n NAME`` was a bare "No such option"."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from kukeon.cli.main import _bool_flag_spelled, _short_bool_flag_spelled, cli


def _kukectl(*args: str) -> subprocess.CompletedProcess[str]:
    """kukectl in a process of its own, as a user runs it: main() writes the usage errors
    and exits (CliRunner runs the command, not main); no server or config is needed."""
    code = "from kukeon.cli.main import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "KUKEON_CONFIG": "/nonexistent/config.yaml"},
    )


@pytest.mark.parametrize(
    ("args", "ours"),
    [
        (["get", "pods"], "cells"),
        (["get", "po/web"], "cells"),
        (["describe", "deployment", "x"], "cellsets"),
        (["explain", "ns"], "realms"),
    ],
)
def test_a_kubectl_kind_names_kukeons(args: list[str], ours: str) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    kind = args[1].partition("/")[0]
    assert f"unknown kind '{kind}' (for kubectl's '{kind}': {ours}" in result.output


@pytest.mark.parametrize(
    ("option", "said"),
    [
        ("-n", "--realm R --space S --stack ST"),
        ("--namespace", "--realm R --space S --stack ST"),
        ("--all-namespaces", "-A lists across every realm"),
    ],
)
def test_namespace_says_where_objects_are(option: str, said: str) -> None:
    value = [] if option == "--all-namespaces" else ["prod"]  # a flag in kubectl
    done = _kukectl("get", "cells", option, *value)
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: No such option '{option}': kukeon has no namespaces")
    assert said in done.stderr
    assert "Did you mean" not in done.stderr  # click offered --space


@pytest.mark.parametrize("word", ["pod", "pods", "po"])
def test_top_pods_says_cells(word: str) -> None:
    """kubectl's most typed `top pod` was "No such command. Did you mean 'nodes'?"."""
    result = CliRunner().invoke(cli, ["top", word, "web"])
    assert result.exit_code == 2
    assert f"No such command '{word}': kubectl's pods are kukeon's cells (top cells)" in (
        result.output
    )
    assert "nodes" not in result.output


@pytest.mark.parametrize("args", [[], ["config"], ["rollout"]])
def test_a_group_alone_prints_its_help_as_kubectl(args: list[str]) -> None:
    """`kukectl` alone printed its whole help as one "error:" line on stderr, exit 2;
    kubectl (and docker) print the help on stdout and exit 0."""
    done = _kukectl(*args)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.startswith(f"Usage: kukectl {' '.join([*args, ''])}[OPTIONS] COMMAND")


def test_delete_force_says_what_kills_at_once() -> None:
    """`delete --force --grace-period=0`, kubectl's way to be rid of a pod now, was a bare
    "No such option '--force'"."""
    done = _kukectl("delete", "cell", "web", "--force", "--grace-period=0")
    assert done.returncode == 2
    assert done.stderr.startswith("error: No such option '--force': a cell's containers are")
    assert "--grace-period 0 kills them at once" in done.stderr


def test_run_detach_says_it_is_the_default() -> None:
    done = _kukectl("run", "-d", "x", "--image", "busybox")
    assert done.returncode == 2
    assert done.stderr.startswith("error: No such option '-d': kukectl run returns once")


@pytest.mark.parametrize(
    ("given", "stored"),
    [("Never", None), ("no", None), ("OnFailure", "on-failure"), ("Always", "always")],
)
def test_run_restart_takes_kubectl_and_docker_spellings(given: str, stored: str | None) -> None:
    """`run --restart=Never`, kubectl's habit, was refused: only 'never' was a choice."""
    args = ["run", "x", "--image", "busybox", f"--restart={given}", "--dry-run=client"]
    result = CliRunner().invoke(cli, [*args, "-o", "json"])
    assert result.exit_code == 0, result.output
    [container] = json.loads(result.stdout)["spec"]["containers"]
    assert container.get("restartPolicy", "never") == (stored or "never")


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["scale", "deployment", "pool", "--replicas", "1"],
            "for kubectl's 'deployment': cellsets",
        ),
        (["rollout", "status", "deploy/pool"], "for kubectl's 'deploy': cellsets"),
        (["logs", "pod", "web"], "'pod' is not a kind (for kubectl's 'pod': cells)"),
    ],
)
def test_one_object_commands_name_kukeons_kind(args: list[str], said: str) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert said in result.output


def _respelled(args: list[str]) -> list[str] | None:
    """What kukectl parses again after click refused ``args`` for a flag's value."""
    try:
        cli.main(args=args, prog_name="kukectl", standalone_mode=False)
    except click.BadOptionUsage as exc:
        return _bool_flag_spelled(args, exc)
    raise AssertionError(f"{args} parsed")


@pytest.mark.parametrize(
    ("args", "spelled"),
    [
        (["delete", "cell", "x", "--wait=false"], ["delete", "cell", "x", "--no-wait"]),
        (["delete", "cell", "x", "--wait=true"], ["delete", "cell", "x", "--wait"]),
        (["delete", "cell", "x", "--no-wait=false"], ["delete", "cell", "x", "--wait"]),
        (["get", "cells", "--show-labels=True"], ["get", "cells", "--show-labels"]),
        (["get", "cells", "--show-labels=0", "-A"], ["get", "cells", "-A"]),
        (
            ["label", "cell", "x", "a=b", "--overwrite=t"],
            ["label", "cell", "x", "a=b", "--overwrite"],
        ),
        # A group's subcommand: click raises its error with the group's context.
        (
            ["rollout", "status", "cellset/web", "--watch=false"],
            ["rollout", "status", "cellset/web", "--no-watch"],
        ),
    ],
)
def test_a_flag_given_kubectls_true_or_false_is_read_as_kubectl_reads_it(
    args: list[str], spelled: list[str]
) -> None:
    """kubectl's boolean flags take `=true|false` (`delete --wait=false`, a common habit);
    click's refused it: "Option '--wait' does not take a value", exit 2."""
    assert _respelled(args) == spelled


def test_a_flag_given_another_value_says_what_it_takes() -> None:
    result = _kukectl("get", "cells", "--show-labels=maybe")
    assert result.returncode == 2
    assert "'maybe' is not true or false (a flag: --show-labels" in result.stderr
    # read and run: the unreachable server's exit 1, not a usage error
    result = _kukectl("delete", "cell", "x", "--wait=false", "-s", "unix:///nonexistent.sock")
    assert result.returncode == 1, result.stderr
    assert "cannot reach the kukeon API" in result.stderr


@pytest.mark.parametrize(
    ("args", "spelled"),
    [
        (["get", "cells", "-A", "-w=true"], ["get", "cells", "-A", "-w"]),
        (["get", "cells", "-A", "-w=false"], ["get", "cells", "-A"]),
        (
            ["rollout", "status", "cellset/web", "-w=false"],
            ["rollout", "status", "cellset/web", "--no-watch"],
        ),
    ],
)
def test_a_short_flag_given_true_or_false_is_read_as_pflag_reads_it(
    args: list[str], spelled: list[str]
) -> None:
    """pflag takes `-w=false` as well; click read `-w` and then an option '-=' (exit 2)."""
    with pytest.raises(click.NoSuchOption) as refused:
        cli.main(args=args, prog_name="kukectl", standalone_mode=False)
    assert _short_bool_flag_spelled(args, refused.value) == spelled
