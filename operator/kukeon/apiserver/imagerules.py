"""A write naming an image that is not a reference is refused (422 naming the field).

Run on every spec write of a cell, a set's template or a profile (create, replace, merge
patch, `apply`, a profile's run), on the object as it would be stored (``handlerbase``),
before anything is written: such an image otherwise failed only on its node, as
``InvalidImageReference``. The grammar is the node's own (``api.imageref``, Docker's). An
image the stored object already had is let through (``api.imagefields``): an object
written before this rule stays writable, and its node keeps reporting it.
"""

from __future__ import annotations

from kukeon.api import AnyResource
from kukeon.api.imagefields import image_errors
from kukeon.apiserver.status import Cause
from kukeon.apiserver.target import Target
from kukeon.apiserver.writerules import refuse_invalid


def check_images(target: Target, res: AnyResource, current: AnyResource | None) -> None:
    """Refuse ``res`` when a container's image, new or changed, is not a reference."""
    causes = [Cause(error.field, error.message) for error in image_errors(res, current)]
    refuse_invalid(target, res, causes)
