import numpy as np
import pytest

from amal.report import plotting


@pytest.mark.parametrize("count", [2, 7, 12, 20, 25])
def test_palette_gives_neighbouring_values_distinct_colours(count):
    colours = list(plotting.palette(np.linspace(0.01, 0.3, count)).values())
    assert len(set(colours)) == count
    nearest = min(np.abs(np.subtract(a, b)).sum() for a, b in zip(colours[:-1], colours[1:], strict=True))
    assert nearest > 0.15  # summed RGB distance of neighbours: viridis gives 0.10 at 12 values


@pytest.mark.parametrize(("value", "label"), [(1, "1"), (0.01, "0.01"), (506, "506"), (1e4, "10,000"),
                                              (1e9, "1,000,000,000"), (1e-5, "1e-05"), (1e22, "1e+22"),
                                              (4.2e22, "4.2e+22"), (6000, "6,000"), (2500.5, "2500.5")])
def test_plain_numbers_for_large_values_too(value, label):
    """A diverging run's loss axis read 10000, 100000, 1e+06, 1e+07."""
    assert plotting.plain_number(value) == label


@pytest.mark.parametrize("count", [0, 1, 2, 5, 40])
def test_dodge_centres_its_factors_on_one_within_the_widest(count):
    factors = plotting.dodge(count)
    assert len(factors) == count
    if count < 2:
        assert factors == [1.0] * count
        return
    assert np.prod(factors) == pytest.approx(1.0)  # centred on the batch size's tick, in log terms
    assert max(factors) <= 1.2 + 1e-12 and min(factors) >= 1 / 1.2 - 1e-12
    ratios = np.divide(factors[1:], factors[:-1])
    assert ratios == pytest.approx([min(1.04, 1.2 ** (2 / (count - 1)))] * (count - 1))  # even steps, 4 % at most
