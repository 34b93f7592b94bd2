"""AIFI Appliance: radiology AI on one workstation, from modality to PACS.

The core (every subpackage except :mod:`aifi_app.gui`) never imports Qt and runs headless.
"""

__version__ = "0.1.0"
