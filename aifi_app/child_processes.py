"""How the service starts its child processes: forked from a fork server on Linux, spawned
elsewhere.

The service starts several Python processes of its own: the receiver processes
(:mod:`aifi_app.dicom_node.receiver_pool`), the pre-pseudonymiser's child
(:mod:`aifi_app.pipeline.pre_pseudonymise`) and, on machines with four cores or more, the
pseudonymisation workers of a large study (:mod:`aifi_app.pipeline.parallel_pseudonymise`).
Spawned (a fresh interpreter each), every one of them imports pydicom, pynetdicom, numpy
and the node's and pipeline's modules itself: ~50 MB of its own memory each, and 0.5-1 s
of CPU. The service itself may not fork: it has threads.

On Linux they are started by multiprocessing's ``forkserver``: a process spawned once
(when the first child starts; the service has by then been quiet for a second), that
imports those modules once (:mod:`aifi_app.child_preload`) and forks every child from
itself. A forked child shares the imported modules' memory with the fork server and its
siblings, page by page, until one of them writes to a page (copy-on-write), and it has
nothing to import. Elsewhere (Windows, where a service under ``pythonservice.exe`` does
not start children anyway, and where there is no fork server) the children are spawned.

A child forked by the fork server inherits the fork server's state, not the service's:
the environment and the umask as they were when the fork server started (multiprocessing
sends the service's ``sys.path`` and working folder, not these), and the modules as they
were imported then (:mod:`aifi_app.failpoints` reads its variable once, on import).
:func:`child_process` therefore sends the service's environment and umask as they are at
the child's start along, and the child sets them and arms its fail points again before
it runs its target (:func:`run_in_child`), as a spawned child would have them; it sends
its log records to the service (:mod:`aifi_app.child_logging`), and takes its process's
name (``aifi-receiver``, ``aifi-prepseudo``) as the name ``ps`` and ``top`` show
(:func:`name_process`). Signal handlers and the CPU priority are those a spawned child
has (the fork server's: Python's defaults; each child sets its own). Its parent is the
fork server: :func:`service_alive` asks whether the service still runs.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import sys
from collections.abc import Callable, Mapping
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aifi_app.child_logging import ChildLogs

PRELOAD_MODULE = "aifi_app.child_preload"
"""The module the fork server imports before it forks any child."""


def start_method(platform: str, methods: list[str]) -> str:
    """The start method on ``platform`` (``sys.platform``) given the ``methods`` it has
    (``multiprocessing.get_all_start_methods()``): ``forkserver`` on Linux where it
    exists, ``spawn`` everywhere else."""
    if platform.startswith("linux") and "forkserver" in methods:
        return "forkserver"
    return "spawn"


def child_context() -> BaseContext:
    """The multiprocessing context the service starts its children with (see the module's
    description); with the fork server, its preloaded module is set (once started, the
    fork server keeps serving this process)."""
    method = start_method(sys.platform, multiprocessing.get_all_start_methods())
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload([PRELOAD_MODULE])
    return context


def child_process(
    context: BaseContext,
    target: Callable[..., object],
    args: tuple[Any, ...],
    *,
    name: str,
    daemon: bool = True,
) -> BaseProcess:
    """A child process (not started) that runs ``target(*args)`` with the service's
    environment as it is now (:func:`run_in_child`)."""
    from aifi_app import child_logging

    process: BaseProcess = context.Process(  # type: ignore[attr-defined]
        target=run_in_child,
        args=(dict(os.environ), current_umask(), target, args, child_logging.queue_for(context)),
        name=name,
        daemon=daemon,
    )
    return process


def run_in_child(
    environ: Mapping[str, str],
    umask: int | None,
    target: Callable[..., object],
    args: tuple[Any, ...],
    logs: ChildLogs | None = None,
) -> None:
    """The child's entry point: take the service's environment ``environ`` and ``umask``
    (a child of the fork server has the fork server's own), send its log records to the
    service (``logs``: :mod:`aifi_app.child_logging`), arm the fail points the
    environment names, run ``target(*args)``."""
    from aifi_app import child_logging, failpoints

    if logs is not None:
        child_logging.configure_child(logs)
    if os.environ != environ:
        os.environ.clear()
        os.environ.update(environ)
    if umask is not None:
        os.umask(umask)
    name_process(multiprocessing.current_process().name)
    failpoints.arm_from_environment()
    target(*args)


def name_process(name: str) -> None:
    """Show ``name`` (its first 15 bytes) as this process's name in ``ps``, ``top`` and
    ``/proc/PID/comm`` on Linux (a forked child would otherwise show the fork server's
    command line and name: every child alike); nothing elsewhere."""
    with contextlib.suppress(OSError):
        Path("/proc/self/comm").write_bytes(name.encode()[:15])


def current_umask() -> int | None:
    """This process's umask, read without changing it (Linux: ``/proc/self/status``;
    None where it cannot be read so: a spawned child inherits it anyway)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    return None


def service_alive(service_pid: int) -> bool:
    """In a child: whether the service that started it still runs. A child started by
    multiprocessing asks its parent's sentinel (closed when the service ends, whoever
    forked the child); anything else (a test running a child's loop in a thread) whether
    its parent is still ``service_pid``."""
    parent = multiprocessing.parent_process()
    if parent is not None:
        return parent.is_alive()
    return os.getppid() == service_pid
