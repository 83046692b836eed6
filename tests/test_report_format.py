import math

import pandas as pd
import pytest

from amal.report.format import (
    integer,
    layers,
    missing,
    number,
    numbers_apart,
    rate,
    seconds,
    seconds_sd,
    threads_on,
    waited_runs,
)


@pytest.mark.parametrize(("value", "text"), [
    (0.26515, "0.265"), (21.9348, "21.9"), (0.001, "0.001"), (12345.6, "12,300"), (12345.0, "12,345"),
    (6.3395e8, "6.34e+08"),
    (2.5e-5, "2.50e-05"), (0.0, "0"), (None, "–"), (math.nan, "–"), (pd.NA, "–"),
    # zeros that rounding made significant are shown; exact values keep their short form
    (21.99, "22.0"), (22.0, "22"), (0.01, "0.01"), (0.2, "0.2"), (0.19999, "0.200"), (100.0, "100"),
])
def test_number(value, text):
    assert number(value) == text


def test_number_digits():
    assert number(0.265158, 4) == "0.2652"


@pytest.mark.parametrize(("value", "text"), [
    (0.009410550, "9.41 ms"), (3.2e-5, "32 µs"), (75.0, "75 s"), (1.0, "1 s"), (4.2e-9, "4.2 ns"), (None, "–"),
    # the unit is chosen after rounding: no '1e+03 ms'
    (0.9996, "1.00 s"), (0.99949, "999 ms"), (999.7, "1,000 s"), (1234.5, "1,230 s"), (0.0209, "20.9 ms"),
    (0.02099, "21.0 ms"), (0.0, "0 s"), (7.5e-6, "7.5 µs"), (3.3e-6, "3.3 µs"), (0.0075, "7.5 ms"),
    # 0.0009995 rounds to 0.000999 but 0.0009995 / 1e-6 to 1,000: the next unit up, not '1,000 µs'
    (0.0009995, "1.00 ms"), (-0.0009995, "-1.00 ms"), (0.00099949, "999 µs"),
])
def test_seconds(value, text):
    assert seconds(value) == text


def test_rate_and_integer():
    assert rate(6100.0) == "6,100"
    assert rate(119988.9) == "120,000"
    assert rate(12.34) == "12.3"
    assert integer(1000) == "1,000"
    assert integer(math.nan) == "–"
    assert missing(None) and missing(math.nan) and not missing(0)


def test_layers_reads_as_the_encoder_from_the_input():
    assert layers("256,64") == "784→256→64" and layers("64") == "784→64" and layers("32", inputs=10) == "10→32"


@pytest.mark.parametrize(("mean", "sd", "text"), [
    (4.5, 0.325, "4.5 ± 0.33 s"), (4.498, 0.325, "4.50 ± 0.33 s"), (0.0594, 0.000923, "59.4 ± 0.92 ms"),
    (146.0, 29.3, "146 ± 29 s"),
    (1234.5, 20.0, "1,230 ± 20 s"), (2.4e-5, math.nan, "24 µs"), (0.5, None, "500 ms"),
])
def test_seconds_sd_keeps_the_means_unit(mean, sd, text):
    assert seconds_sd(mean, sd) == text


def test_waited_runs_names_the_first_few_and_counts_the_rest():
    named = [(f"lr {lr}", share) for lr, share in [(0.1, 0.31), (0.2, 0.254), (0.3, 0.2), (0.4, 0.9), (0.5, 0.16)]]
    assert waited_runs(named[:1], 1, 0.15) == ("in 1 of 1 run the threads waited for a CPU more than 15 % of the "
                                               "training loop's time (lr 0.1: 31 %)")
    assert waited_runs(named, 12, 0.15, most=3) == (
        "in 5 of 12 runs the threads waited for a CPU more than 15 % of the training loop's time (lr 0.1: 31 %; "
        "lr 0.2: 25 %; lr 0.3: 20 %; 2 more)")


def test_threads_on_names_the_cpus_only_when_the_runs_recorded_one_count():
    assert threads_on(2, pd.Series([4.0, float("nan"), 4.0])) == "2 threads on 4 CPUs"  # NaN: a run from before
    assert threads_on(1, pd.array([1], dtype="Int64"), "torch thread") == "1 torch thread on 1 CPU"
    assert threads_on(16, None) == threads_on(16, [None]) == "16 threads"  # no count recorded
    assert threads_on(2, [2, 4]) == "2 threads"  # several counts: none stands for the runs


def test_numbers_apart_adds_digits_only_where_three_would_merge_values():
    assert numbers_apart([0.01, 0.26, 0.27]) == {0.01: "0.01", 0.26: "0.26", 0.27: "0.27"}
    assert numbers_apart([0.2645, 0.2649, 0.2651]) == {0.2645: "0.2645", 0.2649: "0.2649", 0.2651: "0.2651"}
    # '0.001' and '0.00100' differ as text, not as numbers: one more digit
    assert numbers_apart([1e-3, 1.0001e-3]) == {1e-3: "0.001", 1.0001e-3: "0.0010001"}
    assert numbers_apart([0.1, float("nan")]) == {0.1: "0.1"}
