"""YAML is read as JSON's data model by every reader (``api.yamlread``): a tag whose value
JSON has not (bytes, sets, pairs, dates, Python objects) is refused, naming the tag and its
line, where PyYAML's safe loader made bytes, sets and dates that reached the models."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import yaml

from kukeon.api import load_manifests
from kukeon.api.manifests import ManifestError
from kukeon.api.yamlread import (
    CJsonYamlLoader,
    NotJsonDataError,
    NotJsonNumberError,
    load_yaml,
)
from kukeon.apiserver.auth import TokenBook, TokensFileError
from kukeon.cli.config import ConfigError as KukectlConfigError
from kukeon.cli.configfile import read_config
from kukeon.daemon.config import ConfigError, load_config
from kukeon.store.encryption import EncryptionError, parse_key_file

PACKAGE = Path(__file__).resolve().parents[3] / "operator" / "kukeon"

NOT_JSON = [
    ("a: !!binary aGVsbG8=\n", "!!binary"),
    ("a: !!set {x, y}\n", "!!set"),
    ("a: !!omap [x: 1]\n", "!!omap"),
    ("a: !!pairs [x: 1]\n", "!!pairs"),
    ("a: !!timestamp 2001-12-14\n", "!!timestamp"),
    ("a: !!python/name:os.system x\n", "!!python/name:os.system"),
    ("a: !!python/tuple [1, 2]\n", "!!python/tuple"),
    ("a: !mine x\n", "!mine"),
    ("b: 1\nlist:\n- !!binary aGVsbG8=\n", "!!binary"),
]


@pytest.mark.parametrize("loader", [CJsonYamlLoader])
@pytest.mark.parametrize(("text", "tag"), NOT_JSON)
def test_a_tag_of_no_json_value_is_refused_naming_it(
    loader: type[yaml.SafeLoader], text: str, tag: str
) -> None:
    with pytest.raises(NotJsonDataError) as refused:
        yaml.load(text, Loader=loader)
    assert refused.value.tag.endswith(tag.lstrip("!"))
    said = str(refused.value)
    assert f"the YAML tag {tag} is not accepted" in said
    assert f"line {text.count(chr(10))}" in said  # where: the last line of each example


def test_json_data_reads_as_before() -> None:
    text = (
        "s: !!str 5\ni: !!int '7'\nf: 1.5\nb: true\nn: null\nm: !!map {x: 1}\nq: !!seq [1]\n"
        "yes: yes\nwhen: 2026-01-01\nport: 22:22\nmerged: {<<: {x: 1}, y: 2}\n"
    )
    assert load_yaml(text) == {
        "s": "5",
        "i": 7,
        "f": 1.5,
        "b": True,
        "n": None,
        "m": {"x": 1},
        "q": [1],
        "yes": "yes",
        "when": "2026-01-01",
        "port": "22:22",
        "merged": {"x": 1, "y": 2},
    }
    with pytest.raises(yaml.YAMLError, match="duplicate key 'x'"):
        load_yaml("x: 1\nx: 2\n")


def test_a_manifest_with_binary_is_an_invalid_document() -> None:
    text = "apiVersion: v1beta1\nkind: Realm\nmetadata:\n  name: r\n  labels:\n"
    text += "    a: !!binary aA==\n"
    with pytest.raises(ManifestError) as refused:
        load_manifests(text)
    assert "document 0: invalid YAML: the YAML tag !!binary is not accepted" in str(refused.value)
    assert "line 6" in str(refused.value)


def test_configuration_and_key_files_are_read_as_json_data(tmp_path: Path) -> None:
    binary = "!!binary aGVsbG8="
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(f"tokens:\n- token: {binary}\n  user: a\n  role: admin\n")
    with pytest.raises(TokensFileError, match="!!binary"):
        TokenBook.load(tokens)
    with pytest.raises(EncryptionError, match="!!binary"):
        parse_key_file(f"current: k1\nkeys:\n- id: k1\n  secret: {binary}\n", source="keys")
    kukeond = tmp_path / "kukeond.yaml"
    kukeond.write_text(f"etcdPassword: {binary}\n")
    with pytest.raises(ConfigError, match="!!binary"):
        load_config(config_file=kukeond)
    kukectl = tmp_path / "config.yaml"
    kukectl.write_text(f"currentContext: {binary}\n")
    with pytest.raises(KukectlConfigError, match="!!binary"):
        read_config(kukectl)


def _yaml_loads(tree: ast.Module) -> list[int]:
    """Lines calling PyYAML's loaders directly (``yaml.safe_load``, ``yaml.load``...)."""
    loads = {"safe_load", "safe_load_all", "load", "load_all", "full_load", "unsafe_load"}
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr in loads
        and isinstance(node.value, ast.Name)
        and node.value.id == "yaml"
    ]


def test_every_yaml_reader_uses_the_shared_loader() -> None:
    """Only ``api.yamlread`` (and the request bodies, with its loader after their event
    scan) call PyYAML's loaders: any other reader would take `!!binary` again."""
    allowed = {"api/yamlread.py", "apiserver/bodies.py"}
    found: dict[str, Any] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = str(path.relative_to(PACKAGE))
        if name not in allowed and (lines := _yaml_loads(ast.parse(path.read_text()))):
            found[name] = lines
    assert found == {}
    bodies = (PACKAGE / "apiserver" / "bodies.py").read_text()
    assert "_Loader = CJsonYamlLoader" in bodies


NOT_JSON_NUMBERS = [
    ("a: .nan\n", ".nan"),
    ("a: .NaN\n", ".NaN"),
    ("a: .inf\n", ".inf"),
    ("a: -.Inf\n", "-.Inf"),
    ("a: +.inf\n", "+.inf"),
    ("a: 1.0e+999\n", "1.0e+999"),
    ("a: !!float nan\n", "nan"),
    ("b: 1\nlist:\n- 1.5\n- -.inf\n", "-.inf"),
]


@pytest.mark.parametrize("loader", [CJsonYamlLoader])
@pytest.mark.parametrize(("text", "value"), NOT_JSON_NUMBERS)
def test_a_float_json_has_not_is_refused_naming_it(
    loader: type[yaml.SafeLoader], text: str, value: str
) -> None:
    """JSON has no NaN or infinity (the API's JSON reader refuses them): they passed here."""
    with pytest.raises(NotJsonNumberError) as refused:
        yaml.load(text, Loader=loader)
    said = str(refused.value)
    assert f"the YAML value {value} is not a JSON number" in said
    assert f"line {text.count(chr(10))}" in said


def test_text_that_looks_like_nan_stays_text() -> None:
    assert load_yaml("a: nan\nb: inf\nc: '.nan'\nd: 1e999\ne: .5\n") == {
        "a": "nan",
        "b": "inf",
        "c": ".nan",
        "d": "1e999",
        "e": 0.5,
    }


@pytest.mark.parametrize("loader", [CJsonYamlLoader])
def test_keys_are_text_as_sigs_k8s_io_yaml_writes_them(loader: type[yaml.SafeLoader]) -> None:
    """``strconv`` formatting, a float key as a float32; `1` and `true` were one key here
    (Python's 1 == True), reported as a duplicate."""
    text = (
        "1: a\ntrue: b\nFalse: c\n0x10: d\n1.5: e\n.inf: g\n-.inf: h\n.nan: i\n"
        "1000000.0: j\n0.1: k\n3.14159265358979: l\n-0.0: n\n0.00001: o\n"
    )
    assert yaml.load(text, Loader=loader) == {
        "1": "a",
        "true": "b",
        "false": "c",
        "16": "d",
        "1.5": "e",
        ".inf": "g",
        "-.inf": "h",
        ".nan": "i",
        "1e+06": "j",
        "0.1": "k",
        "3.1415927": "l",
        "-0": "n",
        "1e-05": "o",
    }
    assert yaml.load("1.0e+300: m\n", Loader=loader) == {".inf": "m"}  # past float32's range


@pytest.mark.parametrize("loader", [CJsonYamlLoader])
@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("a: 1\nnull: z\n", "found a key that is null"),
        ("a: 1\n~: z\n", "found a key that is null"),
        ("a: 1\n? [x]\n: z\n", "found a key that is a mapping or sequence"),
        ("a: 1\n? {x: 1}\n: z\n", "found a key that is a mapping or sequence"),
        ("1: a\n'1': b\n", "found duplicate key '1'"),
        ("1: a\n1.0: b\n", "found duplicate key '1'"),
    ],
)
def test_a_key_json_cannot_have_is_refused(
    loader: type[yaml.SafeLoader], text: str, said: str
) -> None:
    with pytest.raises(yaml.constructor.ConstructorError) as refused:
        yaml.load(text, Loader=loader)
    assert said in str(refused.value)
    assert "line 2" in str(refused.value)


def test_a_manifest_with_nan_is_an_invalid_document() -> None:
    realm = "apiVersion: v1beta1\nkind: Realm\nmetadata:\n  name: r\n"
    text = realm + "---\n" + realm + "spec:\n  limits:\n    memory: .inf\n"
    with pytest.raises(ManifestError) as refused:
        load_manifests(text)
    said = str(refused.value)
    assert "document 1: invalid YAML: the YAML value .inf is not a JSON number" in said
    assert "line 12" in said
    for number in ("NaN", "Infinity", "-Infinity", "1e999"):
        json_text = '{"apiVersion": "v1beta1", "kind": "Realm", "metadata": {"name": "r"}, '
        json_text += f'"spec": {{"x": {number}}}}}'
        with pytest.raises(ManifestError, match=f"invalid JSON: {number}"):
            load_manifests(json_text)
