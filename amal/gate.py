"""`python -m amal.gate --baseline REF`: time the cases of REF and of the working tree interleaved, then compare.

Each checkout runs in long-lived worker processes (amal.gate_worker, driven through amal.gate_processes; same
interpreter, working directory and PYTHONPATH = the checkout; three per checkout by default), all pinned to the same
CPU. Their rounds alternate A B A B, so that the machine's drift and the load on that CPU hit both alike, and rotate
over the processes, so that no single process's memory layout (which can make every round of one process several percent
faster) decides a side. The two samples are written as pytest-benchmark JSON (and as runs of a results store with
--results), then compared by amal.compare. Exit code as amal.compare: 1 when a case regressed, 0 otherwise (also when
the gate is skipped), 2 when the gate cannot run.
"""

import itertools
import json
import sys
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from amal import compare, files, store
from amal.benchmarks import param_columns
from amal.checkouts import commit_info, export_commit, git, resolve_ref
from amal.errors import Parser, UsageError, folder, sigterm_as_interrupt
from amal.gate_processes import Side, WorkerDied, pin_sides, shared_cpus, start_side
from amal.samples import ROUND_COLUMNS, settings_change, settings_text, to_benchmark_json
from amal.stats import smallest_p

SIDES = ("baseline", "candidate")


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


class GateSkipped(Exception):
    """The gate has nothing to compare (old baseline without cases, no case in common): say why, exit 0."""


def interleave(runs_a: list, runs_b: list, rounds: int) -> tuple[list[float], list[float]]:
    """Seconds of `rounds` calls a side, alternating A B A B, so both see the same drift of the machine; call i of a
    side goes to its process i mod len (A1 B1 A2 B2 ...: each process of a side gets its share of the rounds)."""
    seconds_a, seconds_b = [], []
    for i in range(rounds):
        seconds_a.append(runs_a[i % len(runs_a)]())
        seconds_b.append(runs_b[i % len(runs_b)]())
    return seconds_a, seconds_b


def rounds_for(round_s: float, n_cases: int, cfg: GateConfig) -> int:
    """Timed rounds per side: the case's share of the budget over two sides, within [min_rounds, rounds]."""
    affordable = cfg.budget_s / n_cases / (2 * max(round_s, 1e-9))  # (a float: a huge budget is no int overflow)
    return max(cfg.min_rounds, int(min(cfg.rounds, affordable)))


class BaselineFailed(Exception):
    """A case raised in the baseline (a bug the candidate may fix): that case is not compared."""


def pinned_cpus(cfg: GateConfig) -> set[int] | None:
    """The CPUs every worker runs on once imported: shared_cpus of the gate's threads, or None (not pinned)."""
    return shared_cpus(cfg.threads) if cfg.pin else None

def time_case(a: Side, b: Side, name: str, n_cases: int, cfg: GateConfig) -> tuple[list[float], list[float]]:
    """Set the case up in every worker of both sides, warm each process up (interleaved), then time interleaved
    rounds. BaselineFailed when the baseline's setup or one of its rounds raises; the candidate's errors go up as
    they are."""

    def baseline(call):
        try:
            return call()
        except WorkerDied:  # not a bug of the case: with one process fewer the side would go on, and pass anything
            raise
        except UsageError as exc:
            raise BaselineFailed(str(exc)) from exc

    def release() -> None:
        a.request("release")
        b.request("release")

    baseline(lambda: a.request("setup", name=name))
    b.request("setup", name=name)
    rounds_a = [lambda run=run: baseline(run) for run in a.rounds()]
    rounds_b = b.rounds()
    try:
        warm_a, warm_b = interleave(rounds_a, rounds_b, cfg.warmup_rounds * len(rounds_a))  # that many per process
        rounds = rounds_for(float(np.median(warm_a + warm_b)) if warm_a else 0.0, n_cases, cfg)
        timed = interleave(rounds_a, rounds_b, rounds)
    except BaselineFailed:  # the gate goes on with the next case
        release()
        raise
    # (after Ctrl-C or a candidate's error the gate stops: no release, whose reply would be a round's)
    release()
    return timed


def check_rounds_can_decide(min_rounds: int, n_cases: int, alpha: float) -> None:
    """UsageError when a case timed `min_rounds` a side could never be called regressed: even fully separated
    samples would give a Holm p (the rank test's smallest p × the number of cases) of at least alpha. Such a gate
    passes whatever the code does."""
    needed = next(n for n in itertools.count(2) if smallest_p(n, n) * n_cases < alpha)
    if min_rounds < needed:
        raise UsageError(f"--min-rounds {min_rounds} cannot detect a regression: over {n_cases} case(s) at alpha "
                         f"{alpha:g}, a case needs at least {needed} rounds a side for its Holm p to go below alpha")


def common_cases(a: Side, b: Side, cfg: GateConfig) -> tuple[list[dict], list[str]]:
    """The cases both sides have (CUDA ones only with CUDA), and lines noting what is left out."""
    cases, known = {}, set()
    for worker in (a, b):
        # a baseline from before amal or its cases has nothing to compare: skipped; a candidate without them is
        # the wrong folder (--candidate), which must not pass CI
        lacking = GateSkipped if worker is a else UsageError
        hello = worker.request("hello")
        if "missing" in hello:
            raise lacking(f"{worker.label} has no amal package ({hello['missing']})")
        if not Path(hello["amal_file"]).resolve().is_relative_to(worker.checkout):
            if not (worker.checkout / "amal" / "__init__.py").is_file():  # the one it found is on PYTHONPATH
                raise lacking(f"{worker.label} has no amal package")
            raise UsageError(f"{worker.label} worker imported {hello['amal_file']}, not the checkout's amal")
        listing = worker.request("cases", profile=cfg.profile, threads=cfg.threads)
        if "missing" in listing:
            raise lacking(f"{worker.label} has no benchmark cases ({listing['missing']})")
        threads = listing.get("threads")  # what the worker's torch runs with
        cases[worker.label] = {c["name"]: {**c, "threads": threads, "settings": settings_text(
            {**c.get("params", {}), "device": c["device"], "profile": cfg.profile, "num_threads": threads})}
            for c in listing["cases"] if c["device"] == "cpu" or listing["cuda"]}
        known |= {c["name"] for c in listing["cases"]}
    unknown = sorted(set(cfg.only) - known)
    if unknown:  # a misspelt --case must not pass the gate by comparing nothing
        raise UsageError(f"--case {', '.join(unknown)}: no such case in the baseline or the candidate "
                         f"(profile {cfg.profile}; cases: {', '.join(sorted(known)) or 'none'})")
    runnable = set(cases[a.label]) | set(cases[b.label])
    no_cuda = sorted(set(cfg.only) - runnable)  # known but left out above: CUDA cases on a machine without CUDA
    if cfg.only and not set(cfg.only) & runnable:
        raise GateSkipped(f"--case {', '.join(no_cuda)} needs a CUDA device; none on this machine")
    names = sorted(set(cases[a.label]) & set(cases[b.label]) & (set(cfg.only) or set(cases[b.label])))
    notes = [f"only in the {w.label} (not compared): {', '.join(sorted(set(cases[w.label]) - set(names)))}"
             for w in (a, b) if set(cases[w.label]) - set(names) and not cfg.only]
    notes += [f"not compared, needs a CUDA device (none on this machine): {', '.join(no_cuda)}"] if no_cuda else []
    changes = {name: settings_change(cases[a.label][name]["settings"], cases[b.label][name]["settings"])
               for name in names}
    notes += [f"{name}: not compared, its settings differ ({change})" for name, change in changes.items() if change]
    names = [name for name in names if not changes[name]]  # other work on each side: not timed at all
    if not names and any(changes.values()):
        raise GateSkipped("every case in common changed its settings: " + "; ".join(notes))
    if not names:
        raise GateSkipped(f"no benchmark case in common between {a.label} and {b.label} (profile {cfg.profile})")
    return [{**cases[b.label][name], "sides": {"baseline": cases[a.label][name], "candidate": cases[b.label][name]}}
            for name in names], notes


def time_all(a: Side, b: Side, cases: list[dict], cfg: GateConfig,
             quiet: bool = True) -> tuple[pd.DataFrame, list[str]]:
    """Rounds of every case in both sides (columns side + amal.samples.ROUND_COLUMNS), and lines on cases that
    failed in the baseline; GateSkipped when every case did."""
    parts, notes = [], []
    for case in tqdm(cases, desc="gate", unit="case", disable=quiet or not sys.stderr.isatty(), leave=False):
        try:
            timed = time_case(a, b, case["name"], len(cases), cfg)
        except BaselineFailed as exc:
            notes.append(f"not compared, failed in the baseline: {exc}")
            continue
        for side, seconds in zip(SIDES, timed, strict=True):
            parts.append(pd.DataFrame({"side": side, "benchmark": case["name"], "bench_group": case["group"],
                                       "round": np.arange(1, len(seconds) + 1), "round_s": seconds,
                                       "settings": case["sides"][side]["settings"]}))
    if not parts:
        raise GateSkipped("every case failed in the baseline: " + "; ".join(notes))
    return pd.concat(parts, ignore_index=True), notes


def save_samples(rounds: pd.DataFrame, cases: list[dict], commits: dict, cfg: GateConfig,
                 when: datetime) -> list[Path]:
    """Both sides as pytest-benchmark JSON under cfg.output (and as bench runs of cfg.results): the paths/ids.
    `when`: the UTC time the timing started (file names, JSON datetime, run ids and timestamp_utc)."""
    from amal.cli import stamp
    from amal.environment import environment

    written, pinned = [], pinned_cpus(cfg)
    for side in SIDES:
        sample = rounds[rounds["side"] == side][ROUND_COLUMNS]
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


def run_gate(cfg: GateConfig, compare_cfg: compare.CompareConfig | None = None,
             quiet: bool = True) -> tuple[pd.DataFrame, list[str], list[Path]]:
    """Export the baseline, time both sides interleaved, save the samples: (rounds, notes, files written).
    Every option is checked before the timing: a bad one costs no minutes and writes nothing."""
    candidate = Path(cfg.candidate).resolve()
    repo = Path(git(candidate, "rev-parse", "--show-toplevel"))
    commit = resolve_ref(repo, cfg.baseline)
    with tempfile.TemporaryDirectory(prefix="amal-gate-") as tmp, ExitStack() as stack:
        baseline_dir = export_commit(repo, commit, Path(tmp))
        a = start_side(baseline_dir, f"baseline {cfg.baseline} ({commit[:12]})", cfg.processes, stack)
        b = start_side(candidate, f"candidate {candidate.name}", cfg.processes, stack)
        cases, notes = common_cases(a, b, cfg)  # (every worker has imported torch and amal by now)
        pin_sides(pinned_cpus(cfg), a, b)
        compare_cfg = compare_cfg or compare.CompareConfig()
        compare.check_groups(compare_cfg, {case["group"] for case in cases})  # before timing
        check_rounds_can_decide(cfg.min_rounds, len(cases), compare_cfg.alpha)
        commits = {"baseline": {"id": commit, "ref": cfg.baseline, "dirty": False},
                   "candidate": commit_info(candidate)}  # read before the timing, as run_start() does
        started = datetime.now(UTC)
        rounds, failed = time_all(a, b, cases, cfg, quiet)
    return rounds, notes + failed, save_samples(rounds, cases, commits, cfg, started)


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
        rounds, notes, written = run_gate(cfg, compare_cfg, args.quiet)
        info = sys.stderr if args.format == "json" else sys.stdout  # keep stdout parseable as JSON
        print("samples: " + ", ".join(map(str, written)), file=info)
        sides = {side: rounds[rounds["side"] == side][ROUND_COLUMNS] for side in SIDES}
        # the cases it left out are noted with the comparison's own notes (in the JSON's "notes" too)
        return compare.gate(sides["baseline"], sides["candidate"], compare_cfg, args.format, notes)
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
