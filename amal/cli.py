"""`python -m amal.run EXPERIMENT ...`: run one experiment over its grid, store it as parquet, print a summary."""

import argparse
import os
import sys
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from amal import files, store
from amal.environment import run_start
from amal.errors import (
    Parser,
    UsageError,
    check_interrupted,
    folder,
    help_paragraphs,
    interrupts_ignored,
    sigterm_as_interrupt,
)
from amal.experiments import EXPERIMENTS
from amal.report.format import plural, short_commit, threads_on, utc_time
from amal.timing import set_threads, use_device

PROG_REPORT = "python -m amal.report"


def build_parser() -> Parser:
    parser = Parser(prog="python -m amal.run", description=__doc__.split(":", 1)[1].strip())
    commands = parser.add_subparsers(dest="experiment", metavar="EXPERIMENT", parser_class=Parser)
    commands.required = True
    for name, experiment in EXPERIMENTS.items():
        sub = commands.add_parser(name, help=experiment.__doc__.splitlines()[0],
                                  description=help_paragraphs(experiment.__doc__),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        experiment.add_arguments(sub)
        threads = getattr(experiment, "CAMPAIGN_THREADS", None)  # a run by hand is timed as the campaign's is
        default = threads or "torch's choice"
        sub.add_argument("--threads", type=int, default=threads, metavar="N",
                         help=f"torch CPU threads (default: {default}, as in the campaign of {PROG_REPORT}; "
                              "recorded in the results)")
        sub.add_argument("--results", type=folder, default=None, metavar="DIR",
                         help="results directory (default: $AMAL_RESULTS or ./results)")
        sub.add_argument("--tag", default="", help="free text stored with every row")
        sub.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


@contextmanager
def progress_bar(total: int, description: str, quiet: bool):
    """The progress callback of an experiment's run: a tqdm bar on stderr (off when quiet or when stderr is not a
    terminal) that first raises KeyboardInterrupt for an interrupt Python dropped (check_interrupted), so that the
    run stops at its next step of progress, not after its last epoch."""
    with tqdm(total=total, desc=description, unit="run", disable=quiet or not sys.stderr.isatty(),
              leave=False) as bar:
        def progress(steps: int) -> None:
            check_interrupted()
            bar.update(steps)

        yield progress


def stamp(df: pd.DataFrame, experiment: str, tag: str, device: str | None = None,
          started: datetime | None = None) -> pd.DataFrame:
    """The rows with run_id, experiment, tag and the environment they were measured in; `started`: when the run
    started (its run_id and timestamp_utc; default: now)."""
    from amal.environment import environment

    started = started or datetime.now(UTC)
    env = environment(device, started)
    return df.assign(run_id=store.new_run_id(experiment, started), experiment=experiment, tag=tag, **env)


def measured_on(df: pd.DataFrame) -> str:
    """Where and how the stored run was timed, from its environment columns: 'measured on vm: Intel(R) Xeon(R)
    Processor, 1 torch thread on 2 CPUs; torch 2.14.1, Python 3.11.7, commit f75d526af250, 2026-11-29 18:51 UTC'
    (with the GPU's name after the threads when it ran on one; the threads and CPUs as the report writes them)."""
    run = df.iloc[0]
    gpu = f", GPU {run['cuda_device']}" if run["cuda_device"] else ""
    threads = threads_on(run["num_threads"], [run["cpu_count"]], "torch thread")
    return (f"measured on {run['host']}: {run['cpu_model']}, {threads}{gpu}; torch {run['torch_version']}, Python "
            f"{run['python_version']}, commit {short_commit(run['git_commit'])}, {utc_time(run['timestamp_utc'])}")


def store_run(df: pd.DataFrame, experiment: str, tag: str, results_dir,
              started: datetime | None = None) -> tuple[pd.DataFrame, Path]:
    """Stamp an experiment's rows, write its artifacts (df.attrs["artifacts"]) and the run file; return both."""
    artifacts = df.attrs.pop("artifacts", {})  # files beside the rows: {column: (name, bytes)}
    df = stamp(df, experiment, tag, df["device"].iloc[0], started)
    try:
        df = store.save_artifacts(df, results_dir, artifacts)
        return df, store.save(df, results_dir)
    except BaseException:  # a full disk, Ctrl-C: no image left behind for a run that was not stored
        store.remove_artifacts(results_dir, df["run_id"].iloc[0])
        raise


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    new_folders = files.missing_folders(args.results or store.default_results_dir())
    if getattr(args, "checkpoint", ""):  # the folder it is written into (through a link: where that points)
        try:
            new_folders += files.missing_folders(files.written_through(args.checkpoint).parent)
        except (OSError, RuntimeError):  # a loop of links: refused by the run, which makes no folder
            pass
    code = 1
    try:
        with sigterm_as_interrupt():
            code = run(args)
    finally:  # failed or crashed, nothing was stored: no empty results (or checkpoint) folder left behind either
        if code != 0:
            files.remove_empty(new_folders)
    return code


def run(args) -> int:
    experiment = EXPERIMENTS[args.experiment]
    cfg = None
    try:
        cfg = experiment.config_from_args(args)
        results_dir = files.check_writable(args.results or store.default_results_dir())
        set_threads(args.threads)
        use_device(getattr(cfg, "device", "cpu"))
        started = run_start()
        with progress_bar(experiment.units(cfg), args.experiment, args.quiet) as progress:
            df = experiment.run(cfg, progress=progress)
        check_interrupted()  # one that Python dropped (in os.fork's hooks) must not be stored as a finished run
        df, path = store_run(df, args.experiment, args.tag, results_dir, started)
    except UsageError as exc:
        print(f"python -m amal.run {args.experiment}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a file system gone read-only: the run cannot go on, nothing was stored
        print(f"python -m amal.run {args.experiment}: error: {exc.strerror or exc}"
              f"{f': {exc.filename}' if exc.filename else ''}; nothing was stored", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: nothing was stored", file=sys.stderr)
        checkpoint = getattr(cfg, "checkpoint", "")
        if checkpoint and Path(checkpoint).is_file():
            print(f"the checkpoint {checkpoint} holds the last finished epoch: run the same command with --resume "
                  "to go on from there", file=sys.stderr)
        return 130
    with interrupts_ignored():  # stored: the run is done, what is left is to say so
        print_stored(experiment, cfg, df, path, results_dir)
    return 0


def print_stored(experiment, cfg, df: pd.DataFrame, path: Path, results_dir: Path) -> None:
    """The run's summary and notes, where it was measured, and where it was stored; a reader that went away (`|
    head`) ends the output, not the command."""
    try:
        print(experiment.summary(df).to_string(index=False))
        if hasattr(experiment, "overall"):  # what a per-epoch table leaves to the reader's arithmetic
            print(experiment.overall(df))
        for note in getattr(experiment, "notes", lambda df, cfg: [])(df, cfg):
            print(note, file=sys.stderr)
        print(measured_on(df))
        print(f"stored {plural(len(df), 'row')} in {path}")
        for image in df["recon_png"].dropna().unique() if "recon_png" in df else []:  # files stored beside the rows
            print(f"reconstruction grid in {results_dir / image}")
        sys.stdout.flush()
    except BrokenPipeError:  # stdout to /dev/null from here on: Python would print the error again at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
