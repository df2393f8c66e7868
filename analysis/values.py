"""Values as the summary and the tables show and order them.

Rows come from Ray Tune (Python numbers) or from MLflow through pandas (numpy numbers, NaN
for a missing value); both are ordered and printed the same way.
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Any


def is_number(value: Any) -> bool:
    """A real number, numpy's included (a DataFrame row gives ``np.int64``); not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def finite(value: Any) -> bool:
    """A real, finite number (not a bool)."""
    return is_number(value) and math.isfinite(value)


def missing(value: Any) -> bool:
    """None or NaN (what pandas gives for a setting a trial does not have)."""
    return value is None or (is_number(value) and math.isnan(value))


def sort_key(value: Any) -> tuple[int, Any]:
    """Numbers in numeric order, then everything else as text, then missing values."""
    if missing(value):
        return (2, "")
    if is_number(value):
        return (0, float(value))
    return (1, str(value))


def fmt_value(value: Any, fmt: str = "{:.4g}") -> str:
    """A number with ``fmt``, anything else as text, a missing value as ``-``."""
    if missing(value):
        return "-"
    if isinstance(value, float) or (is_number(value) and not isinstance(value, numbers.Integral)):
        return fmt.format(value)
    return str(value)


def parse_value(text: Any) -> Any:
    """An MLflow param/tag string back to the value it was made from (``str(value)``)."""
    if not isinstance(text, str):
        return text
    if text == "None":
        return None
    if text in ("True", "False"):
        return text == "True"
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text
