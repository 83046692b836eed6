"""The registry of experiments that the CLI, the benchmarks and the report loop over.

Each entry is a module with:
- NAME, and a frozen Config dataclass;
- add_arguments(parser) and config_from_args(args) -> Config (UsageError for bad values);
- PROFILES: {"quick": Config or [Config, ...], "full": ...}, the campaign `python -m amal.report` runs on an empty
  store (a list: one stored run per config);
- units(cfg): how many progress steps run() reports; run(cfg, progress=None) -> DataFrame (tidy rows, no I/O);
- summary(df) -> DataFrame: the short table the CLI prints;
- bench_cases(profile) -> list[amal.cases.Case]: what `bench/` and the regression gate time.
"""

from amal.experiments import autoencoder, batch_size, lr_sweep

EXPERIMENTS = {
    lr_sweep.NAME: lr_sweep,
    batch_size.NAME: batch_size,
    autoencoder.NAME: autoencoder,
}
