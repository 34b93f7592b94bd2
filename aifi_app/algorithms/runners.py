"""Which runner carries out a package, and one runner per package kept for reuse."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from pydicom import Dataset

from aifi_app.algorithms.findings import AlgorithmResult
from aifi_app.algorithms.lung_volume import LungVolumeRunner
from aifi_app.algorithms.onnx_runner import PREFERRED_PROVIDERS, InferenceError, OnnxRunner
from aifi_app.algorithms.package import (
    REMOTE_SPECS,
    AlgorithmPackage,
    BuiltinRunnerSpec,
    HttpRunnerSpec,
    KServeV2Spec,
)
from aifi_app.config.settings import Settings

__all__ = ["InferenceError", "Runner", "RunnerCache"]


class Runner(Protocol):
    def run(self, images: Sequence[Dataset]) -> AlgorithmResult:
        """The algorithm's result on the (pseudonymised) images a job selected."""
        ...


class RunnerCache:
    """One runner per algorithm package (and content), made on first use. Thread-safe:
    ONNX Runtime sessions are made once and reused."""

    def __init__(
        self,
        threads: int = 0,
        *,
        inter_op_threads: int = 1,
        providers: Sequence[str] = PREFERRED_PROVIDERS,
        settings: Callable[[], Settings] | None = None,
    ) -> None:
        self._threads = threads
        self._inter_op_threads = inter_op_threads
        self._providers = tuple(providers)
        self._settings = settings
        """The current settings, for runners that reach a remote node (REST/JSON)."""
        self._runners: dict[str, Runner] = {}
        self._lock = threading.Lock()

    def _make(self, package: AlgorithmPackage) -> Runner:
        spec = package.runner
        if isinstance(spec, BuiltinRunnerSpec):
            if spec.function == "ct_lung_volume":
                return LungVolumeRunner(package, spec.settings)
            raise InferenceError(f"no built-in runner {spec.function!r} in this appliance")
        if isinstance(spec, (HttpRunnerSpec, KServeV2Spec)):
            if self._settings is None:
                raise InferenceError(f"{spec.kind} runners need the settings (remote nodes)")
            # (imported here: they bring ``requests``, which a service with no REST
            # vendor need not carry)
            from aifi_app.algorithms.http_runner import HttpRunner
            from aifi_app.algorithms.kserve_runner import KServeV2Runner

            if isinstance(spec, KServeV2Spec):
                return KServeV2Runner(package, self._settings)
            return HttpRunner(package, self._settings)
        if isinstance(spec, REMOTE_SPECS):
            raise InferenceError(f"a remote {spec.kind} package does not run locally")
        return OnnxRunner(
            package,
            threads=self._threads,
            inter_op_threads=self._inter_op_threads,
            providers=self._providers,
        )

    def get(self, package: AlgorithmPackage) -> Runner:
        key = package.cache_key
        with self._lock:
            runner = self._runners.get(key)
            if runner is None:
                runner = self._make(package)
                self._runners[key] = runner
            return runner
