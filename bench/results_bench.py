"""Time to build each result object of issue 5, and one HL7 round trip to a local RIS.

    python bench/results_bench.py [--repeats 20]

On a synthetic chest radiograph (3000 x 2500, 16 bit) with one classification finding
and three regions: the TID 1500 SR (with SCOORDs), the GSPS and the KOS built with
highdicom (median of ``--repeats``); then an ORU^R01 built and sent over MLLP to
python-hl7's server on loopback, ACK read (median of ``--repeats`` round trips, one
connection each, as the appliance sends). Prints one line per figure and a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aifi_app.algorithms.findings import (
    AlgorithmIdentity,
    AlgorithmResult,
    CodedConcept,
    Finding,
    RegionFinding,
)
from aifi_app.results import (
    build_key_object_selection,
    build_measurement_report,
    build_presentation_state,
)
from aifi_app.ris.hl7_messages import MessageParties, order_identity, result_message
from aifi_app.ris.mllp_sender import exchange
from aifi_app.sample_studies import chest_radiograph, demo_patient, phantom_chest
from tests.helpers.mllp_listener import MllpListener

ALGORITHM = AlgorithmIdentity("bench", "Bench detector", "1.0", "Bench")
OPACITY = CodedConcept("128309007", "SCT", "Radiographic opacity")


def _median_ms(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    import numpy as np
    from PIL import Image

    small = phantom_chest()
    large = np.asarray(Image.fromarray(small).resize((2500, 3000)), dtype=np.uint16) * 16
    image = chest_radiograph(demo_patient(1), large)
    uid, cls, series = (
        str(image.SOPInstanceUID),
        str(image.SOPClassUID),
        str(image.SeriesInstanceUID),
    )
    finding = Finding(OPACITY, 0.8, 0.5, True, uid, cls, series, "Opacity suspected")
    regions = tuple(
        RegionFinding(
            OPACITY,
            f"Opacity {n}",
            "box",
            ((100.0 * n, 200.0), (100.0 * n + 300, 600.0)),
            uid,
            cls,
            series,
            0.8,
        )
        for n in range(1, 4)
    )
    result = AlgorithmResult(ALGORITHM, findings=(finding,), regions=regions)
    uids = {
        "series_instance_uid": "2.25.1",
        "sop_instance_uid": "2.25.2",
        "series_number": 1,
        "instance_number": 1,
    }
    figures = {
        "sr_ms": _median_ms(
            lambda: build_measurement_report(
                [image], result, device_observer_uid="2.25.3", software_version="1", **uids
            ),  # type: ignore[arg-type]
            args.repeats,
        ),
        "gsps_ms": _median_ms(
            lambda: build_presentation_state(
                [image], result, tracking_base_uid="2.25.4", software_version="1", **uids
            ),  # type: ignore[arg-type]
            args.repeats,
        ),
        "kos_ms": _median_ms(
            lambda: build_key_object_selection(
                [image], result, device_observer_uid="2.25.3", **uids
            ),  # type: ignore[arg-type]
            args.repeats,
        ),
    }
    parties = MessageParties("AIFI", "SITE", "RIS", "SITE")
    order = order_identity(image)
    listener = MllpListener("ack")
    try:
        figures["oru_round_trip_ms"] = _median_ms(
            lambda: exchange(
                "127.0.0.1",
                listener.port,
                result_message("C1", parties, order, result, datetime.now(UTC)),
                10,
            ),
            args.repeats,
        )
    finally:
        listener.stop()
    for name, value in figures.items():
        print(f"{name:20s} {value:8.2f}")
    print(json.dumps({k: round(v, 2) for k, v in figures.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
