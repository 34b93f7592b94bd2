"""Imported by the fork server only (:mod:`aifi_app.child_processes`): the modules its
children run, imported once before it forks any of them, then frozen.

What is imported here (pydicom, pynetdicom, numpy, the node's and the pipeline's modules)
every forked child shares with the fork server and its siblings until one of them writes
to a page. The collector is off while they are imported (no collection leaves freed gaps
among them) and they are frozen afterwards (:func:`gc.freeze`): a child's collections
never touch their pages. The service never imports this module.
"""

from __future__ import annotations

import contextlib
import gc
import importlib

CHILD_MODULES = (
    "aifi_app.child_processes",
    "aifi_app.child_logging",
    "aifi_app.dicom_node.receiver_child",
    "aifi_app.pipeline.low_priority_child",
    "aifi_app.pipeline.pre_pseudonymise",
    "aifi_app.pipeline.parallel_pseudonymise",
)
"""The children's target modules (with what they import)."""


def preload(modules: tuple[str, ...] = CHILD_MODULES) -> None:
    """Import ``modules`` with the collector off, then freeze every object there is. One
    that fails to import is left to the child that needs it (which fails where it can
    be seen): the fork server runs in any case."""
    gc.disable()
    try:
        for name in modules:
            with contextlib.suppress(Exception):
                importlib.import_module(name)
    finally:
        gc.freeze()
        gc.enable()


preload()
