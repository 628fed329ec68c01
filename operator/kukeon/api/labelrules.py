"""What a label key and a label value may be, as Kubernetes has them (apimachinery's
``validation.IsQualifiedName`` and ``IsValidLabelValue``): the one rule for the API's
labels and annotation keys, selectors' keys and the models' label-key fields.

A key is ``[prefix/]name``: the prefix a DNS subdomain (lowercase letters, digits, '-' and
'.', at most 253), the name at most 63 letters, digits, '-', '_' and '.', alphanumeric at
both ends. A value is empty or such a name. Patterns are matched whole (``fullmatch``):
Python's ``$`` also matches before a final newline, which Go's does not."""

from __future__ import annotations

import re
from typing import Final

LABEL_NAME_MAX: Final = 63
"""A label key's name (after any `prefix/`) and a label value: at most this many characters."""
LABEL_PREFIX_MAX: Final = 253
LABEL_KEY_MAX: Final = LABEL_PREFIX_MAX + 1 + LABEL_NAME_MAX
ANNOTATIONS_MAX_BYTES: Final = 256 * 1024
"""Kubernetes' limit on an object's annotations, keys and values together (the API server
refuses more; `kukectl apply` checks its own record against it before it writes)."""

_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
LABEL_KEY_PATTERN: Final = rf"^({_SUBDOMAIN}/)?{_NAME}$"
"""The key's pattern, as JSON Schema has it (anchored) for the CRDs."""
_KEY = re.compile(rf"({_SUBDOMAIN}/)?{_NAME}")
_VALUE = re.compile(rf"({_NAME})?")


def label_key_problem(key: str, *, what: str = "a label key") -> str | None:
    """Why ``key`` cannot be a label key (one a selector can name), or None. Annotation
    keys follow the same rule in Kubernetes (``what`` names which it is)."""
    prefix, _, name = key.rpartition("/")
    if not _KEY.fullmatch(key) or len(name) > LABEL_NAME_MAX or len(prefix) > LABEL_PREFIX_MAX:
        return (
            f"is not {what}: [prefix/]name, the prefix a DNS subdomain (lowercase letters, "
            "digits, '-' and '.'), the name at most 63 letters, digits, '-', '_' and '.', "
            "alphanumeric at both ends"
        )
    return None


def label_value_problem(value: str) -> str | None:
    """Why ``value`` cannot be a label value (one a selector can name), or None."""
    if not _VALUE.fullmatch(value) or len(value) > LABEL_NAME_MAX:
        return (
            "is not a label value: empty, or at most 63 letters, digits, '-', '_' and '.', "
            "alphanumeric at both ends"
        )
    return None
