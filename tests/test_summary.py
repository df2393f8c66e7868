"""The end-of-sweep summary's text (``sweeps/summary.py``), without Ray."""

from __future__ import annotations


def test_the_header_lists_a_long_grid_by_its_ends_and_its_size():
    from sweeps.summary import _values_text

    assert _values_text([1, 4, 16]) == "[1, 4, 16]"
    assert _values_text(list(range(1, 9))) == "[1, 2, 3, 4, 5, 6, 7, 8]"
    assert _values_text(list(range(1, 1001))) == "[1, 2, 3, ..., 999, 1000] (1000 values)"
