"""The database schema, as numbered migrations; ``PRAGMA user_version`` is the number applied.

Add a migration at the end of :data:`MIGRATIONS`; never edit one that has shipped.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE studies (
        id INTEGER PRIMARY KEY,
        study_uid TEXT NOT NULL,
        episode INTEGER NOT NULL,
        kind TEXT NOT NULL,
        state TEXT NOT NULL,
        calling_ae TEXT NOT NULL,
        modality TEXT NOT NULL DEFAULT '',
        study_description TEXT NOT NULL DEFAULT '',
        instance_count INTEGER NOT NULL DEFAULT 0,
        received_bytes INTEGER NOT NULL DEFAULT 0,
        first_received_at REAL NOT NULL,
        last_received_at REAL NOT NULL,
        idle_seconds REAL NOT NULL,
        complete_due_at REAL NOT NULL,
        completed_at REAL,
        reason TEXT,
        spool_removed_at REAL,
        UNIQUE (study_uid, episode)
    );
    CREATE INDEX studies_state ON studies (state, complete_due_at);
    CREATE TABLE instances (
        id INTEGER PRIMARY KEY,
        study_id INTEGER NOT NULL REFERENCES studies (id),
        sop_instance_uid TEXT NOT NULL,
        sop_class_uid TEXT NOT NULL,
        series_uid TEXT NOT NULL,
        transfer_syntax TEXT NOT NULL,
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        received_at REAL NOT NULL,
        calling_ae TEXT NOT NULL,
        UNIQUE (study_id, sop_instance_uid)
    );
    CREATE INDEX instances_sop ON instances (sop_instance_uid);
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        study_id INTEGER NOT NULL REFERENCES studies (id),
        algorithm_id TEXT NOT NULL,
        route TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL,
        result_json TEXT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        UNIQUE (study_id, algorithm_id)
    );
    CREATE INDEX jobs_state ON jobs (state, next_attempt_at);
    CREATE TABLE outputs (
        id INTEGER PRIMARY KEY,
        job_id INTEGER NOT NULL REFERENCES jobs (id),
        kind TEXT NOT NULL,
        sop_instance_uid TEXT NOT NULL UNIQUE,
        sop_class_uid TEXT NOT NULL,
        path TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        delivered_at REAL
    );
    CREATE INDEX outputs_job ON outputs (job_id, state);
    CREATE TABLE pseudonyms (
        pseudonym TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        original TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE audit_events (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        category TEXT NOT NULL,
        event TEXT NOT NULL,
        study_id INTEGER,
        job_id INTEGER,
        from_state TEXT,
        to_state TEXT,
        detail TEXT NOT NULL DEFAULT '',
        actor TEXT NOT NULL DEFAULT 'system'
    );
    CREATE INDEX audit_job ON audit_events (job_id, at);
    CREATE INDEX audit_study ON audit_events (study_id, at);
    CREATE TABLE installation (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
    # 2: algorithm packages: enabled state and a generation counter the service watches
    """
    CREATE TABLE algorithm_state (
        algorithm_id TEXT PRIMARY KEY,
        enabled INTEGER NOT NULL DEFAULT 1,
        version TEXT NOT NULL DEFAULT '',
        installed INTEGER NOT NULL DEFAULT 0,
        updated_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE algorithm_generation (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        generation INTEGER NOT NULL
    );
    INSERT INTO algorithm_generation (id, generation) VALUES (1, 0);
    """,
    # evaluation: how long each stage of a job took (the parts the audit's state changes do
    # not separate), each check of a remote node (delivery, submission), and the header
    # values a job's input had (scanner, slice thickness, kernel, protocol; no patient data)
    """
    CREATE TABLE job_stage_times (
        job_id INTEGER NOT NULL REFERENCES jobs (id),
        stage TEXT NOT NULL,
        started_at REAL NOT NULL,
        finished_at REAL NOT NULL,
        PRIMARY KEY (job_id, stage)
    ) WITHOUT ROWID;
    CREATE TABLE node_checks (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        node TEXT NOT NULL,
        kind TEXT NOT NULL,
        ok INTEGER NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX node_checks_at ON node_checks (at);
    CREATE TABLE job_inputs (
        job_id INTEGER PRIMARY KEY REFERENCES jobs (id),
        manufacturer TEXT NOT NULL DEFAULT '',
        model TEXT NOT NULL DEFAULT '',
        slice_thickness REAL,
        kernel TEXT NOT NULL DEFAULT '',
        protocol TEXT NOT NULL DEFAULT '',
        series_description TEXT NOT NULL DEFAULT '',
        body_part TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX studies_first_received ON studies (first_received_at);
    """,
    # evaluation: a person's verdict on a job's result (kept as a history; the newest counts)
    """
    CREATE TABLE feedback (
        id INTEGER PRIMARY KEY,
        job_id INTEGER NOT NULL REFERENCES jobs (id),
        verdict TEXT NOT NULL
            CHECK (verdict IN ('agree', 'false_positive', 'missed', 'unsure')),
        comment TEXT NOT NULL DEFAULT '',
        who TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE INDEX feedback_job ON feedback (job_id, at);
    """,
    # issue 5: HL7 messages to the RIS (a persistent outbox) and urgent jobs
    """
    CREATE TABLE ris_outbox (
        id INTEGER PRIMARY KEY,
        job_id INTEGER NOT NULL REFERENCES jobs (id),
        kind TEXT NOT NULL,
        message_type TEXT NOT NULL,
        control_id TEXT NOT NULL UNIQUE,
        message TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_error TEXT,
        ack_code TEXT,
        created_at REAL NOT NULL,
        sent_at REAL
    );
    CREATE INDEX ris_outbox_due ON ris_outbox (state, next_attempt_at);
    CREATE INDEX ris_outbox_job ON ris_outbox (job_id);
    ALTER TABLE jobs ADD COLUMN urgent INTEGER NOT NULL DEFAULT 0;
    """,
    # audit log chained by hashes: each row carries the previous row's hash and its own
    # (SHA-256 over the previous hash and the row's canonical content, see store/audit.py).
    # Rows written before this migration are chained by the code on first open, up to
    # legacy_until only, so that a row slipped in later without a hash cannot be chained.
    """
    ALTER TABLE audit_events ADD COLUMN prev_hash TEXT;
    ALTER TABLE audit_events ADD COLUMN hash TEXT;
    CREATE TABLE audit_chain (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        legacy_until INTEGER NOT NULL,
        head_id INTEGER NOT NULL DEFAULT 0,
        head_hash TEXT NOT NULL DEFAULT ''
    );
    INSERT INTO audit_chain (id, legacy_until) SELECT 1, COALESCE(MAX(id), 0) FROM audit_events;
    """,
)
