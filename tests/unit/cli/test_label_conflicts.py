"""A key both set and removed in one ``label``, ``annotate`` or ``set env`` is refused, as
kubectl refuses it ("can not both modify and remove a label in the same command"): the
later word silently won, so ``label cell c1 a=b a-`` removed ``a`` and said "labeled"."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from kukeon.cli.main import cli
from kukeon.cli.metadata import change_word, split_changes
from kukeon.cli.runner import EXIT_USAGE

NOWHERE = ["--server", "unix:///nonexistent/kukeond.sock"]


@pytest.mark.parametrize(
    ("args", "noun"),
    [
        (["label", "cell", "c1", "a=b", "a-"], "label 'a'"),
        (["label", "cell/c1", "a-", "a=b"], "label 'a'"),
        (["annotate", "cell", "c1", "a=b", "a-"], "annotation 'a'"),
        (["annotate", "cells", "--all", "x=1", "y=2", "y-", "x-"], "annotation 'x', 'y'"),
        (["set", "env", "cell/c1", "A=1", "A-"], "variable 'A'"),
    ],
)
def test_a_key_set_and_removed_is_a_usage_error(args: list[str], noun: str) -> None:
    # Nothing is sent: the server is unreachable, which would be exit 1.
    result = CliRunner().invoke(cli, [*NOWHERE, *args])
    assert result.exit_code == EXIT_USAGE, result.output
    assert f"can not both set and remove {noun} in the same command" in result.output


def test_sets_and_removes_of_other_keys_go_together() -> None:
    names, changes = split_changes(["c1", "c2", "a=b", "b-", "a=c", "b-"])
    assert names == ["c1", "c2"]
    assert changes == {"a": "c", "b": None}  # a key set twice: the last value, as kubectl


@pytest.mark.parametrize(
    ("old", "new", "said"),
    [
        ({}, {"a": "1"}, "labeled"),
        ({"a": "1"}, {"a": "2"}, "labeled"),
        ({"a": "1"}, {}, "unlabeled"),
        ({"a": "1"}, {"b": "1"}, "label(s) changed"),
        ({"a": "1"}, {"a": "1"}, "not labeled"),
    ],
)
def test_a_label_change_is_said_as_kubectl_says_it(
    old: dict[str, str], new: dict[str, str], said: str
) -> None:
    assert change_word("label", old, new) == said
    assert change_word("annotate", old, new) == "annotated"
