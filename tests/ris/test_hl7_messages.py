"""HL7 v2.5.1 messages to the RIS: parsed back with python-hl7, fields where the RIS
reads them, delimiters escaped, ACKs read."""

from __future__ import annotations

from datetime import UTC, datetime

import hl7
import pytest
from pydicom import Dataset

from aifi_app.algorithms.findings import (
    AlgorithmIdentity,
    AlgorithmResult,
    CodedConcept,
    Finding,
    MeasurementFinding,
)
from aifi_app.ris.hl7_messages import (
    MessageParties,
    ack_status,
    order_identity,
    priority_message,
    result_message,
)

ALGORITHM = AlgorithmIdentity("cina-pe", "CINA-PE", "2.3.1", "Avicenna (simulated)")
PE = CodedConcept("59282003", "SCT", "Pulmonary embolism")
PARTIES = MessageParties("AIFI", "RIJNSTATE", "RIS", "RIJNSTATE")
AT = datetime(2026, 3, 11, 10, 15, 0, tzinfo=UTC)


def original() -> Dataset:
    ds = Dataset()
    ds.PatientName = "de Vries^Jan|Piet^^Dhr.^Jr"
    ds.PatientID = "PID7731902"
    ds.IssuerOfPatientID = "RIJNSTATE"
    ds.PatientBirthDate = "19500101"
    ds.PatientSex = "M"
    ds.AccessionNumber = "ACC88112233"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    request = Dataset()
    request.PlacerOrderNumberImagingServiceRequest = "ORD-5521"
    ds.RequestAttributesSequence = [request]
    return ds


def finding(positive: bool = True, label: str = "PE suspected") -> Finding:
    return Finding(
        concept=PE,
        score=0.93 if positive else 0.05,
        threshold=0.5,
        positive=positive,
        source_sop_instance_uid="2.25.1",
        source_sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        source_series_instance_uid="2.25.2",
        label=label,
    )


def test_result_message_carries_the_finding_in_codes_and_words() -> None:
    volume = MeasurementFinding(
        concept=CodedConcept("39607008", "SCT", "Lung structure"),
        quantity=CodedConcept("118565006", "SCT", "Volume"),
        value=4321.5,
        unit=CodedConcept("mL", "UCUM", "milliliter"),
        method="x",
        source_series_instance_uid="2.25.2",
        source_sop_instance_uids=("2.25.1",),
        source_sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        label="Lung volume 4321.5 mL",
    )
    result = AlgorithmResult(ALGORITHM, findings=(finding(),), measurements=(volume,))
    text = result_message("AIFI7R1", PARTIES, order_identity(original()), result, AT)
    message = hl7.parse(text)
    msh = message.segment("MSH")
    assert str(msh(9)) == "ORU^R01^ORU_R01"
    assert str(msh(10)) == "AIFI7R1"
    assert str(msh(12)) == "2.5.1"
    assert str(msh(18)) == "UNICODE UTF-8"
    assert [str(msh(n)) for n in (3, 4, 5, 6)] == ["AIFI", "RIJNSTATE", "RIS", "RIJNSTATE"]
    pid = message.segment("PID")
    assert str(pid(3)) == "PID7731902^^^RIJNSTATE"
    # DICOM PN Family^Given^Middle^Prefix^Suffix -> XPN Family^Given^Middle^Suffix^Prefix
    assert str(pid(5)) == "de Vries^Jan\\F\\Piet^^Jr^Dhr."
    assert message.unescape(str(pid(5)(1)(2))) == "Jan|Piet"
    assert (str(pid(7)), str(pid(8))) == ("19500101", "M")
    obr = message.segment("OBR")
    assert (str(obr(2)), str(obr(3)), str(obr(18))) == ("ORD-5521", "ACC88112233", "ACC88112233")
    assert str(obr(25)) == "P"
    assert str(message.segment("ZDS")(1)(1)(1)) == "1.2.826.0.1.3680043.8.498.1"
    obx = {(str(s(3)(1)(1)), str(s(4))): s for s in message.segments("OBX")}
    assert str(obx[("111001", "")](5)) == "CINA-PE"
    assert str(obx[("111003", "")](5)) == "2.3.1"
    coded = obx[("59282003", "1")]
    assert (str(coded(2)), str(coded(3)), str(coded(5))) == (
        "CWE",
        "59282003^Pulmonary embolism^SCT",
        "52101004^Present^SCT",
    )
    assert str(coded(8)) == "A" and str(coded(11)) == "P"
    assert str(coded(18)) == "CINA-PE 2.3.1 (Avicenna (simulated))"
    assert str(obx[("122157", "1")](5)) == "0.93"
    words = str(obx[("121071", "1")](5))
    assert words.startswith("AI result, not a diagnosis: CINA-PE 2.3.1: PE suspected")
    volume_obx = obx[("118565006", "2")]
    assert (str(volume_obx(2)), str(volume_obx(5)), str(volume_obx(6))) == (
        "NM",
        "4321.5",
        "mL^milliliter^UCUM",
    )


def test_negative_finding_is_absent_and_normal() -> None:
    result = AlgorithmResult(ALGORITHM, findings=(finding(False, "No PE"),))
    message = hl7.parse(result_message("C1", PARTIES, order_identity(original()), result, AT))
    coded = next(s for s in message.segments("OBX") if str(s(2)) == "CWE")
    assert (str(coded(5)), str(coded(8))) == ("272519000^Absent^SCT", "N")


def test_priority_message_raises_the_order_to_stat() -> None:
    text = priority_message(
        "AIFI7P1", PARTIES, order_identity(original()), ALGORITHM, [finding()], AT
    )
    message = hl7.parse(text)
    assert str(message.segment("MSH")(9)) == "OMG^O19^OMG_O19"
    orc = message.segment("ORC")
    assert (str(orc(1)), str(orc(2)), str(orc(3))) == ("XO", "ORD-5521", "ACC88112233")
    assert str(orc(7)(1)(6)) == "S"
    assert str(message.segment("TQ1")(9)) == "S^Stat^HL70485"
    assert "PE suspected" in str(message.segment("NTE")(3))
    assert str(message.segment("PID")(3)) == "PID7731902^^^RIJNSTATE"
    with pytest.raises(ValueError, match="urgent finding"):
        priority_message("C2", PARTIES, order_identity(original()), ALGORITHM, [], AT)


@pytest.mark.parametrize(
    ("ack", "expected"),
    [
        ("AA", "AA"),
        ("AE", "AE"),
        ("AR", "AR"),
    ],
)
def test_ack_codes_are_read_for_our_control_id(ack: str, expected: str) -> None:
    sent = hl7.parse(
        result_message(
            "AIFI9R1",
            PARTIES,
            order_identity(original()),
            AlgorithmResult(ALGORITHM, findings=(finding(),)),
            AT,
        )
    )
    answer = str(sent.create_ack(ack))
    assert ack_status(answer, "AIFI9R1")[0] == expected
    assert ack_status(answer, "OTHER")[0] == ""
    assert ack_status("not hl7 at all", "AIFI9R1") == ("", "the answer is not an HL7 ACK")
