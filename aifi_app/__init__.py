"""AIFI Appliance: radiology AI on one workstation, from modality to PACS.

The core (every subpackage except :mod:`aifi_app.gui`) never imports Qt and runs headless.
"""

from aifi_app.lean_pydicom import hold_back as _hold_back

__version__ = "0.1.0"

_hold_back()  # pydicom, once imported, without its downloader's libraries
