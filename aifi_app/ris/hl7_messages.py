"""HL7 v2.5.1 messages to the RIS, built and checked with python-hl7 (``hl7``).

* :func:`result_message`: ORU^R01 (unsolicited observation) with one coded OBX per finding
  (CWE: the concept, value SCT Present/Absent, abnormal flag A/N), its probability (NM,
  DCM 122157, UCUM "1"), the finding in words (ST), measurements (NM with UCUM units),
  regions (CWE Present), and the algorithm's name and version (DCM 111001 / 111003, and
  OBX-18 equipment instance). Result status P (preliminary): an AI result is not a
  diagnosis and nobody verified it.
* :func:`priority_message`: OMG^O19 (general clinical order) with ORC-1 XO "change order
  request" and TQ1-9 priority S (Stat, HL7 table 0485), ORC-7.6 S as well for RIS that
  still read the v2.3 quantity/timing field, and an NTE saying which urgent finding the
  AI suspects. HL7 v2.5 retains ORM^O01 only for backward compatibility; OMG^O19 is its
  successor for orders that are not pharmacy/diet/lab-specific.

Both carry the original (re-identified) patient and order identifiers, because the RIS
files them by those: PID-3 patient ID (with its issuer), PID-5 name, PID-7 birth date,
PID-8 sex, the accession number as filler order number (ORC-3, OBR-3) and OBR-18
(IHE RAD), and the Study Instance UID in a ZDS segment (IHE RAD). They are built only
from the original header and go only to the configured RIS; they are never logged.
Character set UTF-8 (MSH-18 "UNICODE UTF-8"). Thread: any.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import hl7
from pydicom import Dataset

from aifi_app.algorithms.findings import AlgorithmIdentity, AlgorithmResult, CodedConcept, Finding

__all__ = [
    "HL7_VERSION",
    "MessageParties",
    "OrderIdentity",
    "ack_status",
    "order_identity",
    "priority_message",
    "result_message",
]

HL7_VERSION = "2.5.1"
CHARACTER_SET = "UNICODE UTF-8"
RESULT_TYPE = "ORU^R01^ORU_R01"
PRIORITY_TYPE = "OMG^O19^OMG_O19"
PRESENT = CodedConcept("52101004", "SCT", "Present")
ABSENT = CodedConcept("272519000", "SCT", "Absent")
PROBABILITY = CodedConcept("122157", "DCM", "Probability")
NO_UNITS = CodedConcept("1", "UCUM", "no units")
FINDING_TEXT = CodedConcept("121071", "DCM", "Finding")
ALGORITHM_NAME = CodedConcept("111001", "DCM", "Algorithm Name")
ALGORITHM_VERSION = CodedConcept("111003", "DCM", "Algorithm Version")
DISCLAIMER = "AI result, not a diagnosis"


@dataclass(frozen=True)
class MessageParties:
    """MSH-3 to MSH-6, from the site's settings."""

    sending_application: str
    sending_facility: str
    receiving_application: str
    receiving_facility: str


@dataclass(frozen=True)
class OrderIdentity:
    """The original patient and order identifiers of a job's study (from its header)."""

    patient_id: str
    issuer_of_patient_id: str
    patient_name: str
    """DICOM PN, alphabetic group: Family^Given^Middle^Prefix^Suffix."""
    birth_date: str
    sex: str
    accession_number: str
    placer_order_number: str
    study_instance_uid: str


def order_identity(original: Dataset) -> OrderIdentity:
    """The identifiers of an original (received, not pseudonymised) image header."""
    placer = str(original.get("PlacerOrderNumberImagingServiceRequest", "") or "")
    if not placer:
        for item in original.get("RequestAttributesSequence", []):
            placer = str(item.get("PlacerOrderNumberImagingServiceRequest", "") or "")
            if placer:
                break
    name = str(original.get("PatientName", "") or "").split("=")[0]
    return OrderIdentity(
        patient_id=str(original.get("PatientID", "") or ""),
        issuer_of_patient_id=str(original.get("IssuerOfPatientID", "") or ""),
        patient_name=name,
        birth_date=str(original.get("PatientBirthDate", "") or ""),
        sex=str(original.get("PatientSex", "") or ""),
        accession_number=str(original.get("AccessionNumber", "") or ""),
        placer_order_number=placer,
        study_instance_uid=str(original.StudyInstanceUID),
    )


def result_message(
    control_id: str,
    parties: MessageParties,
    order: OrderIdentity,
    result: AlgorithmResult,
    at: datetime,
) -> str:
    """The ORU^R01 for ``result`` (segments separated by CR), checked by parsing it back."""
    algorithm = result.algorithm
    when = _ts(at)
    obx: list[list[str]] = []

    def add(value_type: str, code: CodedConcept, sub: str, value: str, **extra: str) -> None:
        fields = [""] * 19
        fields[1] = str(len(obx) + 1)
        fields[2] = value_type
        fields[3] = _ce(code)
        fields[4] = sub
        fields[5] = value
        fields[6] = extra.get("units", "")
        fields[8] = extra.get("flag", "")
        fields[11] = "P"
        fields[14] = when
        fields[18] = _esc(_equipment(algorithm))
        obx.append(fields)

    add("ST", ALGORITHM_NAME, "", _esc(algorithm.name))
    add("ST", ALGORITHM_VERSION, "", _esc(algorithm.version))
    for n, finding in enumerate(result.findings, start=1):
        sub = str(n)
        add(
            "CWE",
            finding.concept,
            sub,
            _ce(PRESENT if finding.positive else ABSENT),
            flag="A" if finding.positive else "N",
        )
        add("NM", PROBABILITY, sub, f"{finding.score:.4g}", units=_ce(NO_UNITS))
        add("ST", FINDING_TEXT, sub, _esc(_finding_words(algorithm, finding)))
    offset = len(result.findings)
    for n, measurement in enumerate(result.measurements, start=offset + 1):
        add(
            "NM",
            measurement.quantity,
            str(n),
            f"{measurement.value:.6g}",
            units=_ce(measurement.unit),
        )
        add("ST", FINDING_TEXT, str(n), _esc(f"{DISCLAIMER}: {measurement.label}"))
    offset += len(result.measurements)
    for n, region in enumerate(result.regions, start=offset + 1):
        add("CWE", region.concept, str(n), _ce(PRESENT), flag="A")
        add("ST", FINDING_TEXT, str(n), _esc(f"{DISCLAIMER}: {region.label}"))

    segments = [
        _msh(control_id, parties, RESULT_TYPE, when),
        _pid(order),
        _segment("ORC", ["RE", _esc(order.placer_order_number), _esc(order.accession_number)]),
        _obr(order, algorithm, when, status="P"),
        _zds(order),
        *("|".join(["OBX", *fields[1:]]).rstrip("|") for fields in obx),
    ]
    return _checked("\r".join(segments), RESULT_TYPE)


def priority_message(
    control_id: str,
    parties: MessageParties,
    order: OrderIdentity,
    algorithm: AlgorithmIdentity,
    urgent: Sequence[Finding],
    at: datetime,
) -> str:
    """The OMG^O19 that asks the RIS to raise the order's priority to STAT because of
    the ``urgent`` findings (segments separated by CR), checked by parsing it back."""
    if not urgent:
        raise ValueError("a priority message needs at least one urgent finding")
    when = _ts(at)
    words = "; ".join(_finding_words(algorithm, f) for f in urgent)
    orc = [""] * 10
    orc[1] = "XO"
    orc[2] = _esc(order.placer_order_number)
    orc[3] = _esc(order.accession_number)
    orc[5] = "SC"  # order status: in process, scheduled
    orc[7] = "^^^^^S"  # v2.3 quantity/timing, priority S (kept for older RIS)
    orc[9] = when
    segments = [
        _msh(control_id, parties, PRIORITY_TYPE, when),
        _pid(order),
        "|".join(["ORC", *orc[1:]]).rstrip("|"),
        "TQ1|1||||||||S^Stat^HL70485",
        _obr(order, algorithm, when, status=""),
        _segment("NTE", ["1", "L", _esc(f"Priority raised to STAT by AI: {words}")]),
        _zds(order),
    ]
    return _checked("\r".join(segments), PRIORITY_TYPE)


def ack_status(response: str, control_id: str) -> tuple[str, str]:
    """Read an ACK: (MSA-1 acknowledgment code, words). The code is "" when the response
    is not an ACK for ``control_id``; AA (or CA) means accepted."""
    try:
        message = hl7.parse(response.replace("\n", "\r"))
        msa = message.segment("MSA")
    except Exception:
        return "", "the answer is not an HL7 ACK"
    code = str(msa(1)).strip()
    if str(msa(2)).strip() != control_id:
        return "", "the ACK acknowledges another message"
    text = str(msa(3)).strip() if len(msa) > 3 else ""
    err = ""
    try:
        err = str(message.segment("ERR")(3)(1)(2)).strip()
    except Exception:
        err = ""
    meaning = {"AA": "accepted", "CA": "accepted", "AE": "application error"}.get(
        code, "rejected" if code in ("AR", "CR", "CE") else "unknown code"
    )
    details = ", ".join(v for v in (text, err) if v)
    return code, f"{code} ({meaning}{': ' + details if details else ''})"


def _msh(control_id: str, parties: MessageParties, message_type: str, when: str) -> str:
    fields = [
        "MSH",
        "^~\\&",
        _esc(parties.sending_application),
        _esc(parties.sending_facility),
        _esc(parties.receiving_application),
        _esc(parties.receiving_facility),
        when,
        "",
        message_type,
        control_id,
        "P",
        HL7_VERSION,
        "",
        "",
        "AL",  # accept acknowledgment: always
        "NE",  # application acknowledgment: never (original mode ACK answers)
        "",
        CHARACTER_SET,
    ]
    return "|".join(fields)


def _pid(order: OrderIdentity) -> str:
    cx = _esc(order.patient_id)
    if order.issuer_of_patient_id:
        cx += "^^^" + _esc(order.issuer_of_patient_id)
    family, given, middle, prefix, suffix = (order.patient_name.split("^") + [""] * 5)[:5]
    xpn = "^".join(_esc(v) for v in (family, given, middle, suffix, prefix)).rstrip("^")
    sex = order.sex.upper() if order.sex.upper() in ("M", "F", "O") else "U"
    return _segment("PID", ["1", "", cx, "", xpn, "", _esc(order.birth_date), sex])


def _obr(order: OrderIdentity, algorithm: AlgorithmIdentity, when: str, status: str) -> str:
    fields = [""] * 26
    fields[1] = "1"
    fields[2] = _esc(order.placer_order_number)
    fields[3] = _esc(order.accession_number)
    fields[4] = _ce(
        CodedConcept(f"AIFI-{algorithm.algorithm_id}", "99AIFI", _obr_service(algorithm))
    )
    fields[7] = when
    fields[18] = _esc(order.accession_number)
    fields[22] = when
    fields[25] = status
    return "|".join(["OBR", *fields[1:]]).rstrip("|")


def _obr_service(algorithm: AlgorithmIdentity) -> str:
    return f"AI analysis: {algorithm.name}"


def _zds(order: OrderIdentity) -> str:
    return f"ZDS|{_esc(order.study_instance_uid)}^AIFI^Application^DICOM"


def _segment(name: str, fields: Sequence[str]) -> str:
    return "|".join([name, *fields]).rstrip("|")


def _finding_words(algorithm: AlgorithmIdentity, finding: Finding) -> str:
    return (
        f"{DISCLAIMER}: {algorithm.name} {algorithm.version}: {finding.label} "
        f"(score {finding.score:.2f}, threshold {finding.threshold:.2f})"
    )


def _equipment(algorithm: AlgorithmIdentity) -> str:
    return f"{algorithm.name} {algorithm.version} ({algorithm.vendor})"


def _ce(code: CodedConcept) -> str:
    return f"{_esc(code.value)}^{_esc(code.meaning)}^{_esc(code.scheme)}"


_ESCAPES = str.maketrans({"\\": "\\E\\", "|": "\\F\\", "^": "\\S\\", "&": "\\T\\", "~": "\\R\\"})


def _esc(text: str) -> str:
    """Escape the HL7 delimiters (PS v2.5.1 2.7.4: \\F\\ \\S\\ \\T\\ \\R\\ \\E\\) and drop
    line breaks. Not python-hl7's ``escape``: it turns every non-ASCII character into a
    hex escape, where our messages carry UTF-8 (MSH-18) as it is."""
    return " ".join(str(text).split()).translate(_ESCAPES)


def _ts(at: datetime) -> str:
    return at.strftime("%Y%m%d%H%M%S%z")


def _checked(text: str, message_type: str) -> str:
    """Parse the message back with python-hl7 and check its type and control ID."""
    message = hl7.parse(text)
    if str(message.segment("MSH")(9)) != message_type:
        raise ValueError("the built HL7 message does not parse back to its type")
    return text
