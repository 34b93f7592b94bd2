"""highdicom's tables loaded ahead and frozen out of the garbage collector's walks."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from highdicom import _standard_utils

from aifi_app.results import module_attributes, standard_tables


@pytest.fixture
def fresh() -> Iterator[None]:
    """As in a process that has not loaded them (this one may have); unfrozen after."""
    monkey = pytest.MonkeyPatch()
    monkey.setattr(standard_tables, "_loaded", False)
    yield
    monkey.undo()
    gc.unfreeze()  # a test process is not the appliance: give its objects back


def test_tables_are_loaded_and_what_lives_is_frozen(fresh: None) -> None:
    assert not standard_tables.loaded()
    before = gc.get_freeze_count()
    standard_tables.load_and_freeze()
    assert standard_tables.loaded()
    # the module-attribute table is read a module at a time; the small ones are loaded
    table = _standard_utils.get_module_attribute_map()
    assert table is module_attributes.installed()
    assert _standard_utils.get_iod_module_map.cache_info().currsize == 1
    assert gc.get_freeze_count() > before
    # a collection no longer walks the tables (the frozen are not among the collector's)
    iods = _standard_utils.get_iod_module_map()
    walked = {id(o) for o in gc.get_objects()}
    assert id(iods) not in walked
    assert not any(id(modules) in walked for modules in iods.values())


def test_loading_again_freezes_nothing_more(fresh: None) -> None:
    standard_tables.load_and_freeze()
    frozen = gc.get_freeze_count()
    made_since = [[n] for n in range(1000)]  # tracked objects made after the first call
    standard_tables.load_and_freeze()
    # nothing more frozen (a frozen object another test's leftover thread frees
    # meanwhile leaves the count lower: seen once in the full suite)
    assert gc.get_freeze_count() <= frozen
    assert all(gc.is_tracked(item) for item in made_since)
