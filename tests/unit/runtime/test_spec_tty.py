"""build_runtime_spec for tty.prompt/onInit/logFile: what changes, and only when they are set."""

from __future__ import annotations

from typing import Any

import pytest

from kukeon.controllers.cellstate import spec_digest
from kukeon.runtime.containerd.spec import RuntimeSpecError
from kukeon.runtime.containerd.ttyinit import SHELL, STATE_MOUNT, WRAPPER_NAME
from tests.unit.runtime.test_spec import build, env_of, make_container, mounts_by_destination

STATE = "/var/lib/kukeon/cells/r1/s1/st1/cell1/tty/web/run"


def attachable(**fields: Any) -> Any:
    return make_container(attachable=True, command="sh", args=["-l"], **fields)


def test_containers_without_tty_options_get_the_same_spec_as_before() -> None:
    # What an attachable container without options got before tty options existed.
    bare = build(attachable(), terminal=True)
    options: list[dict[str, object] | None] = [
        None,
        {},
        {"onInit": []},
        {"onInit": [{"runOn": "create"}]},
        {"prompt": ""},
    ]
    for tty in options:
        fields = {} if tty is None else {"tty": tty}
        spec = build(
            attachable(**fields), terminal=True, tty_state_dir=STATE, image_has_shell=False
        )
        assert spec == bare
        assert spec_digest(spec, image="i") == spec_digest(bare, image="i")
    assert bare["process"]["args"] == ["sh", "-l"]
    assert "PS1" not in env_of(bare)
    assert STATE_MOUNT not in mounts_by_destination(bare)


def test_the_prompt_is_ps1_and_needs_no_wrapper() -> None:
    spec = build(
        attachable(tty={"prompt": '"[dev] \\\\w $ "'}, env=["PS1=ignored"]),
        terminal=True,
        tty_state_dir=STATE,
        image_has_shell=False,  # no shell needed for a prompt alone
    )
    assert env_of(spec)["PS1"] == "[dev] \\w $ "
    assert env_of(spec)["PROMPT_COMMAND"] == "PS1='[dev] \\w $ '; unset PROMPT_COMMAND"
    assert spec["process"]["args"] == ["sh", "-l"]
    assert STATE_MOUNT not in mounts_by_destination(spec)


def test_on_init_wraps_the_command_and_mounts_the_state_directory() -> None:
    spec = build(
        attachable(tty={"onInit": [{"script": "echo hi", "runOn": "create"}]}),
        terminal=True,
        tty_state_dir=STATE,
        image_has_shell=True,
    )
    args = spec["process"]["args"]
    assert args[:2] == [SHELL, "-c"]
    assert args[3:] == [WRAPPER_NAME, "sh", "-l"]
    assert "'echo hi'" in args[2]
    mount = mounts_by_destination(spec)[STATE_MOUNT]
    assert mount["source"] == STATE
    assert mount["type"] == "bind"
    assert "rw" in mount["options"]


def test_the_wrapper_wraps_the_images_entrypoint_too() -> None:
    container = make_container(attachable=True, tty={"logFile": "/tmp/w.log"})
    spec = build(container, terminal=True, tty_state_dir=STATE)
    assert spec["process"]["args"][3:] == [WRAPPER_NAME, "/entry", "serve", "--port", "80"]


def test_no_tty_means_no_wrapper_even_with_options() -> None:
    # Only an attachable container (terminal) runs under the wrapper.
    spec = build(attachable(tty={"onInit": [{"script": "x"}]}), terminal=False)
    assert spec["process"]["args"] == ["sh", "-l"]


def test_an_image_without_bin_sh_is_refused_naming_cell_container_and_field() -> None:
    with pytest.raises(RuntimeSpecError) as info:
        build(
            attachable(tty={"onInit": [{"script": "x"}]}),
            terminal=True,
            tty_state_dir=STATE,
            image_has_shell=False,
        )
    message = str(info.value)
    assert message.startswith("cell 'cell1' container 'web': tty.onInit: ")
    assert "has no /bin/sh" in message
    with pytest.raises(RuntimeSpecError, match=r"'web': tty.logFile: .*no /bin/sh"):
        build(
            attachable(tty={"logFile": "/tmp/l"}),
            terminal=True,
            tty_state_dir=STATE,
            image_has_shell=False,
        )


def test_a_log_file_on_a_read_only_root_is_refused() -> None:
    with pytest.raises(RuntimeSpecError, match=r"tty.logFile: /var/log/w.log is on the read-only"):
        build(
            attachable(tty={"logFile": "/var/log/w.log"}, readOnlyRootFilesystem=True),
            terminal=True,
            tty_state_dir=STATE,
        )
    for fields in (
        {"tmpfs": [{"path": "/var/log"}]},
        {"volumes": [{"kind": "tmpfs", "target": "/var"}]},
        {"volumes": [{"source": "/srv/logs", "target": "/var/log"}]},
    ):
        build(
            attachable(tty={"logFile": "/var/log/w.log"}, readOnlyRootFilesystem=True, **fields),
            terminal=True,
            tty_state_dir=STATE,
        )
    build(
        attachable(tty={"logFile": f"{STATE_MOUNT}/w.log"}, readOnlyRootFilesystem=True),
        terminal=True,
        tty_state_dir=STATE,
    )
    with pytest.raises(RuntimeSpecError, match="read-only root"):
        build(
            attachable(
                tty={"logFile": "/var/log/w.log"},
                readOnlyRootFilesystem=True,
                volumes=[{"source": "/srv/logs", "target": "/var/log", "readOnly": True}],
            ),
            terminal=True,
            tty_state_dir=STATE,
        )


def test_scripts_too_long_for_one_argument_are_refused() -> None:
    with pytest.raises(RuntimeSpecError, match=r"tty.onInit: the scripts make a \d+-byte"):
        build(
            attachable(tty={"onInit": [{"script": "x" * 130_000}]}),
            terminal=True,
            tty_state_dir=STATE,
        )


def test_a_volume_at_the_state_mount_is_a_conflict() -> None:
    with pytest.raises(RuntimeSpecError, match="tty wrapper's state") as info:
        build(
            attachable(
                tty={"onInit": [{"script": "x"}]},
                volumes=[{"source": "/srv", "target": STATE_MOUNT}],
            ),
            terminal=True,
            tty_state_dir=STATE,
        )
    assert info.value.field == "volumes[0].target"
