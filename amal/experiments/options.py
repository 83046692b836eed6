"""Parsing and checking of experiment options shared by the command-line tools, and the notes they share."""

import argparse
import math

from amal.errors import UsageError
from amal.report.format import rerun, waited_runs
from amal.timing import CONTENDED, slowed_runs


def _split(text: str) -> list[str]:
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or any(not item for item in items):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def floats(text: str) -> tuple[float, ...]:
    """'0.01,0.1' -> (0.01, 0.1); NaN, infinities and non-numbers are refused."""
    values = []
    for item in _split(text):
        try:
            value = float(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{item!r} is not a finite number")
        values.append(value)
    return tuple(values)


def ints(text: str) -> tuple[int, ...]:
    """'1,16,506' -> (1, 16, 506); '1.5' or 'x' are refused."""
    values = []
    for item in _split(text):
        try:
            values.append(int(item))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not a whole number") from None
    return tuple(values)


def words(text: str) -> tuple[str, ...]:
    """'tensor,manual' -> ('tensor', 'manual')."""
    return tuple(_split(text))


MAX_EPOCHS = 10**9  # beyond, a run that does not diverge never ends (and its epoch overflows the int64 column)


def check_positive(option: str, values, most: float = math.inf) -> None:
    """UsageError unless the grid is non-empty and every value is finite, > 0 and at most `most`."""
    values = list(values)
    if not values:
        raise UsageError(f"{option}: empty grid")
    bad = [v for v in values if not 0 < v < float("inf")]
    if bad:
        raise UsageError(f"{option} must be > 0 and finite, got {bad[0]}")
    large = [v for v in values if v > most]
    if large:
        raise UsageError(f"{option} must be at most {most:,}, got {large[0]:,}")


def check_choice(option: str, values, choices) -> None:
    """UsageError unless every value (a string or a sequence of strings) is one of `choices`."""
    for value in [values] if isinstance(values, str) else values:
        if value not in choices:
            raise UsageError(f"{option}: unknown value {value!r}; choose from {', '.join(choices)}")


def check_seed(option: str, seed: int) -> None:
    """UsageError unless 0 <= seed < 2**32 (NumPy's and scikit-learn's seeds are 32-bit)."""
    if not 0 <= seed < 2**32:
        raise UsageError(f"{option} must be in [0, 2**32), got {seed}")


def waited_note(waits, label, threads: int) -> list[str]:
    """The CLI's note on the runs whose threads waited for a CPU more than CONTENDED of their training loop's time:
    `waits` is each run's cpu_wait (a Series indexed by what names the run, NaN: not measured), `label(index)` its
    name in the note; with more than one thread, fewer may help."""
    slowed, measured = slowed_runs(waits.items())
    waited = [(label(key), share) for key, share in slowed]
    if not waited:
        return []
    return [f"{waited_runs(waited, measured, CONTENDED)}: other processes were running on the same CPUs, so "
            f"{'that run is' if len(waited) == 1 else 'those runs are'} slow; {rerun(threads)}"]
