"""AIFI Appliance: radiology AI on one workstation, from modality to PACS.

The core (every subpackage except :mod:`aifi_app.gui`) never imports Qt and runs headless.
"""

from aifi_app.lean_pydicom import import_pydicom as _import_pydicom

__version__ = "0.1.0"

_import_pydicom()  # first: see aifi_app.lean_pydicom
