"""The desktop client (PySide6). The only package of the appliance that imports Qt.

It runs the same core as ``aifi-app serve`` in its own process; widgets hold no SQL and
get every result of database or network work through queued signals (see
:mod:`aifi_app.gui.background`).
"""
