"""Key Object Selection (KOS) document pointing at the images an algorithm found something on.

Built with highdicom from the pseudonymised source images. A PACS shows the selection as
"key images" of the study (IHE KIN); the title is DCM 113000 "Of Interest" and the
description says that an AI algorithm chose them and that this is not a diagnosis.
Thread: any (pure CPU, a few ms).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from aifi_app.algorithms.findings import AlgorithmResult
from aifi_app.results.secondary_capture import (
    algorithm_contributing_equipment,
    character_set_for,
    copy_study_context,
    lo_value,
)

__all__ = ["build_key_object_selection", "key_image_uids"]


def key_image_uids(result: AlgorithmResult) -> list[str]:
    """The SOP Instance UIDs of the key images of ``result``: images with a positive
    finding or with a region, in order of first mention.

    Thread: any thread.
    """
    uids = [f.source_sop_instance_uid for f in result.findings if f.positive]
    uids += [r.source_sop_instance_uid for r in result.regions]
    return list(dict.fromkeys(uids))


def build_key_object_selection(
    sources: Sequence[Dataset],
    result: AlgorithmResult,
    *,
    series_instance_uid: str,
    sop_instance_uid: str,
    series_number: int,
    instance_number: int,
    device_observer_uid: str,
    manufacturer: str = "AIFI Appliance",
) -> Dataset:
    """A KOS document selecting the key images of ``result`` among ``sources``.

    Promises: Key Object Selection Document Storage in the study of the sources, title
    DCM 113000 "Of Interest", the algorithm as device observer (UID, name, vendor, id),
    a description with the algorithm, its version and "AI result, not a diagnosis", one
    IMAGE item per key image (:func:`key_image_uids`) and those images as evidence.

    Raises ``ValueError`` when ``result`` has no key image or a key image is not among
    ``sources``.
    """
    by_uid = {str(ds.SOPInstanceUID): ds for ds in sources}
    uids = key_image_uids(result)
    if not uids:
        raise ValueError("a key object selection needs a positive finding or a region")
    missing = [uid for uid in uids if uid not in by_uid]
    if missing:
        raise ValueError(f"{len(missing)} key image(s) are not among the sources")
    key_images = [by_uid[uid] for uid in uids]
    algorithm = result.algorithm
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=device_observer_uid,
        name=lo_value(algorithm.name),
        manufacturer_name=lo_value(algorithm.vendor),
        model_name=lo_value(algorithm.algorithm_id),
    )
    description = (
        f"AI result, not a diagnosis: {algorithm.name} {algorithm.version} "
        f"({algorithm.vendor}) found something on these images"
    )
    content = hd.ko.KeyObjectSelection(
        document_title=codes.DCM.OfInterest,
        referenced_objects=key_images,
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=device,
        ),
        description=description,
    )
    equipment = algorithm_contributing_equipment(algorithm)
    charset = character_set_for(key_images[0], [description, manufacturer], [*content, equipment])
    kwargs: dict[str, Any] = {}
    if charset is not None:
        kwargs["specific_character_set"] = charset
    kos = hd.ko.KeyObjectSelectionDocument(
        evidence=key_images,
        content=content,
        series_instance_uid=series_instance_uid,
        series_number=series_number,
        sop_instance_uid=sop_instance_uid,
        instance_number=instance_number,
        manufacturer=lo_value(manufacturer),
        contributing_equipment=[equipment],
        **kwargs,
    )
    kos.SeriesDescription = lo_value(f"AI key images: {algorithm.name}")
    copy_study_context(key_images[0], kos)
    ds: Dataset = kos
    return ds
