import math

import pandas as pd
import pytest

from amal.report.format import integer, missing, number, rate, seconds


@pytest.mark.parametrize(("value", "text"), [
    (0.26515, "0.265"), (21.9348, "21.9"), (0.001, "0.001"), (12345.6, "12346"), (6.3395e8, "6.34e+08"),
    (2.5e-5, "2.50e-05"), (0.0, "0"), (None, "–"), (math.nan, "–"), (pd.NA, "–"),
])
def test_number(value, text):
    assert number(value) == text


def test_number_digits():
    assert number(0.265158, 4) == "0.2652"


@pytest.mark.parametrize(("value", "text"), [
    (0.009410550, "9.41 ms"), (3.2e-5, "32 µs"), (75.0, "75 s"), (1.0, "1 s"), (4.2e-9, "4.2 ns"), (None, "–"),
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
