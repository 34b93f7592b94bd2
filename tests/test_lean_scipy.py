"""scipy.ndimage imported without numpy's unused submodules, in a fresh interpreter (the
test run has imported them already)."""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import json, sys
import numpy as np
from aifi_app.algorithms import lung_volume
from aifi_app.algorithms.packed_mask import PackedFrames
air = np.zeros((4, 32, 32), dtype=bool)
air[1:3, 8:14, 6:12] = air[1:3, 8:14, 18:24] = True  # two lungs
lungs = lung_volume.lung_mask(
    PackedFrames.from_array(air), 0.001, lung_volume.LungVolumeSettings(min_component_ml=0.0)
)
from scipy._lib.array_api_compat import numpy as copy
unused = ("numpy.f2py", "numpy.testing", "unittest", "difflib", "numpy.polynomial")
print(json.dumps({
    "loaded": {name: name in sys.modules for name in unused},
    "voxels": lungs.count(),
    "copy": [hasattr(copy, name) for name in ("asarray", "float64", "linalg", "fft", "pi")],
    "all": "f2py" in np.__all__ and "f2py" in dir(np),
}))
"""


def test_the_lung_volume_imports_scipy_without_numpys_unused_submodules() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["loaded"] == {
        "numpy.f2py": False,
        "numpy.testing": False,
        "unittest": False,
        "difflib": False,
        "numpy.polynomial": False,
    }
    assert found["voxels"] == 2 * 2 * 6 * 6  # the two lungs, found as before
    assert found["copy"] == [True] * 5  # scipy's copy of numpy has what array code uses
    assert found["all"] is True  # numpy itself as it was


def test_once_scipy_has_copied_numpy_nothing_changes() -> None:
    import numpy
    from scipy import ndimage  # noqa: F401

    from aifi_app.lean_scipy import numpy_as_loaded

    listed, lister = numpy.__all__, vars(numpy)["__dir__"]
    with numpy_as_loaded():
        assert numpy.__all__ is listed
        assert vars(numpy)["__dir__"] is lister
