"""pydicom imported without its test-file downloader's libraries, in a fresh interpreter
(the test run has imported pydicom already)."""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import json, sys
import aifi_app
light = "pydicom" not in sys.modules  # nothing imported until something imports pydicom
import aifi_app.service
held = {name: name in sys.modules for name in ("requests", "tqdm", "urllib3", "dicomweb_client")}
import requests
import pydicom.data.download as downloader
from aifi_app.algorithms.runners import RunnerCache
from aifi_app.pipeline.remote_dicomweb import make_client
print(json.dumps({
    "light": light, "held": held, "requests": requests.__name__,
    "downloader_has_requests": downloader.HAVE_REQUESTS,
}))
"""


def test_the_service_imports_pydicom_without_requests_and_can_still_use_it() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["light"] is True
    assert found["held"] == {
        "requests": False,
        "tqdm": False,
        "urllib3": False,
        "dicomweb_client": False,
    }
    assert found["requests"] == "requests"  # importable once a vendor's job needs it
    assert found["downloader_has_requests"] is False  # pydicom's own fallback: urllib


def test_a_process_whose_pydicom_has_its_downloader_already_is_left_as_it_is() -> None:
    import pydicom.data.download  # noqa: F401

    from aifi_app.lean_pydicom import _HoldBack, hold_back

    held = [f for f in sys.meta_path if isinstance(f, _HoldBack)]  # aifi_app's own
    for finder in held:
        sys.meta_path.remove(finder)
    try:
        finders = list(sys.meta_path)
        hold_back()
        assert sys.meta_path == finders
    finally:
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _HoldBack)]
        sys.meta_path[0:0] = held
