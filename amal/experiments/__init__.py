"""The registry of experiments that the CLI, the benchmarks and the report loop over.

Each entry is a module with: NAME, a frozen Config dataclass, add_arguments(parser), config_from_args(args),
units(cfg) (progress steps), run(cfg, progress=None) -> DataFrame (tidy, no I/O), summary(df) -> DataFrame.
"""

from amal.experiments import lr_sweep

EXPERIMENTS = {
    lr_sweep.NAME: lr_sweep,
}
