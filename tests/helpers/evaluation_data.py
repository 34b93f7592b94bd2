"""A known set of jobs, checks and verdicts written straight into a store, for the
evaluation and report tests; every figure they check is worked out by hand in
``EXPECTED`` below (see the comments there).

Period: 2026-03-02 and 2026-03-03 (UTC), 48 hours from P0. Two algorithms: ``cxr-local``
(a local model, findings positive/negative) and ``vendor-x`` (a remote vendor, no
findings of ours, so polarity unknown). Planted patient identifiers (names, IDs, UIDs,
accession number, birth date) sit in the studies, instances, pseudonyms, result JSON and a
feedback comment, so a test can scan the report for them.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

from aifi_app.evaluation.period import Period
from aifi_app.store.database import Database

FIRST_DAY = date(2026, 3, 2)
LAST_DAY = date(2026, 3, 3)
PERIOD = Period.days(FIRST_DAY, LAST_DAY)
P0 = datetime(2026, 3, 2, tzinfo=UTC).timestamp()
H = 3600.0
NOW = P0 + 72 * H

PATIENT_IDENTIFIERS = (
    "Jansen^Pieternella",
    "Jansen",
    "Pieternella",
    "PATID-998877",
    "ACC-55443322",
    "19470312",
    "1.2.826.0.1.3680043.99.4242",
    "1.2.826.0.1.3680043.99.4242.1.1",
    "de Vries-Bakker",
)

STUDY_UID = "1.2.826.0.1.3680043.99.4242"

# job id: (algorithm, day offset hours of first instance, site, state, polarity,
#          verdicts [(verdict, who, at offset from first)], input values, turnaround)
# Times of a delivered job, relative to its first instance t: last instance t+10,
# complete t+40, created t+41, pseudonymise t+42..t+43, submitted t+43.5, model t+44..t+46,
# build t+46..t+49 (re-identify t+47..t+49), result_received t+50, delivered t+50+deliver.
# turnaround = delivered - (t+10) = 40 + deliver, so deliver = turnaround - 40.
JOBS: dict[int, dict[str, object]] = {
    1: {"alg": "cxr-local", "t": 1 * H, "site": "CT01", "state": "delivered", "pol": True,
        "verdicts": [("agree", "MB")], "input": ("GE", "Revolution", 1.0, "STANDARD", "THORAX"),
        "turnaround": 42.0},
    2: {"alg": "cxr-local", "t": 2 * H, "site": "CT01", "state": "delivered", "pol": True,
        "verdicts": [("false_positive", "MB")],
        "input": ("GE", "Revolution", 1.0, "STANDARD", "THORAX"), "turnaround": 60.0},
    3: {"alg": "cxr-local", "t": 3 * H, "site": "CT02", "state": "delivered", "pol": False,
        "verdicts": [("missed", "JD")], "input": ("GE", "Revolution", 1.0, "STANDARD", "THORAX"),
        "turnaround": 45.0},
    4: {"alg": "cxr-local", "t": 26 * H, "site": "CT01", "state": "delivered", "pol": False,
        "verdicts": [("agree", "JD")], "input": ("SIEMENS", "Force", 1.0, "Br40", "THORAX"),
        "turnaround": 50.0},
    5: {"alg": "cxr-local", "t": 27 * H, "site": "CT01", "state": "rejected", "pol": None,
        "verdicts": [], "input": ("SIEMENS", "Force", 6.0, "Br40", "THORAX"), "turnaround": None},
    6: {"alg": "cxr-local", "t": 28 * H, "site": "CT02", "state": "delivered", "pol": True,
        "verdicts": [("false_positive", "MB"), ("agree", "JD")],  # the newest counts: agree
        "input": ("SIEMENS", "Force", 1.0, "Br40", "THORAX"), "turnaround": 90.0},
    7: {"alg": "vendor-x", "t": 4 * H, "site": "CT01", "state": "delivered", "pol": None,
        "verdicts": [("agree", "MB")], "input": ("GE", "Revolution", 1.0, "STANDARD", "THORAX"),
        "turnaround": 300.0},
    8: {"alg": "vendor-x", "t": 29 * H, "site": "CT01", "state": "failed", "pol": None,
        "verdicts": [], "input": None, "turnaround": None},
    # outside the period (the day before): counts nowhere
    9: {"alg": "cxr-local", "t": -20 * H, "site": "CT01", "state": "delivered", "pol": True,
        "verdicts": [("false_positive", "MB")],
        "input": ("GE", "Revolution", 1.0, "STANDARD", "THORAX"), "turnaround": 1000.0},
}  # fmt: skip

# service: started P0, stopped P0+10h; started P0+12h, crashed (last sign of life P0+20h);
# started P0+22h, stopped P0+47h. Up 10 + 8 + 25 = 43 h of 48 h; 3 starts, 1 unclean end,
# longest outage 2 h.
SERVICE_EVENTS = [(0.0, "started"), (10 * H, "stopped"), (12 * H, "started"),
                  (22 * H, "started"), (47 * H, "stopped")]  # fmt: skip
SIGN_OF_LIFE = 20 * H

# node checks: PACS ok 1h, fail 26h, fail 26.5h, ok 27h, ok 30h: observed 1h..48h = 47 h,
# down 26h..27h = 1 h. VENDOR: ok at 2h: observed 46 h, down 0. OLDPACS: failed the day
# before, never again: down the whole 48 h.
NODE_CHECKS = [("PACS", 1 * H, True), ("PACS", 26 * H, False), ("PACS", 26.5 * H, False),
               ("PACS", 27 * H, True), ("PACS", 30 * H, True), ("VENDOR", 2 * H, True),
               ("OLDPACS", -10 * H, False)]  # fmt: skip


def _result_json(alg: str, positive: bool | None) -> str:
    findings = []
    if positive is not None:
        findings = [
            {
                "label": "pneumonia",
                "positive": positive,
                "score": 0.9 if positive else 0.1,
                "source_sop_instance_uid": STUDY_UID + ".1.1",
            }
        ]
    return json.dumps({"algorithm": {"algorithm_id": alg}, "findings": findings})


def populate(db: Database) -> None:
    """Write the known data set into ``db`` (a fresh store)."""
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")

    def audit(at: float, category: str, event: str, **kw: object) -> None:
        conn.execute(
            "INSERT INTO audit_events (at, category, event, study_id, job_id, from_state,"
            " to_state, detail, actor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                at,
                category,
                event,
                kw.get("study_id"),
                kw.get("job_id"),
                kw.get("from_state"),
                kw.get("to_state"),
                kw.get("detail", ""),
                kw.get("actor", "system"),
            ),
        )

    for at, event in SERVICE_EVENTS:
        audit(P0 + at, "service", event)
    audit(P0 + SIGN_OF_LIFE, "receive", "study_started", detail="sign of life")
    for node, at, ok in NODE_CHECKS:
        conn.execute(
            "INSERT INTO node_checks (at, node, kind, ok, detail) VALUES (?, ?, 'delivery', ?, ?)",
            (P0 + at, node, int(ok), "" if ok else "PACS not reachable"),
        )
    for job_id, spec in JOBS.items():
        t = P0 + float(spec["t"])  # type: ignore[arg-type]
        study_id = job_id
        conn.execute(
            "INSERT INTO studies (id, study_uid, episode, kind, state, calling_ae, modality,"
            " study_description, instance_count, first_received_at, last_received_at,"
            " idle_seconds, complete_due_at, completed_at) VALUES"
            " (?, ?, 1, 'primary', 'routed', ?, 'CT', ?, 2, ?, ?, 30, ?, ?)",
            (
                study_id,
                f"{STUDY_UID}.{job_id}",
                spec["site"],
                "Thorax Jansen^Pieternella PATID-998877",
                t,
                t + 10,
                t + 40,
                t + 40,
            ),
        )
        conn.execute(
            "INSERT INTO instances (study_id, sop_instance_uid, sop_class_uid, series_uid,"
            " transfer_syntax, path, size, received_at, calling_ae) VALUES"
            " (?, ?, '1.2.840.10008.5.1.4.1.1.2', ?, '1.2.840.10008.1.2.1', ?, 10, ?, ?)",
            (
                study_id,
                f"{STUDY_UID}.1.{job_id}",
                f"{STUDY_UID}.2",
                f"spool/{STUDY_UID}/{job_id}.dcm",
                t,
                spec["site"],
            ),
        )
        state = str(spec["state"])
        has_result = state == "delivered"
        conn.execute(
            "INSERT INTO jobs (id, study_id, algorithm_id, route, state, reason, result_json,"
            " created_at, updated_at) VALUES (?, ?, ?, 'route', ?, ?, ?, ?, ?)",
            (
                job_id,
                study_id,
                spec["alg"],
                state,
                "slice thickness 6 mm, algorithm needs at most 5 mm"
                if state == "rejected"
                else None,
                _result_json(str(spec["alg"]), spec["pol"]) if has_result else None,  # type: ignore[arg-type]
                t + 41,
                t + 41,
            ),
        )
        audit(t + 41, "job", "job_created", study_id=study_id, job_id=job_id, to_state="queued")

        def move(at: float, frm: str, to: str, jid: int = job_id, sid: int = study_id) -> None:
            audit(at, "job", "state_changed", study_id=sid, job_id=jid, from_state=frm, to_state=to)

        def stage(name: str, a: float, b: float, jid: int = job_id) -> None:
            conn.execute(
                "INSERT INTO job_stage_times (job_id, stage, started_at, finished_at)"
                " VALUES (?, ?, ?, ?)",
                (jid, name, a, b),
            )

        if state == "rejected":
            move(t + 42, "queued", "rejected")
        elif state == "failed":
            stage("pseudonymise", t + 42, t + 43)
            move(t + 43, "queued", "pseudonymised")
            move(t + 44, "pseudonymised", "failed")
        else:
            stage("pseudonymise", t + 42, t + 43)
            move(t + 43, "queued", "pseudonymised")
            move(t + 43.5, "pseudonymised", "submitted")
            if spec["alg"] == "vendor-x":
                stage("submit", t + 43, t + 43.5)
                stage("vendor", t + 43.5, t + 46)
            else:
                stage("model", t + 44, t + 46)
                stage("build_results", t + 46, t + 49)
            stage("reidentify", t + 47, t + 49)
            move(t + 50, "submitted", "result_received")
            deliver = float(spec["turnaround"]) - 40  # type: ignore[arg-type]
            stage("deliver", t + 50, t + 50 + deliver)
            move(t + 50 + deliver, "result_received", "delivered")
        if spec["input"] is not None:
            manufacturer, model, thickness, kernel, protocol = spec["input"]  # type: ignore[misc]
            conn.execute(
                "INSERT INTO job_inputs (job_id, manufacturer, model, slice_thickness, kernel,"
                " protocol, series_description, body_part) VALUES (?, ?, ?, ?, ?, ?, '', 'CHEST')",
                (job_id, manufacturer, model, thickness, kernel, protocol),
            )
        for n, (verdict, who) in enumerate(spec["verdicts"]):  # type: ignore[arg-type]
            conn.execute(
                "INSERT INTO feedback (job_id, verdict, comment, who, at) VALUES (?, ?, ?, ?, ?)",
                (job_id, verdict, "patient de Vries-Bakker, see prior", who, t + 3600 + n),
            )
    conn.execute(
        "INSERT INTO pseudonyms (pseudonym, kind, original) VALUES"
        " ('AIFI-1^', 'PatientName', 'Jansen^Pieternella'), ('X1', 'PatientID', 'PATID-998877'),"
        " ('X2', 'AccessionNumber', 'ACC-55443322'), ('X3', 'PatientBirthDate', '19470312')"
    )
    conn.execute("COMMIT")


# Hand-computed figures for PERIOD (job 9 lies outside it).
EXPECTED = {
    # delivered turnarounds: cxr-local 42, 60, 45, 50, 90 -> sorted 42 45 50 60 90:
    # median 50, p90 = ceil(0.9*5) = 5th = 90, min 42, max 90; vendor-x 300 alone
    "turnaround": {
        "cxr-local": (5, 50.0, 90.0, 42.0, 90.0),
        "vendor-x": (1, 300.0, 300.0, 300.0, 300.0),
    },
    # every delivered job: receiving 10 s, completion wait 30 s, queued 2 s (t+40 -> t+42),
    # pseudonymise 1 s; cxr-local model 2 s, build 3 - 2 = 1 s, re-identify 2 s;
    # vendor-x submit 0.5 s, vendor 2.5 s, re-identify 2 s, deliver 260 s
    "stages": {
        "cxr-local": {
            "receiving": 10.0,
            "completion_wait": 30.0,
            "queued": 2.0,
            "pseudonymise": 1.0,
            "submit": None,
            "model": 2.0,
            "build_results": 1.0,
            "reidentify": 2.0,
            "deliver": 10.0,
            "turnaround": 50.0,
        },
        "vendor-x": {
            "receiving": 10.0,
            "completion_wait": 30.0,
            "queued": 2.0,
            "pseudonymise": 1.0,
            "submit": 0.5,
            "model": 2.5,
            "build_results": None,
            "reidentify": 2.0,
            "deliver": 260.0,
            "turnaround": 300.0,
        },
    },
    # deliver = turnaround - 40: cxr-local 2, 20, 5, 10, 50 -> median 10, p90 50
    # accuracy, cxr-local: verdicts 1 agree(+), 2 fp(+), 3 missed(-), 4 agree(-), 6 agree(+)
    # agree 3, fp 1, missed 1 -> agreement 3/5; TP 2 (1, 6), FP 1 -> PPV 2/3;
    # sensitivity 2/(2+1) = 2/3; TN 1. vendor-x: agree 1 of 1; no PPV (no positive finding)
    "agreement": {"cxr-local": (3, 5), "vendor-x": (1, 1)},
    "ppv": {"cxr-local": (2, 3), "vendor-x": (0, 0)},
    "sensitivity": {"cxr-local": (2, 3), "vendor-x": None},
    # Wilson 95 % intervals (published tables / any statistics package)
    "wilson": {(3, 5): (0.2307, 0.8824), (2, 3): (0.2077, 0.9385), (1, 1): (0.2065, 1.0)},
    # volume: 2026-03-02: cxr-local delivered 3 (1, 2, 3), vendor-x delivered 1 (7);
    # 2026-03-03: cxr-local delivered 2 (4, 6), rejected 1 (5); vendor-x failed 1 (8)
    "volume": {
        ("2026-03-02", "cxr-local"): (3, 0, 0, 0),
        ("2026-03-02", "vendor-x"): (1, 0, 0, 0),
        ("2026-03-03", "cxr-local"): (2, 1, 0, 0),
        ("2026-03-03", "vendor-x"): (0, 0, 1, 0),
    },
    "service": {"observed": 48 * H, "up": 43 * H, "starts": 3, "unclean": 1, "longest": 2 * H},
    "nodes": {
        "OLDPACS": (0, 0, 48 * H, 48 * H),
        "PACS": (5, 2, 47 * H, 1 * H),
        "VENDOR": (1, 0, 46 * H, 0.0),
    },
}
