"""An image's StopSignal as kukeon reads it, records it and sends it."""

from __future__ import annotations

import json
import signal

import pytest

from kukeon.api.signals import signal_name
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
        # docker's real-time names: systemd images stop on SIGRTMIN+3 (kindest/node's does).
        ("SIGRTMIN+3", signal.SIGRTMIN + 3),
        ("rtmin", signal.SIGRTMIN),
        ("SIGRTMAX-1", signal.SIGRTMAX - 1),
        ("RTMAX", signal.SIGRTMAX),
        ("37", signal.SIGRTMIN + 3),
        ("32", 32),
        ("SIGRTMIN-1", None),
        ("SIGRTMAX+1", None),
        ("SIGRTMIN+31", None),
        ("0", None),
        ("65", None),
    ],
)
def test_names_numbers_and_nonsense(text: str, expected: int | None) -> None:
    assert parse_stop_signal(text) == expected


@pytest.mark.parametrize(
    ("number", "name"),
    [
        (3, "SIGQUIT"),
        (34, "SIGRTMIN"),
        (37, "SIGRTMIN+3"),
        (49, "SIGRTMIN+15"),
        (50, "SIGRTMAX-14"),
        (63, "SIGRTMAX-1"),
        (64, "SIGRTMAX"),
        (32, "32"),
    ],
)
def test_a_signal_is_named_as_docker_names_it(number: int, name: str) -> None:
    assert signal_name(number) == name
    assert parse_stop_signal(name) == number


def test_the_label_records_what_is_not_sigterm_and_falls_back_to_it() -> None:
    assert stop_signal_label("SIGINT") == {LABEL_STOP_SIGNAL: "SIGINT"}
    assert stop_signal_label("15") == {}
    assert stop_signal_label("bogus") == {}
    assert stop_signal_label("") == {}
    assert stop_signal_of({LABEL_STOP_SIGNAL: "SIGINT"}) == signal.SIGINT
    assert stop_signal_of({}) == signal.SIGTERM
    assert stop_signal_of({LABEL_STOP_SIGNAL: "garbage"}) == signal.SIGTERM
    assert stop_signal_label("SIGRTMIN+3") == {LABEL_STOP_SIGNAL: "SIGRTMIN+3"}
    assert stop_signal_of({LABEL_STOP_SIGNAL: "SIGRTMIN+3"}) == signal.SIGRTMIN + 3


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
    assert ContainerSpec.model_validate({**base, "stopSignal": "rtmin+3"}).stop_signal == (
        "SIGRTMIN+3"
    )
    assert ContainerSpec.model_validate({**base, "stopSignal": "37"}).stop_signal == "SIGRTMIN+3"
    assert ContainerSpec.model_validate(base).stop_signal is None
    assert ContainerSpec.model_validate({**base, "stopSignal": ""}).stop_signal is None
    for bad in ("SIGNOPE", "0", "9999", "SIG_DFL"):
        with pytest.raises(ValidationError, match="is not a signal"):
            ContainerSpec.model_validate({**base, "stopSignal": bad})
