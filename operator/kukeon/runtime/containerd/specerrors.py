"""The errors of the runtime spec builder: a user mistake, with the field that makes it.

The builder's parts (:mod:`.capabilities`, :mod:`.userdb`, the builder itself in
:mod:`.spec`) check one field at a time and raise :class:`FieldError`, which knows the
field but not whose it is; :func:`.spec.build_runtime_spec` turns it into the
:class:`RuntimeSpecError` its callers see, naming the cell and the container.
"""

from __future__ import annotations


class RuntimeSpecError(ValueError):
    """The container cannot be turned into a runtime spec: a user mistake, field named."""

    def __init__(self, *, container: str, field: str, reason: str, cell: str = "") -> None:
        self.container = container
        self.field = field
        self.reason = reason
        self.cell = cell
        where = f"cell {cell!r} container {container!r}" if cell else f"container {container!r}"
        super().__init__(f"{where}: {field}: {reason}")


class FieldError(ValueError):
    """One field of a container cannot be honoured; the builder names the container."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")

    def of(self, *, container: str, cell: str = "") -> RuntimeSpecError:
        """This error as the :class:`RuntimeSpecError` of ``container`` in ``cell``."""
        return RuntimeSpecError(
            container=container, field=self.field, reason=self.reason, cell=cell
        )
