"""What a kukectl run pays before its command starts (issue 18: a whole `get` in 0.25 s).

Each case runs in a fresh interpreter: the test process has imported everything already.
What importing kukectl loads (not the server, rich or aiohttp) is tests/unit/test_conventions.py's.
"""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.interpreter import printed_after

from .listserver import list_server


def test_models_are_built_on_first_use() -> None:
    """pydantic builds a model's validator when it first validates (``defer_build``), so
    importing kukectl builds none; validating a Cell builds what a Cell needs."""
    built = printed_after(
        "import kukeon.cli.main\n"
        "from kukeon.api import KIND_MODELS, Kind, parse_resource\n"
        "before = [k.value for k, m in KIND_MODELS.items() if m.__pydantic_complete__]\n"
        "parse_resource({'apiVersion': 'kukeon.io/v1beta1', 'kind': 'Cell',\n"
        "    'metadata': {'name': 'c'}, 'spec': {'realmId': 'r', 'spaceId': 's',\n"
        "    'stackId': 't', 'containers': [{'id': 'main', 'image': 'busybox'}]}})\n"
        "print(json.dumps([before, KIND_MODELS[Kind.CELL].__pydantic_complete__]))"
    )
    assert built == [[], True]


def test_version_is_read_only_when_asked() -> None:
    loaded = printed_after(
        "import kukeon\n"
        "before = 'importlib.metadata' in sys.modules\n"
        "print(json.dumps([before, kukeon.__version__ != '']))"
    )
    assert loaded == [False, True]


def test_a_get_loads_no_aiohttp(tmp_path: Path) -> None:
    """A plain request has a connection of its own (``ApiClient(pooled=False)``)."""
    socket = tmp_path / "api.sock"
    with list_server(socket):
        loaded = printed_after(
            "from kukeon.cli.main import main\n"
            f"try:\n    main(['--server', 'unix://{socket}', 'get', 'cells', '-A'])\n"
            "except SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
            "print(json.dumps('aiohttp' in sys.modules))"
        )
    assert loaded is False
