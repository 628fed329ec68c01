"""YAML 1.1's boolean words, read as text that remembers it (no imports: kukectl's YAML
reader and the models share it without loading each other)."""

from __future__ import annotations


class YamlBoolWord(str):
    """A plain (unquoted) YAML scalar that YAML 1.1 reads as a boolean (``yes``, ``No``,
    ``ON``, ``off``...), kept as text as YAML 1.2 reads it (``api.yamlread``): a boolean
    field takes it for ``boolean`` (``api.meta.Bool``), any other field for its text."""

    __slots__ = ()

    @property
    def boolean(self) -> bool:
        return self.lower() in ("yes", "on")
