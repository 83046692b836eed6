"""The results store: one parquet file per run under a results directory, all with one schema.

Every file holds the full set of COLUMNS (unused ones are null), so `pandas.read_parquet(results_dir)` reads all runs
of all experiments at once. Files are written to a hidden temp file and renamed, never overwritten. Files a run makes
beside its rows (images, checkpoints) go under `_artifacts/<run_id>/`, which parquet readers skip (leading underscore).
"""

import os
import secrets
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from amal.errors import UsageError
from amal.files import atomic_write_bytes, check_writable, remove_empty

STR, F64, I64, BOOL = pa.string(), pa.float64(), pa.int64(), pa.bool_()

# name -> (type, meaning). The README's schema table is this dict; tests check they agree.
COLUMNS: dict[str, tuple[pa.DataType, str]] = {
    # identity
    "run_id": (STR, "unique id of the run (UTC start time, experiment, its milliseconds and a random suffix: ids "
                    "sort by start time); one file per run"),
    "experiment": (STR, "lr-sweep, batch-size, autoencoder or bench"),
    "implementation": (STR, "how the training loop is written: dataloader, tensor, manual, fused (batch-size), "
                            "manual (lr-sweep), dataloader, resident (autoencoder)"),
    "tag": (STR, "free text from --tag"),
    "seed": (I64, "random seed of the run"),
    "device": (STR, "cpu or cuda"),
    # per-epoch measurements
    "epoch": (I64, "epoch number, from 1"),
    "train_loss": (F64, "training loss after this epoch (full training set, evaluated outside the clock)"),
    "test_loss": (F64, "test loss after this epoch; null without a test split"),
    "elapsed_s": (F64, "cumulative training time up to the end of this epoch, seconds (evaluation excluded)"),
    "eval_s": (F64, "time spent evaluating the losses of this epoch, seconds (not part of elapsed_s)"),
    "diverged": (BOOL, "the run stopped because the loss became non-finite or exploded"),
    "diverged_epoch": (I64, "epoch at which it diverged; null if it did not"),
    # parameters
    "lr": (F64, "learning rate"),
    "batch_size": (I64, "rows per gradient step (1 = SGD, n = full batch)"),
    "epochs": (I64, "epochs asked for"),
    "normalize": (STR, "feature normalisation: minmax, zscore or none"),
    "test_size": (F64, "fraction of rows held out for testing (0 = train on all, as the seed does)"),
    "data_source": (STR, "which copy of the data was read"),
    "n_train": (I64, "training rows"),
    "lr_max_theory": (F64, "lr-sweep: stability bound of full-batch gradient descent, 2 / lambda_max(Hessian)"),
    # batch-size campaign
    "optimum_loss": (F64, "batch-size: closed-form least-squares training MSE, the best a linear model can reach"),
    "target_loss": (F64, "batch-size: time-to-target threshold (default 1.10 x optimum_loss)"),
    "time_to_target_s": (F64, "batch-size: training seconds at the end of the first epoch with train_loss <= "
                              "target_loss; null = not reached"),
    "epoch_to_target": (I64, "batch-size: first epoch with train_loss <= target_loss; null = not reached"),
    "steps_per_epoch": (I64, "batch-size, autoencoder: gradient steps per epoch, ceil(n_train / batch_size)"),
    "step_data_s": (F64, "batch-size: mean seconds per step fetching the batch (shuffle included), instrumented pass"),
    "step_forward_s": (F64, "batch-size: mean seconds per step in the forward pass and loss, instrumented pass"),
    "step_backward_s": (F64, "batch-size: mean seconds per step in the backward pass, instrumented pass"),
    "step_update_s": (F64, "batch-size: mean seconds per step in the parameter update, instrumented pass"),

    # autoencoder
    "hidden": (STR, "autoencoder: encoder layer sizes after the 784 inputs, e.g. '256,64' (decoder tied, mirrored)"),
    "loss_fn": (STR, "autoencoder: reconstruction loss, bce or mse (mean per pixel)"),
    "epoch_s": (F64, "training time of this epoch, seconds (loading, host-to-device copies and compute)"),
    "samples_per_s": (F64, "training images per second of training time in this epoch"),
    "transfer_s": (F64, "part of epoch_s spent copying data host to device (0 on the CPU)"),
    "cpu_wait": (F64, "CPU, Linux: time the process's threads waited for a CPU (run-queue delay) over wall time × "
                      "num_threads; autoencoder: in the epoch (over epoch_s), lr-sweep and batch-size: over the "
                      "run's whole training loop, evaluation included (the same on each of its rows), bench: over a "
                      "case's rounds (the same on each); above 0.15: other processes competed for the CPUs"),
    "data_on_device": (BOOL, "training set copied to the device once (implementation 'resident')"),
    "num_workers": (I64, "DataLoader worker processes"),
    "recon_png": (STR, "reconstruction grid (test images, reconstructions below), path relative to the results dir"),
    "resumed_from_epoch": (I64, "epoch of the checkpoint the run resumed from; null if it started afresh"),

    # benchmarks (pytest bench, raw rounds)
    "benchmark": (STR, "bench: case name (e.g. batch-size/tensor/b16/cpu), else the pytest test name"),
    "bench_group": (STR, "bench: pytest-benchmark group"),
    "round": (I64, "bench: round number, from 1 (warm-up rounds are not stored)"),
    "round_s": (F64, "bench: seconds taken by this round"),
    "reference": (STR, "bench: the loop the rounds alternated with in one process (fidelity: a bare PyTorch loop, "
                       "sgd-floor: a NumPy loop); null without one"),
    "reference_s": (F64, "bench: seconds that loop took just before this round"),
    "profile": (STR, "bench: quick or full"),

    # environment (amal.environment)
    "host": (STR, "host name"),
    "cpu_model": (STR, "CPU model name"),
    "cpu_count": (I64, "CPUs the process could run on (its CPU affinity: a container's or taskset's share, the gate's "
                       "pinned CPUs); null in runs stored before it was recorded"),
    "num_threads": (I64, "torch intra-op CPU threads in force"),
    "cuda_device": (STR, "GPU name, empty on CPU"),
    "torch_version": (STR, "torch.__version__"),
    "python_version": (STR, "Python version"),
    "git_commit": (STR, "commit of amal that ran ('+dirty' with local changes)"),
    "timestamp_utc": (STR, "UTC time the run started, ISO 8601"),
}

SCHEMA = pa.schema([(name, dtype) for name, (dtype, _) in COLUMNS.items()])
# what every run of an experiment holds, in every version of amal: a file without one of these (rewritten by
# another tool, cut down by hand) is refused by name, not read as a run with holes. Measurements may be null (a
# diverged epoch's loss, NaN, is stored as null: a run that diverged at once has no other), as may the epoch a run
# diverged at; the rest may not.
NULLABLE = ("train_loss", "elapsed_s", "epoch_s", "samples_per_s", "round_s", "diverged_epoch")
_WHERE = ("host", "cpu_model", "num_threads", "torch_version", "timestamp_utc")
_TRAINING = ("implementation", "seed", "device", "epoch", "epochs", "train_loss", "elapsed_s", *_WHERE)
REQUIRED = {
    "lr-sweep": (*_TRAINING, "lr", "diverged_epoch"),
    "batch-size": (*_TRAINING, "lr", "batch_size"),
    "autoencoder": (*_TRAINING, "batch_size", "hidden", "loss_fn", "epoch_s", "samples_per_s"),
    "bench": ("benchmark", "round", "round_s", *_WHERE),
}
# the columns amal.environment.environment() fills: where, how and when a run was measured
ENVIRONMENT = ("host", "cpu_model", "cpu_count", "num_threads", "cuda_device", "torch_version", "python_version",
               "git_commit", "timestamp_utc")


def default_results_dir() -> Path:
    """$AMAL_RESULTS, else ./results; set but empty (AMAL_RESULTS= in a script) it is unset, not the current folder."""
    return Path(os.environ.get("AMAL_RESULTS") or "results")


def new_run_id(experiment: str, started: datetime | None = None) -> str:
    """e.g. 20261127T133000Z-lr-sweep-4813f9a1c (the UTC time the run started, default now; then its milliseconds
    and 6 random hex digits): sorts by time, to the millisecond (two short runs started within one second are told
    apart, and the later one replaces the earlier in a report), unique without coordination."""
    started = started or datetime.now(UTC)
    return f"{started:%Y%m%dT%H%M%SZ}-{experiment}-{started.microsecond // 1000:03d}{secrets.token_hex(3)}"


def to_table(df: pd.DataFrame) -> pa.Table:
    """The rows as an arrow table with exactly SCHEMA's columns; unknown columns are a programming error."""
    unknown = sorted(set(df.columns) - set(COLUMNS))
    if unknown:
        raise KeyError(f"columns not in amal.store.COLUMNS: {', '.join(unknown)}")
    arrays = []
    for field in SCHEMA:
        if field.name in df.columns:
            arrays.append(pa.array(df[field.name], type=field.type, from_pandas=True))
        else:
            arrays.append(pa.nulls(len(df), type=field.type))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def save(df: pd.DataFrame, results_dir: str | Path) -> Path:
    """Append one run (its rows share a run_id) as `<results_dir>/<run_id>.parquet`, atomically."""
    run_ids = df["run_id"].unique()
    if len(run_ids) != 1:
        raise ValueError(f"one run per file: got run_ids {list(run_ids)}")
    results_dir = check_writable(results_dir)
    sink = pa.BufferOutputStream()
    pq.write_table(to_table(df), sink)
    return atomic_write_bytes(results_dir / f"{run_ids[0]}.parquet", sink.getvalue().to_pybytes())


def artifact_dir(results_dir: str | Path, run_id: str) -> Path:
    """Folder for files that belong to a run (images...), skipped by parquet readers."""
    path = Path(results_dir) / "_artifacts" / run_id
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_artifacts(df: pd.DataFrame, results_dir: str | Path,
                   artifacts: dict[str, tuple[str, bytes]]) -> pd.DataFrame:
    """Write each artifact {column: (file name, bytes)} atomically under _artifacts/<run_id>/ and put its path,
    relative to `results_dir`, in that column (e.g. recon_png = '_artifacts/<run_id>/reconstructions.png')."""
    if not artifacts:
        return df
    run_id = df["run_id"].iloc[0]
    folder = artifact_dir(results_dir, run_id)
    paths = {}
    for column, (name, data) in artifacts.items():
        if column not in COLUMNS:
            raise KeyError(f"artifact column {column!r} is not in amal.store.COLUMNS")
        if Path(name).name != name or name.startswith("."):
            raise ValueError(f"artifact names are plain file names, got {name!r}")
        atomic_write_bytes(folder / name, data)
        paths[column] = f"_artifacts/{run_id}/{name}"
    return df.assign(**paths)


def remove_artifacts(results_dir: str | Path, run_id: str) -> None:
    """Remove the artifacts of a run that was not stored (and _artifacts/ when that leaves it empty)."""
    folder = Path(results_dir) / "_artifacts" / run_id  # (artifact_dir would make it)
    shutil.rmtree(folder, ignore_errors=True)
    remove_empty([folder.parent])


def run_files(results_dir: str | Path) -> list[Path]:
    """The run files of the store, oldest first."""
    return sorted(p for p in Path(results_dir).glob("*.parquet") if not p.name.startswith((".", "_")))


def load(results_dir: str | Path, skip_bad: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """All runs as one DataFrame, and one line per file that could not be read (skipped when `skip_bad`)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UsageError(f"results directory {results_dir} does not exist")
    tables, problems, seen = [], [], {}  # seen: run id -> the file it was read from
    for path in run_files(results_dir):
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as exc:
            message = f"{path}: unreadable parquet file ({exc})".splitlines()[0]
        else:
            missing = [name for name in ("run_id", "experiment") if name not in table.column_names]
            known = table.select([n for n in table.column_names if n in COLUMNS])
            try:  # the schema's types: a file rewritten by other tools may hold large_string for string, say
                known = known.cast(pa.schema([SCHEMA.field(name) for name in known.column_names]))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
                message = f"{path}: columns of other types than amal's ({exc})".splitlines()[0]
            else:
                lacking = missing or lacks(known)
                runs = set() if lacking else set(known.column("run_id").unique().to_pylist())
                copied = sorted(runs & seen.keys())  # a copied file: its rows would count twice in every mean
                if not lacking and not copied:  # columns a file lacks are null, as in a run that does not use them
                    seen.update(dict.fromkeys(runs, path.name))
                    tables.append(pa.Table.from_arrays(
                        [known[field.name] if field.name in known.column_names else pa.nulls(len(known), field.type)
                         for field in SCHEMA], schema=SCHEMA))
                    continue
                message = (f"{path}: not an amal run file (no {', '.join(missing)} column)" if missing else
                           f"{path}: not a whole amal run (no values in {', '.join(lacking)})" if lacking else
                           f"{path}: run {copied[0]} is already in {seen[copied[0]]} (a copy?): keep one of the two "
                           "files")
        if not skip_bad:
            raise UsageError(message)
        problems.append(message)
    if not tables:
        return SCHEMA.empty_table().to_pandas(), problems
    return pa.concat_tables(tables).to_pandas(), problems


def lacks(table: pa.Table) -> list[str]:
    """The REQUIRED columns of the table's experiments that it lacks, or holds a null in (where not NULLABLE)."""
    needed = dict.fromkeys(name for experiment in pc.unique(table["experiment"]).to_pylist()
                           for name in REQUIRED.get(experiment, ()))
    return [name for name in needed if name not in table.column_names
            or name not in NULLABLE and table[name].null_count > 0]


def schema_markdown() -> str:
    """The schema as a Markdown table (the README's copy is checked against it by the tests)."""
    lines = ["| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{name}` | {dtype} | {meaning.replace('|', '/')} |" for name, (dtype, meaning) in COLUMNS.items()]
    return "\n".join(lines)
