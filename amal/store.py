"""The results store: one parquet file per run under a results directory, all with one schema.

Every file holds the full set of COLUMNS (unused ones are null), so `pandas.read_parquet(results_dir)` reads all runs
of all experiments at once. Files are written to a hidden temp file and renamed, never overwritten. Files a run makes
beside its rows (images, checkpoints) go under `_artifacts/<run_id>/`, which parquet readers skip (leading underscore).
"""

import os
import secrets
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from amal.errors import UsageError

STR, F64, I64, BOOL = pa.string(), pa.float64(), pa.int64(), pa.bool_()

# name -> (type, meaning). The README's schema table is this dict; tests check they agree.
COLUMNS: dict[str, tuple[pa.DataType, str]] = {
    # identity
    "run_id": (STR, "unique id of the run (UTC time, experiment, random suffix); one file per run"),
    "experiment": (STR, "lr-sweep, batch-size, autoencoder or bench"),
    "implementation": (STR, "how the training loop is written: manual, tensor, dataloader, module, ..."),
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

    # autoencoder

    # benchmarks (pytest bench, raw rounds)
    "benchmark": (STR, "bench: benchmark name (the case's name, or pytest-benchmark's test name)"),
    "bench_group": (STR, "bench: benchmark group (the regression gate's threshold can differ per group)"),
    "round": (I64, "bench: round number, from 1, in the order the rounds ran"),
    "round_s": (F64, "bench: seconds taken by that one round"),
    "profile": (STR, "bench: quick or full"),

    # environment (amal.environment)
    "host": (STR, "host name"),
    "cpu_model": (STR, "CPU model name"),
    "num_threads": (I64, "torch intra-op CPU threads in force"),
    "cuda_device": (STR, "GPU name, empty on CPU"),
    "torch_version": (STR, "torch.__version__"),
    "python_version": (STR, "Python version"),
    "git_commit": (STR, "commit of amal that ran ('+dirty' with local changes)"),
    "timestamp_utc": (STR, "UTC time the run started, ISO 8601"),
}

SCHEMA = pa.schema([(name, dtype) for name, (dtype, _) in COLUMNS.items()])


def default_results_dir() -> Path:
    return Path(os.environ.get("AMAL_RESULTS", "results"))


def new_run_id(experiment: str) -> str:
    """e.g. 20261127T133000Z-lr-sweep-3f9a1c: sorts by time, unique without coordination."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{experiment}-{secrets.token_hex(3)}"


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


def check_writable(results_dir: str | Path) -> Path:
    """Create `results_dir` if needed and prove a file can be written there; UsageError otherwise."""
    results_dir = Path(results_dir)
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        probe = results_dir / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"results directory {results_dir} is not writable: {exc.strerror or exc}") from exc
    return results_dir


def atomic_write_bytes(path: Path, data: bytes, overwrite: bool = False) -> Path:
    """Write `data` to `path` via a hidden temp file and a rename; refuse to replace a file unless `overwrite`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if `path` exists: an earlier result is never replaced
            tmp.unlink()
    finally:
        tmp.unlink(missing_ok=True)
    return path


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


def run_files(results_dir: str | Path) -> list[Path]:
    """The run files of the store, oldest first."""
    return sorted(p for p in Path(results_dir).glob("*.parquet") if not p.name.startswith((".", "_")))


def load(results_dir: str | Path, skip_bad: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """All runs as one DataFrame, and one line per file that could not be read (skipped when `skip_bad`)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UsageError(f"results directory {results_dir} does not exist")
    tables, problems = [], []
    for path in run_files(results_dir):
        try:
            table = pq.read_table(path)
            tables.append(table.select([n for n in table.column_names if n in COLUMNS]))
        except (OSError, pa.ArrowException) as exc:
            message = f"{path}: unreadable parquet file ({exc})".splitlines()[0]
            if not skip_bad:
                raise UsageError(message) from exc
            problems.append(message)
    if not tables:
        return SCHEMA.empty_table().to_pandas(), problems
    return pa.concat_tables(tables, promote_options="default").to_pandas(), problems
