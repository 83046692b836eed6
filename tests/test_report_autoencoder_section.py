import shlex

import pandas as pd

from amal.report import select
from amal.report.autoencoder_section import gpu_commands
from amal.report.context import store_options


def test_gpu_command_gives_a_cuda_run_the_report_sets_beside_the_cpu_run(tmp_path):
    """Run the suggested command (on the CPU, as a stand-in for the GPU): the new run shares the section's settings
    and lands in the same configuration as the CPU run, so nothing is left out and both appear in one table."""
    from amal.cli import main as run_main

    results = str(tmp_path / "my results")
    assert run_main(["autoencoder", "--device", "cpu", "--epochs", "2", "--n-train", "256", "--hidden", "16",
                     "--batch-size", "128", "--lr", "0.00123456789", "--results", results,  # %g would round it
                     "--tag", "lab 2"]) == 0
    df = pd.read_parquet(results)
    [command] = gpu_commands(df, store_options(results, ["lab 2"]))  # a report of the runs tagged 'lab 2'
    words = shlex.split(command)
    assert words[:5] == ["python", "-m", "amal.run", "autoencoder", "--device"]
    assert run_main([words[3], *words[6:]]) == 0  # the same options, on the CPU
    both = pd.read_parquet(results)
    assert both["run_id"].nunique() == 2 and both["tag"].unique().tolist() == ["lab 2"]
    assert select.newest_settings(both, "autoencoder", select.AUTOENCODER_SETTINGS)[1] == 0  # none left out
    assert both.drop_duplicates("run_id")[select.AUTOENCODER_CONFIG].nunique().eq(1).all()  # one configuration
