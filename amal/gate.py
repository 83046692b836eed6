"""`python -m amal.gate --baseline REF`: time the cases of REF and of the working tree interleaved, then compare.

Each checkout runs in long-lived worker processes (amal.gate_worker, driven through amal.gate_processes; same
interpreter, working directory and PYTHONPATH = the checkout; three per checkout by default), all pinned to the same
CPU. Their rounds alternate A B A B, so that the machine's drift and the load on that CPU hit both alike, and rotate
over the processes, so that no single process's memory layout (which can make every round of one process several percent
faster) decides a side. A case that regressed is timed again in fresh processes, and fails the gate only if it
regresses again (--no-confirm: the first timing decides). The samples are written as pytest-benchmark JSON (and as
runs of a results store with --results), then compared by amal.compare. Exit code as amal.compare: 1 when a case
regressed, 0 otherwise (also when the gate is skipped), 2 when the gate cannot run.
"""

import json
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from amal import compare, files, store
from amal.benchmarks import param_columns
from amal.checkouts import commit_info, export_commit, git, resolve_ref
from amal.errors import Parser, UsageError, folder, sigterm_as_interrupt
from amal.gate_processes import pin_sides, shared_cpus, start_side
from amal.gate_timing import SIDES, GateSkipped, check_rounds_can_decide, common_cases, time_all
from amal.samples import ROUND_COLUMNS, to_benchmark_json


@dataclass(frozen=True)
class GateConfig:
    baseline: str  # git ref of the baseline: HEAD~1, main, a tag, a commit
    candidate: Path = Path(".")  # checkout timed as the candidate, as it is on disk (uncommitted changes included)
    profile: str = "quick"  # benchmark profile of both sides (amal.cases.PROFILES)
    rounds: int = 100  # timed rounds per case and side, at most (cheap cases: more rounds, more power)
    min_rounds: int = 12  # timed rounds per case and side, at least, whatever the budget
    warmup_rounds: int = 3  # untimed rounds per side first (caches settle; they also estimate a round's time)
    budget_s: float = 120.0  # time for the timed rounds of all cases together; slow cases get fewer rounds
    threads: int | None = 1  # torch threads in every worker (1: least exposed to other processes' load)
    only: tuple[str, ...] = ()  # names of the cases to time (empty: every case both sides have)
    output: Path = Path(".benchmarks/gate")  # where both samples are written as pytest-benchmark JSON
    results: Path | None = None  # when set, both samples are also stored there as bench runs
    pin: bool = True  # all workers on the same CPUs: else the scheduler keeps each on "its" core, loaded unlike
    processes: int = 3  # worker processes per side; rounds rotate over them (one process can be 10 % faster throughout)
    confirm: bool = True  # a case that regressed is timed again in fresh processes: it fails the gate if it does again


def pinned_cpus(cfg: GateConfig) -> set[int] | None:
    """The CPUs every worker runs on once imported: shared_cpus of the gate's threads, or None (not pinned)."""
    return shared_cpus(cfg.threads) if cfg.pin else None


def save_samples(rounds: pd.DataFrame, cases: list[dict], commits: dict, cfg: GateConfig,
                 when: datetime) -> list[Path]:
    """Both sides as pytest-benchmark JSON under cfg.output (and as bench runs of cfg.results): the paths/ids.
    `when`: the UTC time the timing started (file names, JSON datetime, run ids and timestamp_utc)."""
    from amal.cli import stamp
    from amal.environment import environment

    written, pinned = [], pinned_cpus(cfg)
    for side, sample in zip(SIDES, sides_of(rounds), strict=True):
        commit = commits[side]
        # what this side's worker ran with: its commit and torch threads, not the gate process's
        threads = next((c["sides"][side]["threads"] for c in cases), None)
        env = {**environment(started=when), "git_commit": commit["id"] + ("+dirty" if commit["dirty"] else "")}
        env = {**env, "num_threads": threads} if threads is not None else env
        env = {**env, "cpu_count": len(pinned)} if pinned else env  # the workers' CPUs, not the gate process's
        params = {c["name"]: {**c["sides"][side].get("params", {}), "device": c["device"], "profile": cfg.profile,
                              "num_threads": threads} for c in cases}
        machine = {**env, "gate_side": side, "gate_processes": cfg.processes, "profile": cfg.profile}
        doc = to_benchmark_json(sample, params, machine, commit, when.isoformat())
        path = cfg.output / f"{when:%Y%m%dT%H%M%SZ}-{side}-{commit['id'][:12] or 'tree'}.json"
        written.append(files.atomic_write_bytes(path, json.dumps(doc, indent=1).encode()))
        if cfg.results is not None:
            columns = {name: param_columns(p) for name, p in params.items()}  # as pytest bench stores them
            rows = pd.concat([part.assign(profile=cfg.profile, **columns[name])
                              for name, part in sample.drop(columns="settings").groupby("benchmark", sort=False)],
                             ignore_index=True)
            rows = stamp(rows, "bench", f"gate {side}", started=when).assign(
                git_commit=env["git_commit"], num_threads=env["num_threads"], cpu_count=env["cpu_count"])
            written.append(store.save(rows, cfg.results))
    return written


@dataclass(frozen=True)
class Timing:
    """One interleaved timing of both sides, each in fresh worker processes."""

    rounds: pd.DataFrame  # one row per timed round: side + amal.samples.ROUND_COLUMNS
    cases: list[dict]  # the cases timed, as common_cases lists them
    notes: list[str]  # the cases left out, and why
    started: datetime  # UTC time the timing started


def timing(checkouts: dict, cfg: GateConfig, compare_cfg: compare.CompareConfig, quiet: bool,
           confirming: bool = False) -> Timing:
    """Start cfg.processes fresh workers per side ({side: start_side's checkout, label and worker options}), find
    the cases both have, pin the workers, time the cases interleaved. The options that depend on the cases
    (--group-threshold, --min-rounds) are checked before any timing, unless `confirming` (a few cases again, checked
    with the others)."""
    with ExitStack() as stack:
        a, b = (start_side(processes=cfg.processes, stack=stack, **checkouts[side]) for side in SIDES)
        cases, notes = common_cases(a, b, cfg)  # (every worker has imported torch and amal by now)
        pin_sides(pinned_cpus(cfg), a, b)
        if not confirming:
            compare.check_groups(compare_cfg, {case["group"] for case in cases})
            check_rounds_can_decide(cfg.min_rounds, len(cases), compare_cfg.alpha)
        started = datetime.now(UTC)
        rounds, failed = time_all(a, b, cases, cfg, quiet, "gate, confirming" if confirming else "gate")
    return Timing(rounds, cases, notes + failed, started)


def sides_of(rounds: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The baseline's rounds and the candidate's, as amal.compare reads them (amal.samples.ROUND_COLUMNS)."""
    return tuple(rounds.loc[rounds["side"] == side, ROUND_COLUMNS] for side in SIDES)


def comparison(rounds: pd.DataFrame, compare_cfg: compare.CompareConfig) -> pd.DataFrame:
    """amal.compare's result for both sides' rounds, one row per case (seconds: a bootstrap per case)."""
    return compare.compare(*sides_of(rounds), compare_cfg)


def confirmation_note(first: pd.Series, verdict: str) -> str:
    """What the first timing said of a case that regressed, and what timing it again (`verdict`: 'regressed',
    'unchanged', 'improved', or '' when it could not be) means for the gate."""
    said = (f"{first['benchmark']}: regressed in the first timing (ratio {first['ratio']:.3f} "
            f"[{first['ratio_ci_low']:.3f}, {first['ratio_ci_high']:.3f}], Holm p {first['p_holm']:.2g}); ")
    if not verdict:
        return said + "it failed in the baseline when timed again, so the first timing stands and fails the gate"
    return said + "timed again in fresh worker processes, which the table shows: " + (
        "regressed again, so it fails the gate" if verdict == "regressed" else
        f"{verdict} this time, so the first reading did not hold and does not fail the gate")


def confirmed(checkouts: dict, rounds: pd.DataFrame, result: pd.DataFrame, cfg: GateConfig,
              compare_cfg: compare.CompareConfig,
              quiet: bool) -> tuple[pd.DataFrame, list[str], Timing | None, pd.DataFrame]:
    """Time the cases `result` (the comparison of `rounds`) calls regressed again, in fresh processes: (the rounds,
    with the new timing's in place of the first's for those cases; a note on each; the new timing, None without one;
    the comparison of the rounds returned). A case that fails in the baseline the second time keeps its first timing:
    a regression is not dropped for a flaky baseline."""
    flagged = result[result["verdict"] == "regressed"]
    if flagged.empty:
        return rounds, [], None, result
    try:
        again = timing(checkouts, replace(cfg, only=tuple(flagged["benchmark"])), compare_cfg, quiet, confirming=True)
    except GateSkipped as exc:  # every case that regressed failed in the baseline this time: nothing changed
        notes = [f"timed again: {exc}", *(confirmation_note(row, "") for _, row in flagged.iterrows())]
        return rounds, notes, None, result
    rounds = pd.concat([rounds[~rounds["benchmark"].isin(again.rounds["benchmark"])], again.rounds],
                       ignore_index=True)
    result = comparison(rounds, compare_cfg)
    verdicts = result.set_index("benchmark")["verdict"]
    timed = set(again.rounds["benchmark"])
    notes = [f"timed again: {note}" for note in again.notes]
    notes += [confirmation_note(row, verdicts[row["benchmark"]] if row["benchmark"] in timed else "")
              for _, row in flagged.iterrows()]
    return rounds, notes, again, result


def run_gate(cfg: GateConfig, compare_cfg: compare.CompareConfig | None = None,
             quiet: bool = True) -> tuple[pd.DataFrame, list[str], list[Path], pd.DataFrame]:
    """Export the baseline, time both sides interleaved, time the cases that regressed again in fresh processes
    (cfg.confirm), save the samples: (rounds, with a confirmation's in place of the first timing's; notes; files
    written; the comparison of those rounds). Every option is checked before the timing: a bad one costs no minutes
    and writes nothing."""
    candidate = Path(cfg.candidate).resolve()
    repo = Path(git(candidate, "rev-parse", "--show-toplevel"))
    commit = resolve_ref(repo, cfg.baseline)
    compare_cfg = compare_cfg or compare.CompareConfig()
    with tempfile.TemporaryDirectory(prefix="amal-gate-") as tmp:
        checkouts = {"baseline": {"checkout": export_commit(repo, commit, Path(tmp)),
                                  "label": f"baseline {cfg.baseline} ({commit[:12]})"},
                     "candidate": {"checkout": candidate, "label": f"candidate {candidate.name}"}}
        commits = {"baseline": {"id": commit, "ref": cfg.baseline, "dirty": False},
                   "candidate": commit_info(candidate)}  # read before the timing, as run_start() does
        first = timing(checkouts, cfg, compare_cfg, quiet)
        result = comparison(first.rounds, compare_cfg)
        rounds, notes, again, result = confirmed(checkouts, first.rounds, result, cfg, compare_cfg, quiet) \
            if cfg.confirm else (first.rounds, [], None, result)
    written = [path for done in (first, again) if done
               for path in save_samples(done.rounds, done.cases, commits, cfg, done.started)]
    return rounds, first.notes + notes, written, result


def build_parser() -> compare.Parser:
    parser = Parser(prog="python -m amal.gate", description=__doc__.split(":", 1)[1].strip())
    parser.add_argument("--baseline", required=True, help="git ref of the baseline (e.g. HEAD~1, main, v0.1)")
    parser.add_argument("--candidate", type=Path, default=Path("."),
                        help="checkout timed as the candidate, uncommitted changes included (default: .)")
    parser.add_argument("--profile", default=GateConfig.profile, choices=("quick", "full"),
                        help="benchmark profile (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=GateConfig.rounds,
                        help="timed rounds per case and side, at most (default: %(default)s)")
    parser.add_argument("--min-rounds", type=int, default=GateConfig.min_rounds,
                        help="timed rounds per case and side, at least (default: %(default)s)")
    parser.add_argument("--budget-s", type=float, default=GateConfig.budget_s,
                        help="seconds for the timed rounds of all cases; slow cases get fewer (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=GateConfig.threads,
                        help="torch CPU threads of both sides (default: %(default)s)")
    parser.add_argument("--case", action="append", default=[], help="time only this case (repeatable)")
    parser.add_argument("--output", type=folder, default=GateConfig.output,
                        help="folder for the two samples' JSON (default: %(default)s)")
    parser.add_argument("--results", type=folder, default=None, help="also store both samples in this results store")
    parser.add_argument("--processes", type=int, default=GateConfig.processes,
                        help="worker processes per side, rounds rotating over them (default: %(default)s)")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="let the scheduler place the workers (default: all on the same CPUs)")
    parser.add_argument("--no-confirm", dest="confirm", action="store_false",
                        help="fail on a first regressed timing (default: time such a case again in fresh processes "
                             "and fail only if it regresses again)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    compare.add_compare_arguments(parser)
    return parser


def config_from_args(args) -> GateConfig:
    """Validated gate settings; UsageError for counts below 1 or a candidate that is not a folder."""
    if args.rounds < 1 or args.min_rounds < 1 or args.min_rounds > args.rounds:
        raise UsageError(f"need 1 <= --min-rounds <= --rounds, got {args.min_rounds} and {args.rounds}")
    if not 0 < args.budget_s < float("inf"):  # NaN fails too
        raise UsageError(f"--budget-s must be a finite number of seconds > 0, got {args.budget_s}")
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {args.threads}")
    if not 1 <= args.processes <= args.min_rounds:  # each process gets a share of the timed rounds
        raise UsageError(f"need 1 <= --processes <= --min-rounds, got {args.processes} and {args.min_rounds}")
    if not args.candidate.is_dir():
        raise UsageError(f"candidate {args.candidate} is not a folder")
    files.check_writable(args.output, "--output folder")
    if args.results is not None:
        files.check_writable(args.results, "--results folder")
    return GateConfig(baseline=args.baseline, candidate=args.candidate, profile=args.profile, rounds=args.rounds,
                      min_rounds=args.min_rounds, budget_s=args.budget_s, threads=args.threads,
                      only=tuple(args.case), output=Path(args.output), pin=args.pin, processes=args.processes,
                      confirm=args.confirm,
                      results=Path(args.results) if args.results else None)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    new_folders = [*files.missing_folders(args.output), *(files.missing_folders(args.results) if args.results else [])]
    try:
        with sigterm_as_interrupt():
            return gate_main(args)
    finally:  # a gate that stopped early leaves no empty folder behind (folders holding samples stay)
        files.remove_empty(new_folders)


def gate_main(args) -> int:
    try:
        compare_cfg = compare.config_from_args(args)
        cfg = config_from_args(args)
        rounds, notes, written, result = run_gate(cfg, compare_cfg, args.quiet)
        info = sys.stderr if args.format == "json" else sys.stdout  # keep stdout parseable as JSON
        print("samples: " + ", ".join(map(str, written)), file=info)
        # the cases it left out are noted with the comparison's own notes (in the JSON's "notes" too)
        return compare.gate(*sides_of(rounds), compare_cfg, args.format, notes, result)
    except GateSkipped as exc:
        print(json.dumps({"skipped": str(exc)}) if args.format == "json" else f"gate skipped: {exc}")
        return 0
    except UsageError as exc:
        print(f"python -m amal.gate: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a file system gone read-only, while exporting or writing the samples
        print(f"python -m amal.gate: error: {exc.strerror or exc}{f': {exc.filename}' if exc.filename else ''}; "
              "nothing was compared", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: nothing was compared", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
