"""A NUL byte the image, its /etc/passwd or a secret would put in the process: refused by the
spec builder naming where it came from (runc's create failed, an UnexpectedError retried for
ever), the value never said."""

from __future__ import annotations

from typing import Any

import pytest

from kukeon.runtime.containerd.spec import RuntimeSpecError
from kukeon.runtime.containerd.types import ImageConfig
from tests.unit.runtime.test_spec import build, make_container

SECRET = "s3cret-value"


def image(**fields: Any) -> dict[str, ImageConfig]:
    return {"image_config": ImageConfig(**{"cmd": ("sh",), **fields})}


@pytest.mark.parametrize(
    ("container", "overrides", "field", "words"),
    [
        ({}, image(cmd=("sh", "-c\0x")), "image config Cmd", "argument 1"),
        ({}, image(entrypoint=("s\0h",), cmd=()), "image config Entrypoint", "argument 0"),
        ({}, image(env=("X=a\0b",)), "image config Env", "variable 'X'"),
        ({}, image(env=("A\0B=1",)), "image config Env", "variable 'A\\x00B'"),
        ({}, image(working_dir="/a\0b"), "image config WorkingDir", "working directory"),
        ({"user": "app"}, {"passwd": "app:x:1:1::/home\0x:/bin/sh\n"}, "user", "home directory"),
        ({}, {"secret_env": {"TOKEN": f"{SECRET}\0tail"}}, "secrets", "variable 'TOKEN'"),
        ({}, image(env=("=x",)), "image config Env", "an entry has no name ('=x')"),
    ],
)
def test_a_nul_byte_is_refused_naming_its_source(
    container: dict[str, Any], overrides: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(RuntimeSpecError) as info:
        build(make_container(**container), **overrides)
    assert info.value.field == field
    assert words in str(info.value)
    assert "NUL byte" in str(info.value) or "no name" in str(info.value)
    assert SECRET not in str(info.value)


def test_a_nul_where_the_process_does_not_take_it_is_not_refused() -> None:
    # The container's command replaces the image's entrypoint and cmd; its env the variable.
    image = ImageConfig(entrypoint=("s\0h",), cmd=("x\0",), env=("X=a\0b", "GONE\0"))
    spec = build(make_container(command="sh", args=[], env=["X=1"]), image_config=image)
    assert spec["process"]["args"] == ["sh"]
    assert "X=1" in spec["process"]["env"]
