"""An SR's evidence of its source images, made while the model runs.

A measurement report (:func:`aifi_app.results.structured_report.build_measurement_report`)
records every source image as evidence (Current Requested Procedure Evidence Sequence:
one study item, an item per series, an item per instance). For a 500-slice CT that is
most of the SR's work after the model: highdicom's ``collect_evidence`` makes 500 pydicom
data sets, re-identification checks and maps their 1,000 UIDs, the writer encodes them
(~0.08 s of CPU of the SR's ~0.12 s). None of it depends on the model's result.

So it is made ahead (:func:`sources_evidence`, in the pre-pseudonymiser's child beside the
SEG built ahead: :mod:`aifi_app.pipeline.seg_ahead`): highdicom's own ``collect_evidence``
over the sources, re-identified by the caller (the job's strict check), its series items
encoded as pydicom writes them (:func:`aifi_app.encoded_sequences.encoded_items`). After
the model the SR is built by highdicom as before, but given as evidence only the sources
its content references (``evidence_of_all_sources=False``), is checked and re-identified
as before, and then gets the whole evidence: its own study item, with the series items
made ahead in place of its sources' series items, and its own items of the SEGs it
references after them (:class:`EvidenceJoin`). The file is byte for byte the one
highdicom's build with every source gives (tests compare); highdicom is set aside only
for writing this one sequence, which it would make from the same sources the same way.

Thread: any (pure CPU). Importing this module does not import highdicom
(:func:`sources_evidence` does).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydicom import Dataset
from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.filewriter import correct_ambiguous_vr
from pydicom.tag import BaseTag

from aifi_app.encoded_sequences import (
    element_bytes,
    encoded_items,
    item_bytes,
    sequence_bytes,
    with_long_sequences_encoded,
)

__all__ = ["EVIDENCE_TAG", "EvidenceJoin", "SourcesEvidence", "evidence_digest", "sources_evidence"]

EVIDENCE_TAG = BaseTag(0x0040A375)
"""Current Requested Procedure Evidence Sequence."""
_REFERENCED_SERIES = BaseTag(0x00081115)
_EVIDENCE_TAGS = tuple(
    BaseTag(tag)
    for tag in (0x0020000D, 0x0020000E, 0x00080016, 0x00080018)  # study, series, class, instance
)


@dataclass(frozen=True)
class SourcesEvidence:
    """The source images as an SR's evidence, re-identified and encoded."""

    digest: str
    """:func:`evidence_digest` of the pseudonymised sources it was made from."""
    series_uids: tuple[str, ...]
    """The sources' (pseudonymised) Series Instance UIDs, in the evidence's order."""
    items: bytes
    """The re-identified Referenced Series Sequence items (Explicit VR Little Endian)."""


def evidence_digest(sources: Sequence[Dataset]) -> str:
    """A digest of what an SR records of ``sources`` as evidence (their study, series,
    SOP class and instance UIDs, in order)."""
    digest = hashlib.sha256()
    for ds in sources:
        digest.update("\\".join(_text(ds.get_item(tag)) for tag in _EVIDENCE_TAGS).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def _text(element: DataElement | RawDataElement | None) -> str:
    """A UID element's value as text, decoded or not (as read: without its padding)."""
    if element is None:
        return ""
    value = element.value
    if isinstance(value, bytes):
        return value.decode("ascii", "replace").strip("\0 ")
    return str(value or "")


def sources_evidence(
    sources: Sequence[Dataset], reidentify: Callable[[Dataset], Dataset]
) -> SourcesEvidence:
    """``sources`` as an SR's evidence: highdicom's Current Requested Procedure Evidence
    items for them, re-identified by ``reidentify`` (given a data set holding the
    sequence at its top level, as the SR holds it; it raises what the check raises) and
    encoded. Raises ``ValueError`` when there are no sources or they span studies."""
    # highdicom (~16 MB) imported here, not with the module: the worker reads the
    # evidence made ahead (SourcesEvidence, evidence_digest) before it loads highdicom
    from highdicom.sr.utils import collect_evidence

    if not sources:
        raise ValueError("no sources")
    content = Dataset()
    content.ContentSequence = []
    same_study, other_studies = collect_evidence(
        sources, content, study_instance_uid=sources[0].StudyInstanceUID
    )
    if other_studies or len(same_study) != 1:
        raise ValueError("the sources span more than one study")
    (study,) = same_study
    series_uids = tuple(str(item.SeriesInstanceUID) for item in study.ReferencedSeriesSequence)
    holder = Dataset()
    holder.CurrentRequestedProcedureEvidenceSequence = same_study
    restored = reidentify(holder)
    (restored_study,) = restored.CurrentRequestedProcedureEvidenceSequence
    return SourcesEvidence(
        digest=evidence_digest(sources),
        series_uids=series_uids,
        items=encoded_items(restored_study.ReferencedSeriesSequence),
    )


@dataclass(frozen=True)
class EvidenceJoin:
    """How an SR built with part of its sources as evidence gets them all once it is
    re-identified: :meth:`of` checks the pseudonymised SR, :meth:`apply` joins."""

    evidence: SourcesEvidence
    own_series: int
    """How many of the SR's first series items are its sources' (the rest: its SEGs')."""

    @classmethod
    def of(cls, sr: Dataset, evidence: SourcesEvidence) -> EvidenceJoin:
        """The join for ``sr`` (pseudonymised, built with ``evidence_of_all_sources=False``
        from the sources ``evidence`` was made from). Raises ``ValueError`` when its
        evidence is not one study item whose first series items are among the sources'
        series and whose others (the SEGs') are not."""
        items = sr.get("CurrentRequestedProcedureEvidenceSequence")
        if "PertinentOtherEvidenceSequence" in sr or items is None or len(items) != 1:
            raise ValueError("the SR's evidence is not one study")
        series = [str(item.SeriesInstanceUID) for item in items[0].ReferencedSeriesSequence]
        known = set(evidence.series_uids)
        own = 0
        while own < len(series) and series[own] in known:
            own += 1
        if not own or any(uid in known for uid in series[own:]):
            raise ValueError("the SR's evidence is not of the sources it was made for")
        return cls(evidence, own)

    def apply(self, restored: Dataset) -> Dataset:
        """The re-identified SR with every source as evidence: a new data set over its
        elements, the evidence element encoded (raw), marked as of Explicit VR Little
        Endian so that pydicom's writer writes those bytes as they are (``restored``
        keeps its elements; only its ambiguous VRs are resolved, as the writer would)."""
        # as pydicom's writer does for a data set built in memory (the mark skips it)
        correct_ambiguous_vr(restored, True)
        charset = restored.get("SpecificCharacterSet")
        encodings = convert_encodings(charset) if charset else [default_encoding]
        (study,) = restored.CurrentRequestedProcedureEvidenceSequence
        parts = []
        for tag in sorted(study.keys()):
            element = study[tag]
            if tag == _REFERENCED_SERIES:
                theirs = element.value[self.own_series :]
                series = self.evidence.items + encoded_items(theirs, encodings)
                parts.append(sequence_bytes(tag, series))
            elif element.VR == "SQ":
                parts.append(sequence_bytes(tag, encoded_items(element.value, encodings)))
            else:
                parts.append(element_bytes(element, encodings))
        study_item = item_bytes(b"".join(parts))
        # the content tree's long sequences encoded too, as the writer would encode them
        encoded = with_long_sequences_encoded(restored)
        elements: dict[BaseTag, DataElement | RawDataElement] = {
            element.tag: element for element in encoded.elements() if element.tag != EVIDENCE_TAG
        }
        elements[EVIDENCE_TAG] = RawDataElement(
            EVIDENCE_TAG, "SQ", len(study_item), study_item, 0, False, True
        )
        out = Dataset(elements)
        out.file_meta = restored.file_meta
        if getattr(restored, "preamble", None) is not None:
            out.preamble = restored.preamble
        out.set_original_encoding(False, True, encodings)
        return out
