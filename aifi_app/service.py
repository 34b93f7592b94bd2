"""The appliance: the database, the DICOM node, the worker and the dispatcher, wired together.

``aifi-app serve`` runs it headless; the desktop application runs the same object in its
own process. Start and stop from one thread; everything else runs on its own threads.
"""

from __future__ import annotations

import getpass
import json
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

# The service's own libraries, which the modules it shares with the fork server's children
# import only where they are first used (the children go without them: tests/
# test_child_preload.py): imported with the service, before its node accepts an
# association, not in the middle of its first ones.
import jsonschema  # noqa: F401  (manifests: aifi_app.algorithms.package)
import keyring  # noqa: F401  (secrets: aifi_app.secrets)
import sqlite_utils  # noqa: F401  (queries: aifi_app.store.database)

from aifi_app.algorithms.lifecycle import PackageCatalog
from aifi_app.algorithms.package import RemoteDicomSpec, RemoteDicomwebSpec
from aifi_app.algorithms.runners import RunnerCache
from aifi_app.algorithms.signing import TrustPolicy
from aifi_app.config.changes import describe_changes, flatten
from aifi_app.config.settings import Settings
from aifi_app.crash import CrashHandler
from aifi_app.dicom_node.peers import listener_tls_context
from aifi_app.dicom_node.storage_scp import NodeConfig, StorageNode
from aifi_app.file_modes import is_open, private_dir, restrict_umask, tighten_tree
from aifi_app.health import Heartbeat
from aifi_app.net.tls import TlsConfigError
from aifi_app.pipeline.dispatcher import Dispatcher
from aifi_app.pipeline.job_claims import Claims
from aifi_app.pipeline.node_monitor import NodeMonitor
from aifi_app.pipeline.pre_pseudonymise import PrePseudonymiser
from aifi_app.pipeline.processing import JobProcessor
from aifi_app.pipeline.remote_dicom import RemoteDicomStep
from aifi_app.pipeline.remote_dicomweb import RemoteDicomwebStep
from aifi_app.pipeline.worker import SMALL_STUDY_LANE, Worker
from aifi_app.ris import outbox as ris_outbox
from aifi_app.ris.mllp_sender import RisSender
from aifi_app.secrets import installation_secret
from aifi_app.store import audit
from aifi_app.store.database import Database
from aifi_app.store.disk_space import DiskFloor, DiskGuard
from aifi_app.store.receiving import IdleTimes

log = logging.getLogger(__name__)

DATABASE_FILE = "aifi.sqlite3"

START_QUIET_SECONDS = 1.0
"""The worker starts once the node has had no association begin or end for this long
(0.3 s was too short on the busy 2-core machine: a study sent as the port accepted then
sometimes met the loading; the worker's first studies wait for their idle timer anyway)."""
START_AT_LATEST_SECONDS = 10.0
"""... or this long after the node's port opened, whatever arrives."""
_START_POLL_SECONDS = 0.05


def open_database(data_dir: Path) -> Database:
    """The queue database; the data directory and everything the process creates are
    private to the service's account (:mod:`aifi_app.file_modes`)."""
    restrict_umask()
    private_dir(data_dir)
    return Database(data_dir / DATABASE_FILE)


def trust_policy(settings: Settings) -> TrustPolicy:
    """Which package signatures the settings trust."""
    return TrustPolicy(
        trusted_keys=settings.algorithms.trusted_vendor_keys,
        signed_only=settings.algorithms.signed_packages_only,
    )


def installation_id(db: Database) -> str:
    """This installation's id (made on first start); names its secret in the keyring."""
    with db.transaction() as conn:
        row = conn.execute("SELECT value FROM installation WHERE key = 'id'").fetchone()
        if row is not None:
            return str(row[0])
        new = str(uuid.uuid4())
        conn.execute("INSERT INTO installation (key, value) VALUES ('id', ?)", (new,))
        return new


def service_actor() -> str:
    """The account the service runs under, for the audit log: ``service:<OS user>``."""
    try:
        return f"service:{getpass.getuser()}"
    except (KeyError, OSError):  # pragma: no cover - no user name in this environment
        return "service"


class ServiceConfigError(RuntimeError):
    """The settings cannot be used to start (e.g. an unreadable TLS key); says which."""


def disk_guard(settings: Settings) -> DiskGuard:
    """The free-space floor of the data volume, from the ``[storage]`` settings."""
    floor = DiskFloor(settings.storage.min_free_mb, settings.storage.min_free_percent)
    return DiskGuard(settings.data_dir, floor)


class Appliance:
    def __init__(
        self,
        settings: Settings,
        *,
        secret_for: Callable[[str], bytes] = installation_secret,
    ) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir
        # the whole tree is walked only when the folder itself is still open (an older
        # installation's data): since then the umask keeps every new file private, and a
        # walk over a large spool at every start would only slow the start down
        legacy = is_open(self.data_dir)
        self.db = open_database(self.data_dir)
        if legacy:
            tighten_tree(self.data_dir)
        self.secret = secret_for(installation_id(self.db))
        self.catalog = PackageCatalog(
            self.db, self.data_dir, settings.algorithms.package_dirs, trust_policy(settings)
        )
        for route in settings.routes:
            if route.algorithm not in self.catalog.known_ids():
                log.error(
                    "route %s names algorithm %s, which is not installed",
                    route.name,
                    route.algorithm,
                )
        self.processor = JobProcessor(
            self.db,
            self.data_dir,
            self.catalog.enabled,
            RunnerCache(
                settings.algorithms.onnx_threads,
                inter_op_threads=settings.algorithms.onnx_inter_op_threads,
                providers=settings.algorithms.onnx_providers,
                settings=lambda: self.settings,
            ),
            self.secret,
            remote={
                RemoteDicomSpec: RemoteDicomStep(self.db, self.data_dir, lambda: self.settings),
                RemoteDicomwebSpec: RemoteDicomwebStep(self.db, lambda: self.settings),
            },
            on_result=lambda conn, job_id, package, result, header: ris_outbox.queue_for_result_in(
                conn, job_id, package, result, header, self.settings
            ),
        )
        self.pre_pseudonymiser = PrePseudonymiser(
            self.db,
            self.data_dir,
            lambda: self.settings,
            self.catalog.enabled,
            self.secret,
            disk_short=lambda: self.disk_guard.shortfall(),
            disk_floor=lambda: self.disk_guard.floor,
        )
        self.processor.prepared = self.pre_pseudonymiser
        self.ris_sender = RisSender(self.db, lambda: self.settings)
        self.dispatcher = Dispatcher(self.db, self.data_dir, lambda: self.settings)
        self.processor.early = self.dispatcher
        self.node_monitor = NodeMonitor(self.db, lambda: self.settings)
        claims = Claims()
        self.worker = Worker(
            self.db,
            self.data_dir,
            lambda: self.settings,
            self.processor,
            before_pass=self.catalog.refresh,
            on_results=self.dispatcher.wake,
            in_transfer=lambda: self.node.in_transfer.held(),
            on_routed=self._wake_workers,
            claims=claims,
        )
        self.small_study_worker = Worker(
            self.db,
            self.data_dir,
            lambda: self.settings,
            self.processor,
            on_results=self.dispatcher.wake,
            in_transfer=lambda: self.node.in_transfer.held(),
            on_routed=self._wake_workers,
            lane=SMALL_STUDY_LANE,
            claims=claims,
        )
        """The second lane: small studies never wait behind a large one's model."""
        node = settings.node
        allowed = tuple(
            dict.fromkeys(
                (
                    *node.allowed_calling_ae_titles,
                    # a RIS (mllp) or DICOMweb/HTTP node has no AE title to allow
                    *(n.ae_title for n in settings.remote_nodes if n.ae_title),
                )
            )
        )
        self._last_stored_study = -1
        self._stopping = threading.Event()
        self._start_lock = threading.Lock()
        self._rest: threading.Thread | None = None
        self._rest_started = False
        self.crash_handler = CrashHandler(self.data_dir, self._audit_crash)
        self.heartbeat = Heartbeat(self.data_dir, lambda: self.settings)
        try:
            tls_context = listener_tls_context(node)
        except TlsConfigError as exc:
            raise ServiceConfigError(f"node.tls: {exc}") from exc
        self.disk_guard = disk_guard(settings)
        self.idle_times = IdleTimes(
            settings.completion.idle_seconds,
            tuple(
                (r.idle_seconds, frozenset(r.modalities))
                for r in settings.routes
                if r.idle_seconds is not None
            ),
        )
        """The completion idle time by modality: the shortest of the routes that may take it."""
        self.node = StorageNode(
            NodeConfig(
                ae_title=node.ae_title,
                bind_address=node.bind_address,
                port=node.port,
                allowed_calling_ae_titles=allowed,
                max_pdu_size=node.max_pdu_size,
                network_timeout_seconds=node.network_timeout_seconds,
                calling_ae_addresses=node.calling_ae_addresses,
                tls_context=tls_context,
                tls_port=node.tls_port,
                plain_tcp=node.plain_tcp,
                receive_processes=node.receive_processes,
                receive_first_in_process=node.receive_first_in_process,
            ),
            self.db,
            self.data_dir,
            idle_seconds_for=self.idle_times,
            late_policy=settings.completion.late_instance_policy,
            on_stored=self._instance_stored,
            on_association_end=self._wake_workers,
            disk_guard=self.disk_guard,
        )

    def _instance_stored(self, study_id: int) -> None:
        """Wake the worker for a study it may not know yet (association threads).

        An instance of the study stored just before only moves that study's idle timer
        later, which the worker's wait already allows for; waking it for each slice of a
        CT would only take time from receiving.
        """
        if study_id != self._last_stored_study:
            self._last_stored_study = study_id
            self._wake_workers()
            self.pre_pseudonymiser.wake()

    def _wake_workers(self) -> None:
        self.worker.wake()
        self.small_study_worker.wake()

    def _audit_crash(self, detail: str) -> None:
        with self.db.transaction() as conn:
            audit.record(conn, "service", "crash", detail=detail)

    def _record_settings(self, conn: sqlite3.Connection) -> None:
        """Audit what changed in the settings since the last start (who: the OS user)."""
        current = flatten(self.settings)
        row = conn.execute("SELECT value FROM installation WHERE key = 'settings'").fetchone()
        previous: dict[str, str] | None = json.loads(row[0]) if row is not None else None
        if previous == current:
            return
        detail = describe_changes(previous, current) if previous is not None else "first start"
        audit.record(conn, "config", "settings_changed", detail=detail, actor=service_actor())
        conn.execute(
            "INSERT OR REPLACE INTO installation (key, value) VALUES ('settings', ?)",
            (json.dumps(current, sort_keys=True),),
        )

    def start(self) -> None:
        self.crash_handler.install()
        with self.db.transaction() as conn:
            audit.record(
                conn,
                "service",
                "started",
                detail=f"data in {self.data_dir}",
                actor=service_actor(),
            )
            self._record_settings(conn)
        # the node first: the worker's first act is loading the routes' models (ONNX
        # Runtime's import alone takes 0.1-0.6 s), which would hold the GIL while the node
        # opens its port; studies that arrive before the worker runs wait in the queue
        self.node.start()
        self._stopping.clear()
        self._rest = threading.Thread(
            target=self._start_when_quiet, name="aifi-start-when-quiet", daemon=True
        )
        self._rest.start()
        self.dispatcher.start()
        self.node_monitor.start()
        self.ris_sender.start()
        self.heartbeat.start()

    def _start_when_quiet(self) -> None:
        """Start the pre-pseudonymiser and the worker once the node has been quiet.

        Both load for about a second after the port accepts (the pre-pseudonymiser's child
        process imports its modules; the worker loads the routes' models, ONNX Runtime's
        import holding the interpreter's lock): a study sent in that second took twice as
        long to arrive (``python -m bench --only ingest``, radiograph study: 0.22 s sent
        at once, 0.11 s once the service had settled). So they start when no association
        has begun or ended for :data:`START_QUIET_SECONDS` (and not before that long
        after the port opened), or after :data:`START_AT_LATEST_SECONDS` whatever comes.
        Studies received meanwhile wait in the queue, as they did for the worker before.
        """
        opened = time.monotonic()
        while not self._stopping.wait(_START_POLL_SECONDS):
            since = time.monotonic() - opened
            if since >= START_AT_LATEST_SECONDS or (
                since >= START_QUIET_SECONDS and self.node.quiet_seconds >= START_QUIET_SECONDS
            ):
                break
        with self._start_lock:
            if self._stopping.is_set():
                return
            self.pre_pseudonymiser.start()  # empties its cache before the worker looks at it
            self.worker.start()
            self.small_study_worker.start()
            self._rest_started = True
        log.info("worker started %.2f s after the node", time.monotonic() - opened)

    @property
    def worker_started(self) -> bool:
        """Whether the pre-pseudonymiser and the worker run (:meth:`_start_when_quiet`)."""
        return self._rest_started

    def stop(self) -> None:
        self._stopping.set()
        if self._rest is not None:
            self._rest.join()
            self._rest = None
        self.heartbeat.stop()
        self.node.stop()
        with self._start_lock:
            started, self._rest_started = self._rest_started, False
        if started:
            self.pre_pseudonymiser.stop()
            self.small_study_worker.stop()
            self.worker.stop()
        self.dispatcher.stop()
        self.node_monitor.stop()
        self.ris_sender.stop()
        with self.db.transaction() as conn:
            audit.record(conn, "service", "stopped")
        self.crash_handler.uninstall()
        self.db.close()
