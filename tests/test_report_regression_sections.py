from types import SimpleNamespace

import pandas as pd

from amal.report import select
from amal.report.regression_sections import lr_sweep_section, target_cell, threshold_finding


def test_threshold_finding_when_theory_disagrees():
    outcomes = pd.DataFrame({"lr": [0.1, 0.2], "diverged": [False, True], "growing": False, "unstable": [False, True],
                             "lr_max_theory": [0.5, 0.5]})
    assert threshold_finding(outcomes).endswith("theory lr* = 2/λmax(H) = 0.5 (outside the observed interval).")


def test_a_rate_whose_loss_grows_below_the_stop_rule_counts_as_diverging():
    """100 epochs of real gradient descent: lr 0.27 (> lr* = 0.2652) climbs from about 600 but stays below 10⁶ × its
    start, so it is not stopped; the report still counts it as diverging, says why, and agrees with theory."""
    from amal.cli import stamp
    from amal.experiments import lr_sweep

    rows = stamp(lr_sweep.run(lr_sweep.LrSweepConfig(lrs=(0.1, 0.26, 0.27, 0.3), epochs=100)), "lr-sweep", "")
    outcomes = select.lr_outcomes(rows)
    assert outcomes["diverged"].tolist() == [False, False, False, True]
    assert outcomes["growing"].tolist() == [False, False, True, False]
    assert select.divergence_threshold(outcomes) == (0.26, 0.27)
    finding = threshold_finding(outcomes)
    assert "between 0.26 and 0.27" in finding and "(inside the observed interval)" in finding
    assert " lr = 0.27 was not stopped within 100 epochs, but its loss ended " in finding
    part = lr_sweep_section(rows)
    assert part["tables"][0]["rows"][2][1].endswith("× its lowest)")
    assert part["findings"][1].startswith("Lowest final training MSE: ") and "lr = 0.26" in part["findings"][1]


def test_rates_close_to_the_bound_are_written_with_the_digits_that_tell_them_apart():
    """A sweep zooming in on lr* = 0.2652: at three digits 0.2645, 0.2649 and 0.2651 all read '0.265'."""
    outcomes = pd.DataFrame({"lr": [0.2645, 0.2649, 0.2651, 0.2655], "diverged": False,
                             "growing": [False, False, False, True], "unstable": [False, False, False, True],
                             "growth": [1.0, 1.0, 1.0, 3.2], "epochs_run": 3000, "lr_max_theory": 0.26516})
    assert threshold_finding(outcomes) == (
        "Gradient descent does not diverge up to lr = 0.2651 and diverges from lr = 0.2655: the observed threshold "
        "lies between 0.2651 and 0.2655; theory lr* = 2/λmax(H) = 0.2652 (inside the observed interval). lr = 0.2655 "
        "was not stopped within 3,000 epochs, but its loss ended 3.2× above its lowest: diverging, more slowly than "
        "the stop rule catches.")


def test_the_time_to_target_cell_says_which_configurations_diverged():
    def cell(reached, diverged, seeds=3, target=1.2):
        return target_cell(SimpleNamespace(reached=reached, diverged=diverged, seeds=seeds, target_mean_s=target))
    assert cell(2, 1) == "1.2 s (2/3)"
    assert cell(0, 3) == "diverged"
    assert cell(0, 1) == "not reached; 1/3 diverged"
    assert cell(0, 0) == "not reached"
