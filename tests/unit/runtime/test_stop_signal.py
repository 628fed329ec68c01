"""An image's StopSignal as kukeon reads it, records it and sends it."""

from __future__ import annotations

import json
import signal

import pytest

from kukeon.runtime.containerd.oci import parse_config
from kukeon.runtime.containerd.stopsignal import (
    LABEL_STOP_SIGNAL,
    parse_stop_signal,
    stop_signal_label,
    stop_signal_of,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SIGQUIT", signal.SIGQUIT),
        ("QUIT", signal.SIGQUIT),
        ("sigint", signal.SIGINT),
        ("3", signal.SIGQUIT),
        (" SIGUSR1 ", signal.SIGUSR1),
        ("SIGNOPE", None),
        ("999", None),
        ("", None),
        ("SIG_DFL", None),
    ],
)
def test_names_numbers_and_nonsense(text: str, expected: signal.Signals | None) -> None:
    assert parse_stop_signal(text) == expected


def test_the_label_records_what_is_not_sigterm_and_falls_back_to_it() -> None:
    assert stop_signal_label("SIGINT") == {LABEL_STOP_SIGNAL: "SIGINT"}
    assert stop_signal_label("15") == {}
    assert stop_signal_label("bogus") == {}
    assert stop_signal_label("") == {}
    assert stop_signal_of({LABEL_STOP_SIGNAL: "SIGINT"}) == signal.SIGINT
    assert stop_signal_of({}) == signal.SIGTERM
    assert stop_signal_of({LABEL_STOP_SIGNAL: "garbage"}) == signal.SIGTERM


def test_the_image_config_carries_its_stop_signal() -> None:
    document = {
        "config": {"Cmd": ["postgres"], "StopSignal": "SIGINT"},
        "rootfs": {"type": "layers", "diff_ids": []},
    }
    assert parse_config(json.dumps(document).encode()).run.stop_signal == "SIGINT"
    del document["config"]["StopSignal"]
    assert parse_config(json.dumps(document).encode()).run.stop_signal == ""


def test_a_containers_own_stop_signal_is_checked_and_named() -> None:
    from pydantic import ValidationError

    from kukeon.api.container import ContainerSpec

    base = {"id": "a", "image": "busybox"}
    assert ContainerSpec.model_validate({**base, "stopSignal": "int"}).stop_signal == "SIGINT"
    assert ContainerSpec.model_validate({**base, "stopSignal": "3"}).stop_signal == "SIGQUIT"
    assert ContainerSpec.model_validate(base).stop_signal is None
    assert ContainerSpec.model_validate({**base, "stopSignal": ""}).stop_signal is None
    for bad in ("SIGNOPE", "0", "9999", "SIG_DFL"):
        with pytest.raises(ValidationError, match="is not a signal"):
            ContainerSpec.model_validate({**base, "stopSignal": bad})
