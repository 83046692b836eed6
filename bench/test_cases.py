"""Every benchmark case of the profile (amal.cases), timed by pytest-benchmark in explicit rounds."""

import torch

from amal.benchmarks import rounds_for
from amal.timing import RunWait, measure


def test_case(benchmark, case, profile):
    """One case: a calibration round (uncounted), then `rounds_for` timed rounds after one more warm-up round."""
    one_round = case.setup()
    (calibration_s,) = measure(one_round, rounds=1, warmup_rounds=0, device=case.device)
    benchmark.group = case.group
    benchmark.extra_info.update(case.params, case=case.name, device=case.device, profile=profile,
                                num_threads=torch.get_num_threads())  # threads change a round up to 100× here
    with RunWait(case.device) as waits:  # read before and after the rounds only
        benchmark.pedantic(one_round, rounds=rounds_for(calibration_s, profile), warmup_rounds=1)
    benchmark.extra_info["cpu_wait"] = waits.cpu_wait  # (the report names the cases other processes slowed)
