"""The header values of a job's input that tell an algorithm's weak spots apart.

Recorded when a job is pseudonymised or rejected, from the header of the series it took
(or, when rejected, of the study's first instance): scanner manufacturer and model, slice
thickness, convolution kernel and body part as they are (device and technique
attributes, which PS3.15 Annex E keeps), and the protocol name and series description
after Clean Descriptors (Annex E's option for free text), so that a name typed into a
protocol never reaches the database or a report. No patient data.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from pydicom import Dataset
from pydicom.multival import MultiValue

from aifi_app.pseudonymise.clean_descriptors import clean_descriptor
from aifi_app.store.database import Database

HEADER_TAGS = (
    "Manufacturer",
    "ManufacturerModelName",
    "SliceThickness",
    "ConvolutionKernel",
    "ProtocolName",
    "SeriesDescription",
    "BodyPartExamined",
)
"""The attributes read (for ``dcmread(specific_tags=...)``)."""


@dataclass(frozen=True)
class JobInput:
    manufacturer: str = ""
    model: str = ""
    slice_thickness: float | None = None
    kernel: str = ""
    protocol: str = ""
    series_description: str = ""
    body_part: str = ""


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, MultiValue):
        return "\\".join(str(v) for v in value).strip()
    return str(value).strip()


def from_header(ds: Dataset) -> JobInput:
    """What :data:`HEADER_TAGS` say; free text through Clean Descriptors."""
    thickness: float | None
    try:
        raw = ds.get("SliceThickness")
        thickness = None if raw in (None, "") else round(float(raw), 3)
    except (TypeError, ValueError):
        thickness = None
    return JobInput(
        manufacturer=_text(ds, "Manufacturer")[:64],
        model=_text(ds, "ManufacturerModelName")[:64],
        slice_thickness=thickness,
        kernel=_text(ds, "ConvolutionKernel")[:64],
        protocol=clean_descriptor(_text(ds, "ProtocolName"), "LO"),
        series_description=clean_descriptor(_text(ds, "SeriesDescription"), "LO"),
        body_part=_text(ds, "BodyPartExamined")[:16],
    )


def record(db: Database, job_id: int, found: JobInput) -> None:
    """Record (or replace) a job's input values, in a transaction of its own."""
    with db.transaction() as conn:
        record_in(conn, job_id, found)


def record_in(conn: sqlite3.Connection, job_id: int, found: JobInput) -> None:
    """Record (or replace) a job's input values in the caller's transaction."""
    conn.execute(
        "INSERT INTO job_inputs (job_id, manufacturer, model, slice_thickness, kernel,"
        " protocol, series_description, body_part) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (job_id) DO UPDATE SET manufacturer = excluded.manufacturer,"
        " model = excluded.model, slice_thickness = excluded.slice_thickness,"
        " kernel = excluded.kernel, protocol = excluded.protocol,"
        " series_description = excluded.series_description,"
        " body_part = excluded.body_part",
        (
            job_id,
            found.manufacturer,
            found.model,
            found.slice_thickness,
            found.kernel,
            found.protocol,
            found.series_description,
            found.body_part,
        ),
    )


def of_job(db: Database, job_id: int) -> JobInput | None:
    r = db.conn.execute(
        "SELECT manufacturer, model, slice_thickness, kernel, protocol, series_description,"
        " body_part FROM job_inputs WHERE job_id = ?",
        (job_id,),
    ).fetchone()
    if r is None:
        return None
    return JobInput(r[0], r[1], None if r[2] is None else float(r[2]), r[3], r[4], r[5], r[6])
