"""Batch pseudonymisation of a folder tree (research export): ``aifi-app pseudonymise``.

:func:`pseudonymise_file` is the fast path used here and by the benchmark. It reads the
header only (pydicom stops before Pixel Data), pseudonymises it with the same
:class:`~aifi_app.pseudonymise.Pseudonymiser` as the appliance, writes it, and then copies
the Pixel Data element byte for byte from the input file (kernel-side copy, never decoded,
never held in Python). The tail is copied only when it is exactly one Pixel Data (7FE0,0010)
element, optionally followed by Data Set Trailing Padding (always removed); any other tail,
and deflated transfer syntaxes, take the plain path (whole file read by pydicom). Both
paths give the same elements.

:func:`pseudonymise_tree` walks ``in_dir``, writes each output under the same relative path
in ``out_dir``, and returns a :class:`BatchSummary` that counts what was done per action and
category, never a value. Files that are not DICOM, that pydicom cannot read, or that are
refused (possible burned-in text) are counted and skipped, never copied.
"""

from __future__ import annotations

import os
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final

from pydicom import Dataset, FileMetaDataset, dcmread, dcmwrite
from pydicom.charset import default_encoding
from pydicom.dataelem import RawDataElement
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO, DicomFileLike
from pydicom.filewriter import write_data_element, write_dataset, write_file_meta_info
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from aifi_app.pseudonymise.burned_in import BurnedInAnnotationRefused
from aifi_app.pseudonymise.element_memo import MEMO_VRS, UNDEFINED_LENGTH, ElementMemo
from aifi_app.pseudonymise.memo_fast_path import (
    HEAD_BYTES,
    PIXEL_DATA,
    RawHeader,
    fast_key,
    plan_instance,
    read_raw_header,
)
from aifi_app.pseudonymise.pseudonymiser import PseudonymisationError, Pseudonymiser

TRAILING_PADDING: Final = 0xFFFCFFFC
SEQUENCE_DELIMITER: Final = 0xFFFEE0DD
ITEM: Final = 0xFFFEE000

ProgressCallback = Callable[[int, int], None]
"""``progress(done, total)``, called after each file."""


@dataclass
class BatchSummary:
    """What a batch run did: counts only, never a value from the data."""

    files: int = 0
    written: int = 0
    pixel_data_copied_raw: int = 0
    not_dicom: int = 0
    unreadable: int = 0
    refused_burned_in: int = 0
    failed: int = 0
    elements: Counter[str] = field(default_factory=Counter)
    """Element counts per action or category ("remove", "private removed", ...)."""

    def lines(self) -> list[str]:
        """The summary as lines of text for a terminal."""
        out = [
            f"files: {self.files}, written: {self.written}"
            f" (pixel data copied byte for byte: {self.pixel_data_copied_raw})",
        ]
        skipped = {
            "not DICOM": self.not_dicom,
            "unreadable": self.unreadable,
            "refused (possible burned-in text)": self.refused_burned_in,
            "failed": self.failed,
        }
        out.extend(f"skipped, {why}: {n}" for why, n in skipped.items() if n)
        out.append("elements by action:")
        out.extend(f"  {name}: {n}" for name, n in sorted(self.elements.items()))
        return out


def _pixel_tail_length(fp: BinaryIO, little_endian: bool, implicit: bool) -> int | None:
    """Length of the Pixel Data element at ``fp`` (header included), or None if not plain.

    Leaves ``fp`` where it was. Encapsulated (undefined length) Pixel Data is walked item by
    item to its Sequence Delimitation Item.
    """
    start = fp.tell()
    try:
        endian = "<" if little_endian else ">"
        head = fp.read(8)
        if len(head) < 8:
            return None
        group, element = struct.unpack(endian + "HH", head[:4])
        if (group << 16) | element != PIXEL_DATA:
            return None
        if implicit:
            (length,) = struct.unpack(endian + "L", head[4:8])
            header = 8
        else:
            if head[4:6] not in (b"OB", b"OW"):
                return None
            (length,) = struct.unpack(endian + "L", fp.read(4))
            header = 12
        if length != UNDEFINED_LENGTH:
            return header + int(length)
        total = header
        while True:
            item = fp.read(8)
            if len(item) < 8:
                return None
            item_group, item_element, item_length = struct.unpack(endian + "HHL", item)
            total += 8
            tag = (item_group << 16) | item_element
            if tag == SEQUENCE_DELIMITER:
                return total
            if tag != ITEM or item_length == UNDEFINED_LENGTH:
                return None
            fp.seek(item_length, os.SEEK_CUR)
            total += item_length
    finally:
        fp.seek(start)


def _only_padding_after(fp: BinaryIO, end: int, size: int, little_endian: bool) -> bool:
    if end == size:
        return True
    fp.seek(end)
    head = fp.read(4)
    fp.seek(end)
    if len(head) < 4:
        return False
    group, element = struct.unpack(("<" if little_endian else ">") + "HH", head)
    return bool((group << 16) | element == TRAILING_PADDING)


def _copy_range(source: BinaryIO, target: BinaryIO, offset: int, length: int) -> None:
    """Append ``length`` bytes of ``source`` from ``offset`` to ``target`` (kernel side
    where it can). Both files are buffered Python objects whose descriptors need not be
    where the objects are (a seek within the read buffer moves no descriptor): the copy
    names both offsets explicitly and never uses a descriptor's own position."""
    target.flush()
    out_at = target.tell()
    copied = 0
    try:
        while copied < length:
            n = os.copy_file_range(
                source.fileno(), target.fileno(), length - copied, offset + copied, out_at + copied
            )
            if n == 0:
                break
            copied += n
    except (AttributeError, OSError):
        pass
    if copied < length:
        source.seek(offset + copied)
        target.seek(out_at + copied)
        remaining = length - copied
        while remaining:
            block = source.read(min(remaining, 1 << 20))
            if not block:
                raise OSError("input file ended inside Pixel Data")
            target.write(block)
            remaining -= len(block)
    target.seek(out_at + length)


def pseudonymise_file(
    pseudonymiser: Pseudonymiser,
    source: Path,
    target: Path,
    counts: Counter[str] | None = None,
    memo: ElementMemo | None = None,
) -> bool:
    """Pseudonymise the file ``source`` into ``target``; True when pixels were copied raw.

    ``memo``: one :class:`~aifi_app.pseudonymise.element_memo.ElementMemo` for the files
    of one pass (the instances of a series share most of their header): the same bytes,
    a fraction of the work.

    Raises what :meth:`Pseudonymiser.pseudonymise` raises, and pydicom's
    :class:`~pydicom.errors.InvalidDicomError` for a file that is not DICOM.
    """
    with source.open("rb") as fp:
        raw_header = None
        if memo is not None:
            raw_header, written = _memo_fast_path(pseudonymiser, fp, target, counts, memo)
            if written is not None:
                return written
            fp.seek(0)
        header, forced = _read_header(fp)
        tail_start = fp.tell()
        size = os.fstat(fp.fileno()).st_size
        transfer_syntax = header.file_meta.get("TransferSyntaxUID")
        is_implicit, is_little = header.original_encoding
        tail: int | None = None
        if tail_start < size and transfer_syntax != DeflatedExplicitVRLittleEndian:
            tail = _pixel_tail_length(fp, bool(is_little), bool(is_implicit))
            if tail is not None and not _only_padding_after(
                fp, tail_start + tail, size, bool(is_little)
            ):
                tail = None
        if tail_start < size and tail is None:
            out = pseudonymiser.pseudonymise(dcmread(source, force=forced), counts)
            _write(out, target).close()
            return False
        out = pseudonymiser.pseudonymise(header, counts, memo)
        if raw_header is not None and memo is not None and memo.last_context is not None:
            # the next instances of this context take the fast path
            memo.fast_contexts[fast_key(pseudonymiser, raw_header)] = memo.last_context
        with _write(out, target) as out_fp:
            if tail:
                if counts is not None:
                    counts["keep"] += 1  # Pixel Data
                _copy_range(fp, out_fp, tail_start, tail)
        return bool(tail)


def _memo_fast_path(
    pseudonymiser: Pseudonymiser,
    fp: BinaryIO,
    target: Path,
    counts: Counter[str] | None,
    memo: ElementMemo,
) -> tuple[RawHeader | None, bool | None]:
    """Write ``target`` by the memo's fast path (:mod:`.memo_fast_path`) where it applies.

    Returns the raw header when it could be read (None: not plain) and, when the file was
    written, what :func:`pseudonymise_file` returns (None: take the full path).
    """
    data = fp.read(HEAD_BYTES)
    size = os.fstat(fp.fileno()).st_size
    header = read_raw_header(data, whole_file=len(data) == size)
    if header is None:
        return None, None
    tail = 0
    if header.at_pixel_data:
        fp.seek(header.end)
        found = _pixel_tail_length(fp, little_endian=True, implicit=False)
        if found is None or not _only_padding_after(fp, header.end + found, size, True):
            return header, None  # the full path reads the whole file
        tail = found
    plan = plan_instance(pseudonymiser, header, memo)
    if plan is None:
        return header, None
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("wb") as out_fp:
        out = DicomFileLike(out_fp)
        out.is_little_endian = True
        out.is_implicit_VR = False
        out.write(b"\0" * 128 + b"DICM")
        out.write(plan.meta)
        out.write(plan.body)
        plan.apply(pseudonymiser, counts)
        if tail:
            if counts is not None:
                counts["keep"] += 1  # Pixel Data
            _copy_range(fp, out_fp, header.end, tail)
    return header, bool(tail)


def _read_header(fp: BinaryIO) -> tuple[Dataset, bool]:
    """Read up to Pixel Data; files without a preamble and file meta are accepted when they
    hold a SOP Class UID (the second value says so). Raises InvalidDicomError otherwise."""
    try:
        return dcmread(fp, stop_before_pixels=True), False
    except InvalidDicomError:
        fp.seek(0)
        try:
            header = dcmread(fp, stop_before_pixels=True, force=True)
        except Exception:
            raise InvalidDicomError("not a DICOM file") from None
        if "SOPClassUID" not in header:
            raise InvalidDicomError("not a DICOM file") from None
        return header, True


def _write(ds: Dataset, target: Path) -> BinaryIO:
    """Write ``ds`` to ``target`` and return the open file (positioned at its end).

    A complete instance (SOP Class and Instance UIDs, file meta from the pseudonymiser, a
    standard transfer syntax that is not deflated) is written directly: preamble, file meta and
    data set, as :func:`pydicom.dcmwrite` with ``enforce_file_format`` writes them, without
    its defensive copy of the file meta (the tests compare the bytes). Anything else (a
    DICOMDIR, a fragment, a deflated instance) goes through ``dcmwrite``, enforcing the
    file format only when the instance is complete.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    complete = "SOPClassUID" in ds and "SOPInstanceUID" in ds
    meta = ds.file_meta
    syntax = meta.get("TransferSyntaxUID")
    direct = (
        complete
        and syntax is not None
        and UID(syntax).is_transfer_syntax
        and not UID(syntax).is_deflated
        and meta.get("MediaStorageSOPInstanceUID") == ds.SOPInstanceUID
        and meta.get("MediaStorageSOPClassUID") == ds.SOPClassUID
    )
    out_fp = target.open("wb")
    try:
        if direct:
            implicit, little = UID(syntax).is_implicit_VR, UID(syntax).is_little_endian
            fp = DicomFileLike(out_fp)
            fp.write(b"\0" * 128 + b"DICM")
            _write_file_meta(fp, meta)
            fp.is_implicit_VR = implicit
            fp.is_little_endian = little
            if "PixelData" in ds:
                ds["PixelData"].is_undefined_length = UID(syntax).is_compressed
            if (implicit, little) == ds.original_encoding and (
                ds.original_character_set == ds._character_set
            ):
                _write_elements(fp, ds)
            else:
                write_dataset(fp, ds)  # converts the elements: ambiguous VRs, character set
        else:
            dcmwrite(out_fp, ds, enforce_file_format=complete)
    except BaseException:
        out_fp.close()
        raise
    return out_fp


_META_REQUIRED: Final = (0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012)


def _write_file_meta(fp: DicomFileLike, meta: FileMetaDataset) -> None:
    """``write_file_meta_info(fp, meta, enforce_standard=True)`` for the complete file
    meta of :func:`~aifi_app.pseudonymise.element_copy.new_file_meta`: its elements in
    order after their group length (explicit VR little endian), without pydicom's checks
    and buffers (a fifth of an instance's writing); anything else goes to pydicom."""
    tags = sorted(meta.keys())
    if any(t not in meta for t in _META_REQUIRED) or any(t.group != 2 for t in tags):
        write_file_meta_info(fp, meta, enforce_standard=True)
        return
    body = DicomBytesIO()
    body.is_little_endian = True
    body.is_implicit_VR = False
    for tag in tags:
        if tag != 0x00020000:
            write_data_element(body, meta.get_item(tag), default_encoding)
    value = body.getvalue()
    fp.write(struct.pack("<HH2sHL", 2, 0, b"UL", 4, len(value)))
    fp.write(value)


def _write_elements(fp: DicomFileLike, ds: Dataset) -> None:
    """``write_dataset(fp, ds)`` for a data set written in the encoding it was read in
    (nothing to convert): raw explicit-VR elements of a plain VR, most of a memoised
    header (:mod:`aifi_app.pseudonymise.element_memo`), are written here as they are
    (tag, VR, length, value; what pydicom writes for them, without its per-element
    buffer); every other element by pydicom's ``write_data_element``."""
    encoding = ds.get("SpecificCharacterSet", default_encoding)
    endian = "<" if fp.is_little_endian else ">"
    short = struct.Struct(endian + "HH2sH")
    long = struct.Struct(endian + "HH2sHL")
    for tag in sorted(ds.keys()):
        if tag.element == 0 and tag.group > 6:
            continue  # group lengths are not written (PS3.5 7.2), as pydicom does
        element = ds.get_item(tag)
        if (
            isinstance(element, RawDataElement)
            and not element.is_implicit_VR
            and element.is_little_endian == fp.is_little_endian
            and element.VR in MEMO_VRS
            and isinstance(element.value, bytes)
            and element.length != UNDEFINED_LENGTH
        ):
            value = element.value
            vr = element.VR.encode("ascii")
            if element.VR in EXPLICIT_VR_LENGTH_32:
                fp.write(long.pack(tag.group, tag.element, vr, 0, len(value)))
                fp.write(value)
                continue
            if len(value) <= 0xFFFF:
                fp.write(short.pack(tag.group, tag.element, vr, len(value)))
                fp.write(value)
                continue
        write_data_element(fp, element, encoding)


def _files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def pseudonymise_tree(
    pseudonymiser: Pseudonymiser,
    in_dir: Path,
    out_dir: Path,
    progress: ProgressCallback | None = None,
) -> BatchSummary:
    """Pseudonymise every DICOM file under ``in_dir`` into ``out_dir`` (same relative paths).

    Runs on the calling thread. ``out_dir`` must not lie inside ``in_dir``.
    """
    in_dir = in_dir.resolve()
    out_dir = out_dir.resolve()
    if out_dir == in_dir or in_dir in out_dir.parents:
        raise ValueError("the output folder must not lie inside the input folder")
    paths = list(_files(in_dir))
    summary = BatchSummary(files=len(paths))
    memo = ElementMemo()
    for done, path in enumerate(paths, start=1):
        target = out_dir / path.relative_to(in_dir)
        try:
            raw = pseudonymise_file(pseudonymiser, path, target, summary.elements, memo)
        except InvalidDicomError:
            summary.not_dicom += 1
            target.unlink(missing_ok=True)
        except BurnedInAnnotationRefused:
            summary.refused_burned_in += 1
            target.unlink(missing_ok=True)
        except PseudonymisationError:
            summary.failed += 1
            target.unlink(missing_ok=True)
        except Exception:  # pydicom cannot parse it: never copied, counted
            summary.unreadable += 1
            target.unlink(missing_ok=True)
        else:
            summary.written += 1
            summary.pixel_data_copied_raw += raw
        if progress is not None:
            progress(done, len(paths))
    return summary


def text_progress(stream_write: Callable[[str], object], width: int = 30) -> ProgressCallback:
    """A progress callback drawing ``[#####-----] done/total`` on one line."""

    def draw(done: int, total: int) -> None:
        filled = width * done // total if total else width
        end = "\n" if done >= total else ""
        stream_write(f"\r[{'#' * filled}{'-' * (width - filled)}] {done}/{total}{end}")

    return draw
