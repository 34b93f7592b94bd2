"""The C heap trimmed after a burst of work: the garbage collected first, glibc's
``malloc_trim`` found where there is glibc."""

from __future__ import annotations

import gc
import platform
import sys
import weakref

import pytest

from aifi_app import heap_trim


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: freed only by the collector


def test_what_only_the_collector_frees_is_freed() -> None:
    gc.disable()  # no collection of its own meanwhile
    try:
        node = _Node()
        gone = weakref.ref(node)
        del node
        assert gone() is not None
        heap_trim.trim()
        assert gone() is None
    finally:
        gc.enable()


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="malloc_trim is glibc's",
)
def test_glibcs_malloc_trim_is_used() -> None:
    assert heap_trim._malloc_trim() is not None
    garbage = [bytearray(4096) for _ in range(10_000)]  # 40 MB of the heap, then free
    del garbage
    assert isinstance(heap_trim.trim(), bool)


def test_give_back_leaves_the_garbage_to_the_caller_who_has_just_collected() -> None:
    gc.disable()
    try:
        node = _Node()
        gone = weakref.ref(node)
        del node
        assert isinstance(heap_trim.give_back(), bool)
        assert gone() is not None  # no second collection
        gc.collect()
        assert gone() is None
    finally:
        gc.enable()
