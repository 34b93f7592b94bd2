"""highdicom's "is this attribute in that IOD" look-up, answered once per question.

``highdicom._standard_utils.is_attribute_in_iod`` walks every attribute of every module
of the IOD until it finds the keyword, about 0.7 ms for a CT image (whose IOD never has
the keyword highdicom asks most: ``is_multiframe_image`` asks for Per-frame Functional
Groups Sequence). highdicom asks it for every source image of a Segmentation
(``get_plane_positions_of_series``, twice over when it is given plane positions to
match): 0.25-0.3 s of building the 400-frame SEG of a 500-slice CT, 30-45 % of it.
The answer depends only on the keyword, the SOP Class UID and highdicom's bundled
tables of the standard, which do not change while the process runs, so :func:`install`
keeps each answer.

Only the plain question (no ``exclude_path_elements``) is kept; other calls go to
highdicom as they are. ``is_multiframe_image`` and the other callers look the function
up in ``highdicom._standard_utils`` when they run, so replacing it there reaches them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Final

from highdicom import _standard_utils

_LOOKUP: Final = "is_attribute_in_iod"


class _Remembered:
    """``is_attribute_in_iod`` with its plain answers kept."""

    def __init__(self, original: Callable[..., bool]) -> None:
        self.original = original
        self._answers: dict[tuple[str, str], bool] = {}
        functools.update_wrapper(self, original)

    def __call__(
        self,
        attribute: str,
        sop_class_uid: str,
        exclude_path_elements: Sequence[str] | None = None,
    ) -> bool:
        if exclude_path_elements is not None:
            return self.original(attribute, sop_class_uid, exclude_path_elements)
        key = (str(attribute), str(sop_class_uid))
        try:
            return self._answers[key]
        except KeyError:
            answer = self._answers[key] = bool(self.original(attribute, sop_class_uid))
            return answer


def install() -> None:
    """Keep highdicom's IOD look-up answers from now on (once; safe to call again).

    A highdicom without this private function (a later release) is left as it is: the
    SEG is then built as highdicom builds it, only slower."""
    current = getattr(_standard_utils, _LOOKUP, None)
    if current is None:
        return
    if not isinstance(current, _Remembered):
        setattr(_standard_utils, _LOOKUP, _Remembered(current))


def original() -> Callable[..., bool]:
    """highdicom's own look-up (for tests)."""
    current = getattr(_standard_utils, _LOOKUP)
    found: Callable[..., bool] = current.original if isinstance(current, _Remembered) else current
    return found
