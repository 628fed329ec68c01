"""kubectl's JSONPath subset: paths, templates with range, custom columns and sort keys."""

from __future__ import annotations

from typing import Any

import pytest

from kukeon.cli.jsonpath import (
    JsonPathError,
    parse_columns,
    render_template,
    sort_key,
    values,
)

LIST: dict[str, Any] = {
    "kind": "List",
    "items": [
        {
            "metadata": {"name": "web", "labels": {"app.kubernetes.io/name": "w"}},
            "status": {"state": "Ready", "containers": [{"pid": 12}, {"pid": 13}]},
        },
        {"metadata": {"name": "job"}, "status": {"state": "Exited", "containers": []}},
    ],
}


def test_paths_reach_fields_indexes_and_every_element() -> None:
    assert values(LIST, ".items[*].metadata.name") == ["web", "job"]
    assert values(LIST, "$.items[0].status.containers[-1].pid") == [13]
    assert values(LIST, ".items[0].metadata.labels.app\\.kubernetes\\.io/name") == ["w"]
    assert values(LIST, ".items[1].status.containers[0].pid") == []
    assert values(LIST, ".items[5]") == []


def test_templates_as_kubectl_prints_them() -> None:
    assert render_template("{.items[*].metadata.name}", LIST) == "web job"
    ranged = '{range .items[*]}{.metadata.name}{"\\t"}{.status.state}{"\\n"}{end}'
    assert render_template(ranged, LIST) == "web\tReady\njob\tExited\n"
    assert render_template("pids: {.items[0].status.containers[*].pid}", LIST) == "pids: 12 13"
    assert render_template("{.items[0].status}", LIST).startswith('{"state":"Ready"')
    assert render_template('{"{"}{.items[0].metadata.name}}', LIST) == "{web}"


@pytest.mark.parametrize(
    "template",
    [
        "{.items[0,1]}",
        "{.items[?(@.x==1 && @.y==2)]}",
        "{.items[?(@.x==one)]}",
        "{.items[::0]}",
        "{.items[?(@.x==1]}",
        "{range .items[*]}{.a}",
        "{.a}{end}",
        "{.items[0",  # unclosed: was printed as text
        "{.a} and {.b",
    ],
)
def test_what_is_not_supported_is_an_error_not_silence(template: str) -> None:
    with pytest.raises(JsonPathError):
        render_template(template, LIST)


def test_custom_columns_and_sort_keys() -> None:
    assert parse_columns("NAME:.metadata.name,PIDS:{.status.containers[*].pid}") == [
        ("NAME", ".metadata.name"),
        ("PIDS", ".status.containers[*].pid"),
    ]
    with pytest.raises(JsonPathError):
        parse_columns("NAME")
    by_name = sorted(LIST["items"], key=sort_key(".metadata.name"))
    assert [i["metadata"]["name"] for i in by_name] == ["job", "web"]
    by_pid = sorted(LIST["items"], key=sort_key("{.status.containers[0].pid}"))
    assert [i["metadata"]["name"] for i in by_pid] == ["web", "job"]  # absent sorts last


def test_filters_and_slices_as_kubectls() -> None:
    """kubectl reads `[?(...)]` and `[a:b]`; they were refused ('filters and slices'), so
    `{.items[?(@.status.state=="Ready")].metadata.name}` had no kukectl spelling."""
    assert values(LIST, '.items[?(@.status.state=="Ready")].metadata.name') == ["web"]
    assert values(LIST, ".items[?(@.status.state!='Ready')].metadata.name") == ["job"]
    assert values(LIST, ".items[*].status.containers[?(@.pid>12)].pid") == [13]
    assert values(LIST, ".items[*].status.containers[?(@.pid<=12.5)].pid") == [12]
    assert values(LIST, ".items[?(@.metadata.labels)].metadata.name") == ["web"]
    assert values(LIST, ".items[?(@.status.containers[0].pid==13)]") == []
    assert values(LIST, ".items[?(@.status.state==12)]") == []  # text is never a number
    assert values(LIST, '.items[?(@.metadata.name=="a]b)")]') == []
    labelled = '.items[?(@.metadata.labels.app\\.kubernetes\\.io/name=="w")].metadata.name'
    assert values(LIST, labelled) == ["web"]
    assert values(LIST, ".items[0:1].metadata.name") == ["web"]
    assert values(LIST, ".items[-1:].metadata.name") == ["job"]
    assert values(LIST, ".items[::-1].metadata.name") == ["job", "web"]
    ranged = '{range .items[?(@.status.containers[0])]}{.metadata.name}{"\\n"}{end}'
    assert render_template(ranged, LIST) == "web\n"
    by_ready = sort_key(".status.containers[?(@.pid==13)].pid")
    assert sorted(LIST["items"], key=by_ready)[0]["metadata"]["name"] == "web"


def test_recursive_descent_as_kubectls() -> None:
    """`..KEY` is every KEY at any depth (kubectl's recursive descent); it was read as
    `.KEY` of the root, so `{..name}` printed nothing, silently."""
    assert values(LIST, "..name") == ["web", "job"]
    assert values(LIST, "$..pid") == [12, 13]
    assert values(LIST, ".items[0]..pid") == [12, 13]
    assert values(LIST, "..containers[0].pid") == [12]
    assert values(LIST, "..state") == ["Ready", "Exited"]
    assert values(LIST, "..nothing") == []
    assert render_template("{..name}", LIST) == "web job"
    assert values({"a": 1}, "..a") == [1]
    assert values("text", "..a") == []
