"""scipy.ndimage imported without numpy's lazily loaded submodules.

``from scipy import ndimage`` (the CT lung volume's connected components,
:mod:`aifi_app.algorithms.lung_volume`) imports scipy's bundled ``array_api_compat``, which
makes its NumPy namespace as a copy of ``numpy``'s: ``from numpy import *`` and then
every name ``dir(numpy)`` lists. NumPy lists its submodules there but imports them only
when one is first used (``numpy.__getattr__``), so that copy imports every one of them:
``numpy.f2py`` (with charset_normalizer), ``numpy.testing`` (with ``unittest``, ``difflib``,
``pprint``), ``numpy.polynomial``, ``numpy.rec``, ``numpy.char``, ``numpy.strings``,
``numpy.ctypeslib`` and more. Measured in an interpreter that has imported the service
and highdicom (``numpy.ma`` loaded already, by ``numpy.unique``): the lung volume's first
run took 20.5 MB and 179 modules more, 14.3 MB and 109 modules with this (6.2 MB of the
service's memory, for the appliance's life), for names no array-API code asks for (the
standard's ``linalg`` and ``fft`` are the compat package's own modules, not NumPy's).

:func:`numpy_as_loaded` hides the submodules NumPy has not loaded yet from ``dir(numpy)``
and ``numpy.__all__`` while it is entered: scipy's copy then holds the functions, types
and constants as before, and no submodule nobody asked for. They stay importable
(``numpy.testing`` in a test run, for example); scipy and NumPy themselves are not
changed. Where the copy was made already (scipy imported before), it changes nothing.
Thread: any (another thread's ``dir(numpy)`` meanwhile sees the shorter list).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import numpy

__all__ = ["numpy_as_loaded"]

SCIPY_NUMPY_COPY = "scipy._lib.array_api_compat.numpy"
"""The module whose making copies numpy's namespace."""


@contextlib.contextmanager
def numpy_as_loaded() -> Iterator[None]:
    """While entered: ``dir(numpy)`` and ``numpy.__all__`` name only what NumPy has
    loaded (see the module)."""
    if SCIPY_NUMPY_COPY in sys.modules:
        yield
        return
    namespace = vars(numpy)
    listed = namespace.get("__all__")
    lister = namespace.get("__dir__")
    if listed is not None:
        numpy.__all__ = [name for name in listed if name in namespace]
    if callable(lister):
        namespace["__dir__"] = lambda: [name for name in lister() if name in vars(numpy)]
    try:
        yield
    finally:
        if listed is not None:
            numpy.__all__ = listed
        if callable(lister):
            namespace["__dir__"] = lister
