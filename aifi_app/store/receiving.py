"""Recording received instances: which study episode they belong to, and late arrivals.

Called on the DICOM node's association thread after the instance's file is durably on disk;
the C-STORE success status is sent only after the instance is recorded
(:class:`GroupRecorder`).
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass

from aifi_app.store import audit
from aifi_app.store.database import Database, now, transaction
from aifi_app.store.states import StudyState
from aifi_app.store.writer_lock import WriterLock

RECORDER_LOCK_SUFFIX = ".recorders"
"""The recorders' lock file (:mod:`aifi_app.store.writer_lock`) beside the database."""


@dataclass(frozen=True)
class ReceivedInstance:
    """What the DICOM node knows of an instance it has stored."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax: str
    modality: str
    study_description: str
    path: str
    """Relative to the data directory."""
    size: int
    calling_ae: str


@dataclass(frozen=True)
class IdleTimes:
    """A study's completion idle time by modality: the shortest of the routes' own idle
    times among the routes that may take the modality, else the default.

    A plain value (it pickles): the node's receiver processes record instances
    themselves (:mod:`aifi_app.dicom_node.receiver_child`) and need it there."""

    default: float
    routes: tuple[tuple[float, frozenset[str]], ...] = ()
    """(idle seconds, modalities) per route with an idle time of its own; no
    modalities: every modality."""

    def __call__(self, modality: str) -> float:
        own = [s for s, modalities in self.routes if not modalities or modality in modalities]
        return min(own) if own else self.default


@dataclass(frozen=True)
class Recorded:
    study_id: int
    instance_id: int
    new_study: bool
    duplicate: bool


def _new_episode(
    conn: sqlite3.Connection,
    inst: ReceivedInstance,
    episode: int,
    kind: str,
    state: StudyState,
    idle_seconds: float,
) -> int:
    t = now()
    cur = conn.execute(
        "INSERT INTO studies (study_uid, episode, kind, state, calling_ae, modality,"
        " study_description, first_received_at, last_received_at, idle_seconds,"
        " complete_due_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            inst.study_uid,
            episode,
            kind,
            state.value,
            inst.calling_ae,
            inst.modality,
            inst.study_description,
            t,
            t,
            idle_seconds,
            t + idle_seconds,
        ),
    )
    study_id = int(cur.lastrowid or 0)
    audit.record(
        conn,
        "receive",
        "study_started" if episode == 1 else f"late_instances_{kind}",
        study_id=study_id,
        to_state=state.value,
        detail=f"episode {episode} from {inst.calling_ae}, modality {inst.modality or '?'}",
    )
    return study_id


def record_instance(
    db: Database, inst: ReceivedInstance, *, idle_seconds: float, late_policy: str
) -> Recorded:
    """Record a stored instance in one transaction of its own; returns where it went."""
    with db.transaction() as conn:
        return _record(conn, inst, idle_seconds=idle_seconds, late_policy=late_policy)


def _record(
    conn: sqlite3.Connection, inst: ReceivedInstance, *, idle_seconds: float, late_policy: str
) -> Recorded:
    """Record a stored instance inside the caller's transaction; returns where it went.

    An instance for a study still receiving joins it and restarts its idle timer. An
    instance for a study already processed starts (or joins) a new episode whose kind is
    the late-instance policy: ``follow_up``, ``reprocess`` or ``record``. An instance that
    was already received in the latest episode (a resend) replaces its file and starts
    nothing new.
    """
    t = now()
    latest = conn.execute(
        "SELECT id, episode, state FROM studies WHERE study_uid = ? ORDER BY episode DESC LIMIT 1",
        (inst.study_uid,),
    ).fetchone()
    new_study = False
    open_episodes = (StudyState.RECEIVING, StudyState.RECORDED)
    # an earlier episode's instance can be resent only to a study with more than one
    # episode, or whose one episode was processed: looked up only then (for each instance
    # of a CT that was two of the five statements its record took)
    seen = None
    if latest is not None and (latest["episode"] != 1 or latest["state"] not in open_episodes):
        seen = conn.execute(
            "SELECT i.id, i.study_id, s.state FROM instances i JOIN studies s"
            " ON s.id = i.study_id WHERE s.study_uid = ? AND i.sop_instance_uid = ?"
            " ORDER BY i.id DESC LIMIT 1",
            (inst.study_uid, inst.sop_instance_uid),
        ).fetchone()
    if seen is not None and seen["state"] not in open_episodes:
        # a resend of an instance whose study was already processed: keep the newer
        # file, start nothing
        conn.execute(
            "UPDATE instances SET path = ?, size = ?, received_at = ?, calling_ae = ? WHERE id = ?",
            (inst.path, inst.size, t, inst.calling_ae, seen["id"]),
        )
        audit.record(
            conn,
            "receive",
            "duplicate_instance",
            study_id=int(seen["study_id"]),
            detail=f"instance received again from {inst.calling_ae}; not reprocessed",
        )
        return Recorded(int(seen["study_id"]), int(seen["id"]), False, True)
    if latest is None:
        study_id = _new_episode(conn, inst, 1, "primary", StudyState.RECEIVING, idle_seconds)
        new_study = True
    elif latest["state"] in open_episodes:
        study_id = int(latest["id"])
    else:
        state = StudyState.RECORDED if late_policy == "record" else StudyState.RECEIVING
        study_id = _new_episode(
            conn, inst, int(latest["episode"]) + 1, late_policy, state, idle_seconds
        )
        new_study = True
    row = conn.execute(
        "INSERT INTO instances (study_id, sop_instance_uid, sop_class_uid, series_uid,"
        " transfer_syntax, path, size, received_at, calling_ae)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (study_id, sop_instance_uid) DO NOTHING RETURNING id",
        (
            study_id,
            inst.sop_instance_uid,
            inst.sop_class_uid,
            inst.series_uid,
            inst.transfer_syntax,
            inst.path,
            inst.size,
            t,
            inst.calling_ae,
        ),
    ).fetchone()
    duplicate = row is None
    if duplicate:  # received again in this episode: its newer file replaces the first
        row = conn.execute(
            "UPDATE instances SET path = ?, size = ?, received_at = ?, transfer_syntax = ?,"
            " calling_ae = ? WHERE study_id = ? AND sop_instance_uid = ? RETURNING id",
            (
                inst.path,
                inst.size,
                t,
                inst.transfer_syntax,
                inst.calling_ae,
                study_id,
                inst.sop_instance_uid,
            ),
        ).fetchone()
    instance_id = int(row[0])
    # the idle timer restarts only while the episode is still receiving
    conn.execute(
        "UPDATE studies SET last_received_at = ?, instance_count = instance_count + ?,"
        " received_bytes = received_bytes + ?,"
        " complete_due_at = CASE WHEN state = ? THEN ? + idle_seconds"
        " ELSE complete_due_at END WHERE id = ?",
        (t, 0 if duplicate else 1, inst.size, StudyState.RECEIVING.value, t, study_id),
    )
    return Recorded(study_id, instance_id, new_study, duplicate)


class RecorderClosed(RuntimeError):
    """The recorder was closed (the node stops): the instance was not recorded."""


@dataclass
class _Request:
    inst: ReceivedInstance
    idle_seconds: float
    late_policy: str
    result: Recorded | None = None
    error: Exception | None = None
    done: bool = False


class GroupRecorder:
    """Records received instances; callers that arrive together share one commit.

    The commits are not flushed to disk (its own connection, ``synchronous=NORMAL``):
    a flush of the queue's log cost as much as the instance file's own flush, and is not
    what makes the instance safe. The node sends success only once the instance's file
    is complete on disk under its spool name (:mod:`aifi_app.dicom_node.spool`); a power
    cut that takes the last commits with it leaves those files unrecorded, and the next
    start records them (:mod:`aifi_app.dicom_node.spool_recovery`). A process that dies
    (SIGKILL, a crash) loses nothing: the commit is in the operating system's hands.

    Callers from several associations at once share a commit: the first caller to find
    no commit running commits every instance queued so far in one transaction (the others
    wait for it, or lead the next one); each caller returns only once its own instance is
    committed. A batch that fails is retried one instance per transaction, so one bad
    instance fails only its own C-STORE. Safe from any thread. The recorders of several
    processes (the node's receiver processes) queue for each other on a lock file beside
    the database (:mod:`aifi_app.store.writer_lock`), not in SQLite's busy handler.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn: sqlite3.Connection | None = None
        self._writers = WriterLock(db.path.with_name(db.path.name + RECORDER_LOCK_SUFFIX))
        self._pending: list[_Request] = []
        self._pending_lock = threading.Lock()
        self._commit_lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        """Take no more instances (:class:`RecorderClosed`); returns after the last commit."""
        with self._commit_lock:
            self._closed = True
            self._writers.close()

    def record(self, inst: ReceivedInstance, *, idle_seconds: float, late_policy: str) -> Recorded:
        """Record ``inst``; returns once it is committed. Raises what recording raised."""
        request = _Request(inst, idle_seconds, late_policy)
        with self._pending_lock:
            self._pending.append(request)
        with self._commit_lock:
            if self._closed and not request.done:
                with self._pending_lock:
                    self._pending.remove(request)
                raise RecorderClosed("the node is stopping: no more instances are recorded")
            if not request.done:
                with self._pending_lock:
                    batch, self._pending = self._pending, []
                self._commit(batch)
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _connection(self) -> sqlite3.Connection:
        """The recorder's own connection (used under the commit lock only)."""
        if self._conn is None:
            self._conn = self._db.connection(synchronous="NORMAL")
        return self._conn

    def _commit(self, batch: list[_Request]) -> None:
        with self._writers:
            self._commit_locked(batch)

    def _commit_locked(self, batch: list[_Request]) -> None:
        try:
            conn = self._connection()
            with transaction(conn):
                results = [
                    _record(conn, r.inst, idle_seconds=r.idle_seconds, late_policy=r.late_policy)
                    for r in batch
                ]
        except Exception as exc:
            if len(batch) == 1:
                batch[0].error = exc
            else:
                for r in batch:
                    try:
                        with transaction(self._connection()) as one_conn:
                            r.result = _record(
                                one_conn,
                                r.inst,
                                idle_seconds=r.idle_seconds,
                                late_policy=r.late_policy,
                            )
                    except Exception as one:
                        r.error = one
        else:
            for r, result in zip(batch, results, strict=True):
                r.result = result
        for r in batch:
            r.done = True
