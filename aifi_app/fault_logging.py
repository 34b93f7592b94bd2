"""Logging faults without patient data.

An exception's message can quote the data that caused it (a pydicom error may hold a
patient's name). Fault log lines therefore carry the exception's type and where it was
raised (file, line, function), never its message.
"""

from __future__ import annotations

import logging
import traceback


def describe(exc: BaseException) -> str:
    """Type and innermost frames of ``exc``, without its message."""
    frames = traceback.extract_tb(exc.__traceback__)[-4:]
    where = " <- ".join(
        f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in reversed(frames)
    )
    return f"{type(exc).__name__} at {where}" if where else type(exc).__name__


def log_fault(log: logging.Logger, message: str, exc: BaseException, *args: object) -> None:
    """Log ``message`` (with ``args``) at ERROR level with :func:`describe` of ``exc``."""
    log.error(message + " (%s)", *args, describe(exc))
