"""``aifi-app serve`` as a Windows service (the MSI's ``INSTALL_SERVICE=1``).

The MSI registers the service ``AIFIAppliance`` with the bundled runtime's
``aifi-service.exe`` (python.exe under its own name) and the arguments
``-m aifi_app.windows_service``. A process the Service Control Manager starts must
call ``StartServiceCtrlDispatcherW`` within 30 seconds and report its state; this
module does that with ctypes (no pywin32 in the payload) and runs the same
:func:`aifi_app.cli.serve` as the command line, stopping it when the SCM says stop.

It runs only on Windows: the release checklist (installer/README.md) has it tried there.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

SERVICE_NAME = "AIFIAppliance"

# winsvc.h
SERVICE_WIN32_OWN_PROCESS = 0x10
SERVICE_STOPPED = 1
SERVICE_START_PENDING = 2
SERVICE_STOP_PENDING = 3
SERVICE_RUNNING = 4
SERVICE_ACCEPT_STOP = 0x1
SERVICE_ACCEPT_SHUTDOWN = 0x4
SERVICE_CONTROL_STOP = 1
SERVICE_CONTROL_INTERROGATE = 4
SERVICE_CONTROL_SHUTDOWN = 5
ERROR_SERVICE_SPECIFIC_ERROR = 1066
NO_ERROR = 0

log = logging.getLogger(__name__)


def serve_arguments(argv: list[str]) -> argparse.Namespace:
    """The ``aifi-app serve`` arguments of the service (its ImagePath arguments)."""
    from aifi_app.cli import build_parser

    return build_parser().parse_args(["serve", *argv])


def _console_to_file(data_dir: Path) -> TextIO:
    """A service has no console: its stdout/stderr (and faulthandler) go to a file."""
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stream = (logs / "service-console.log").open("a", encoding="utf-8", buffering=1)
    sys.stdout = sys.stderr = stream
    return stream


def run_service(argv: list[str]) -> int:  # pragma: no cover - Windows only
    import ctypes
    from ctypes import wintypes

    from aifi_app.cli import _settings, serve
    from aifi_app.config.loading import ConfigError

    advapi32: Any = ctypes.WinDLL("advapi32", use_last_error=True)  # type: ignore[attr-defined]

    class ServiceStatus(ctypes.Structure):
        _fields_ = [
            ("dwServiceType", wintypes.DWORD),
            ("dwCurrentState", wintypes.DWORD),
            ("dwControlsAccepted", wintypes.DWORD),
            ("dwWin32ExitCode", wintypes.DWORD),
            ("dwServiceSpecificExitCode", wintypes.DWORD),
            ("dwCheckPoint", wintypes.DWORD),
            ("dwWaitHint", wintypes.DWORD),
        ]

    winfunctype: Any = ctypes.WINFUNCTYPE  # type: ignore[attr-defined]
    service_main_t = winfunctype(None, wintypes.DWORD, ctypes.POINTER(wintypes.LPWSTR))
    handler_t = winfunctype(
        wintypes.DWORD, wintypes.DWORD, wintypes.DWORD, wintypes.LPVOID, wintypes.LPVOID
    )

    class ServiceTableEntry(ctypes.Structure):
        _fields_ = [("lpServiceName", wintypes.LPWSTR), ("lpServiceProc", service_main_t)]

    advapi32.RegisterServiceCtrlHandlerExW.restype = wintypes.HANDLE
    advapi32.RegisterServiceCtrlHandlerExW.argtypes = [wintypes.LPCWSTR, handler_t, wintypes.LPVOID]
    advapi32.SetServiceStatus.argtypes = [wintypes.HANDLE, ctypes.POINTER(ServiceStatus)]
    advapi32.StartServiceCtrlDispatcherW.argtypes = [ctypes.POINTER(ServiceTableEntry)]

    stop = threading.Event()
    result = {"code": 0}
    status = ServiceStatus(SERVICE_WIN32_OWN_PROCESS, SERVICE_START_PENDING, 0, 0, 0, 0, 30000)
    handle: list[Any] = [None]

    def report(state: int, exit_code: int = 0) -> None:
        status.dwCurrentState = state
        status.dwControlsAccepted = (
            SERVICE_ACCEPT_STOP | SERVICE_ACCEPT_SHUTDOWN if state == SERVICE_RUNNING else 0
        )
        status.dwWin32ExitCode = ERROR_SERVICE_SPECIFIC_ERROR if exit_code else NO_ERROR
        status.dwServiceSpecificExitCode = exit_code
        pending = state in (SERVICE_START_PENDING, SERVICE_STOP_PENDING)
        status.dwCheckPoint = status.dwCheckPoint + 1 if pending else 0
        advapi32.SetServiceStatus(handle[0], ctypes.byref(status))

    def handler(control: int, event_type: int, event_data: Any, context: Any) -> int:
        if control in (SERVICE_CONTROL_STOP, SERVICE_CONTROL_SHUTDOWN):
            report(SERVICE_STOP_PENDING)
            stop.set()
        return NO_ERROR

    c_handler = handler_t(handler)

    def service_main(argc: int, argv_w: Any) -> None:
        handle[0] = advapi32.RegisterServiceCtrlHandlerExW(SERVICE_NAME, c_handler, None)
        if not handle[0]:
            result["code"] = 5
            return
        report(SERVICE_START_PENDING)
        try:
            args = serve_arguments(argv)
            _console_to_file(_settings(args).data_dir)
        except (ConfigError, OSError, SystemExit) as exc:
            log.error("the service cannot start: %s", exc)
            result["code"] = 2
            report(SERVICE_STOPPED, 2)
            return
        worker = threading.Thread(target=lambda: result.update(code=serve(args, stop)))
        worker.start()
        report(SERVICE_RUNNING)
        worker.join()
        report(SERVICE_STOPPED, result["code"])

    c_main = service_main_t(service_main)
    table = (ServiceTableEntry * 2)(ServiceTableEntry(SERVICE_NAME, c_main), ServiceTableEntry())
    if not advapi32.StartServiceCtrlDispatcherW(table):
        error = ctypes.get_last_error()  # type: ignore[attr-defined]
        print(
            f"aifi_app.windows_service: not started by the Service Control Manager "
            f"(error {error}); use 'sc start {SERVICE_NAME}', or 'aifi-app serve' directly",
            file=sys.stderr,
        )
        return 1
    return result["code"]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if sys.platform != "win32":
        print(
            "aifi_app.windows_service runs only on Windows; use 'aifi-app serve'", file=sys.stderr
        )
        return 2
    serve_arguments(args)  # refuse bad arguments before the SCM is involved
    return run_service(args)  # pragma: no cover - Windows only


if __name__ == "__main__":
    sys.exit(main())
