"""Number formatting for the report: every number a reader sees is turned into text here, once, for HTML and LaTeX."""

import math

import pandas as pd


def missing(value) -> bool:
    """None, NaN and pandas' NA all count as 'no value'."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def plural(count, noun: str) -> str:
    """'1 torch thread', '2 torch threads': the count (as integer() writes it) and the noun, with an s unless 1."""
    return f"{integer(count)} {noun}{'' if count == 1 else 's'}"


def number(value, digits: int = 3) -> str:
    """`digits` significant figures, an exponent only outside [1e-3, 1e5): 0.2652 -> '0.265', 6.34e8 -> '6.34e+08'."""
    if missing(value):
        return "–"
    value = float(value)
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        text = f"{value:.{digits}g}"
        return text if "e" not in text else f"{value:.0f}"
    return f"{value:.{digits - 1}e}"


def seconds(value, digits: int = 3) -> str:
    """A duration with a readable unit: 9.41e-3 -> '9.41 ms', 3.2e-5 -> '32 µs', 75 -> '75 s'."""
    if missing(value):
        return "–"
    value = float(value)
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g} {unit}"
    return f"{value / 1e-9:.{digits}g} ns"


def rate(value, digits: int = 3) -> str:
    """Items per second with a thousands separator: 6100.0 -> '6,100'."""
    if missing(value):
        return "–"
    rounded = float(f"{float(value):.{digits}g}")
    return f"{rounded:,.0f}" if rounded >= 100 else f"{rounded:.{digits}g}"


def integer(value) -> str:
    return "–" if missing(value) else f"{int(value):,}"
