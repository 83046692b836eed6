"""Number formatting for the report: every number a reader sees is turned into text here, once, for HTML and LaTeX."""

import math

import pandas as pd


def missing(value) -> bool:
    """None, NaN and pandas' NA all count as 'no value'."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def plural(count, noun: str) -> str:
    """'1 torch thread', '2 torch threads': the count (as integer() writes it) and the noun, with an s unless 1."""
    return f"{integer(count)} {noun}{'' if count == 1 else 's'}"


def read_back(text: str) -> float:
    """The number a text written here says: '1,000' -> 1000.0, '6.34e+08' -> 6.34e8."""
    return float(text.replace(",", ""))


def significant(value: float, digits: int = 3) -> str:
    """`digits` significant figures without an exponent up to 1e5; zeros that rounding made significant are kept
    (21.99 -> '22.0', 0.9996 -> '1.00') and exact values keep their short form (22.0 -> '22', 0.01 -> '0.01');
    26517.4 -> '26,500', 12345 -> '12,345'."""
    text = f"{value:#.{digits}g}"
    if "e" in text:  # 1e3 <= |value| < 1e5 at 3 digits: whole units with a thousands separator, rounded alike
        return f"{value if float(value).is_integer() else float(text):,.0f}"  # (an exact count, 12345, is kept)
    exact = float(text) == float(f"{value:.12g}")  # to 12 digits: 7.5e-6 / 1e-6 is 7.499999999999999
    return text.rstrip("0").rstrip(".") if exact else text.rstrip(".")


def number(value, digits: int = 3) -> str:
    """`digits` significant figures (see `significant`), an exponent only outside [1e-3, 1e5): 0.2652 -> '0.265',
    21.99 -> '22.0', 6.34e8 -> '6.34e+08'."""
    if missing(value):
        return "–"
    value = float(value)
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return significant(value, digits)
    return f"{value:.{digits - 1}e}"


def numbers_apart(values, digits: int = 3) -> dict[float, str]:
    """Each value as `number` writes it, with as many more significant figures as it takes to tell every two values
    apart (lr 0.2649 and 0.2651 are not both '0.265'); exact short values stay short (0.01 -> '0.01')."""
    values = sorted({float(v) for v in values if not missing(v)})
    for more in range(digits, 17):
        texts = {v: number(v, more) for v in values}
        if len({read_back(text) for text in texts.values()}) == len(values):  # ('0.001', '0.00100')
            return texts
    return {v: repr(v) for v in values}


UNITS = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "ns": 1e-9}  # of a duration, largest first


def seconds(value, digits: int = 3) -> str:
    """A duration with a readable unit, chosen after rounding: 9.41e-3 -> '9.41 ms', 3.2e-5 -> '32 µs', 75 -> '75 s',
    0.9996 -> '1.00 s', 1234.5 -> '1,230 s'."""
    if missing(value):
        return "–"
    value = float(value)
    rounded = float(f"{value:.{digits}g}")
    if abs(rounded) >= 1000:
        return f"{rounded:,.0f} s"
    names = list(UNITS)
    for i, (unit, scale) in enumerate(UNITS.items()):
        if abs(rounded) >= scale or unit == "ns" or value == 0:
            text = significant(value / scale, digits)
            if i and abs(read_back(text)) >= 1000:  # the division rounded up where the value did not
                return f"{math.copysign(1.0, value):.{digits - 1}f} {names[i - 1]}"  # 0.0009995: not '1,000 µs'
            return f"{text} {unit}"


def seconds_sd(mean, sd, digits: int = 3) -> str:
    """A mean duration and its sd in the mean's unit, the sd to 2 significant figures: (4.498, 0.325) -> '4.50 ± 0.33 s'
    (not '4.50 s ± 325 ms'); no sd (one value): the mean alone."""
    text = seconds(mean, digits)
    if missing(sd) or missing(mean):
        return text
    value, unit = text.rsplit(" ", 1)
    return f"{value} ± {significant(float(sd) / UNITS[unit], 2)} {unit}"


def rate(value, digits: int = 3) -> str:
    """Items per second with a thousands separator: 6100.0 -> '6,100'."""
    if missing(value):
        return "–"
    rounded = float(f"{float(value):.{digits}g}")
    return f"{rounded:,.0f}" if rounded >= 100 else f"{rounded:.{digits}g}"


def integer(value) -> str:
    return "–" if missing(value) else f"{int(value):,}"


def layers(hidden: str, inputs: int = 784) -> str:
    """An autoencoder's encoder as its layer sizes from the input: '256,64' -> '784→256→64' (the decoder mirrors it)."""
    return "→".join([str(inputs), *str(hidden).split(",")])


def percent(share: float) -> str:
    """A share as a percentage to two significant figures: 0.31 -> '31 %', 0.004 -> '0.4 %'."""
    return f"{number(100 * share, 2)} %"


def waited_runs(waited: list[tuple[str, float]], total: int, bound: float, most: int = 4, noun: str = "run",
                during: str = "the training loop's time") -> str:
    """'in 2 of 8 runs the threads waited for a CPU more than 15 % of the training loop's time (lr 0.1: 31 %;
    lr 0.26: 25 %)': the runs (or other `noun`s) `waited` names (label, cpu_wait) out of `total`, the first `most`
    of them spelled out."""
    shown = "; ".join(f"{label}: {percent(share)}" for label, share in waited[:most])
    more = f"; {len(waited) - most} more" if len(waited) > most else ""
    return (f"in {integer(len(waited))} of {plural(total, noun)} the threads waited for a CPU more than "
            f"{percent(bound)} of {during} ({shown}{more})")


def rerun(threads: int, option: str = "--threads") -> str:
    """What to do about times other processes slowed: 'rerun on an idle machine', and where the run had more than
    one torch thread (on the CPU), fewer of them (`option`: pytest bench's is --amal-threads)."""
    return "rerun on an idle machine" + (f", or with {option} 1" if threads > 1 else "")


def threads_on(threads, cpu_counts, noun: str = "thread") -> str:
    """'2 threads', or '2 threads on 4 CPUs' where the runs recorded one CPU count (runs stored before it was
    recorded, or with several counts, say nothing of it)."""
    counts = {int(count) for count in ([] if cpu_counts is None else cpu_counts) if not missing(count)}
    return plural(int(threads), noun) + (f" on {plural(counts.pop(), 'CPU')}" if len(counts) == 1 else "")


def utc_time(timestamp: str) -> str:
    """'2026-11-27T10:00:00Z' -> '2026-11-27 10:00 UTC'."""
    if not timestamp or len(timestamp) < 16:
        return timestamp or "–"
    return f"{timestamp[:10]} {timestamp[11:16]} UTC"


def short_commit(commit: str) -> str:
    """'247bcad4098c+dirty' from a full commit id: 12 hex digits, and whether the checkout had local changes."""
    if not commit:
        return "–"
    return commit[:12] + ("+dirty" if commit.endswith("+dirty") else "")
