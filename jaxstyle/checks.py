"""Checks of option values: each returns the clean value or raises a one-line OptionError."""

from __future__ import annotations

import math
import numbers

from .errors import OptionError


def finite_number(value, what: str, *, positive: bool = False) -> float:
    """``value`` as a float that is finite and ≥ 0 (> 0 if ``positive``)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > 0 if positive else value >= 0)
    if not ok:
        bound = "> 0" if positive else "≥ 0"
        raise OptionError(f"{what} must be a finite number {bound}, got {value!r}")
    return float(value)


def whole_number(value, what: str, *, minimum: int) -> int:
    """``value`` as an int ≥ ``minimum`` (no bools, no floats)."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
        raise OptionError(f"{what} must be a whole number ≥ {minimum}, got {value!r}")
    return int(value)
