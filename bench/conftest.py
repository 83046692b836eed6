"""pytest-benchmark suites of amal: `pytest bench [--amal-profile quick|full] [--benchmark-autosave]`.

Cases come from amal.cases.cases(profile). pytest-benchmark reads its clock through amal.timing.clock_s
(perf_counter_ns) unless --benchmark-timer says otherwise, pauses the garbage collector in each round (as
amal.timing.Stopwatch does), and always keeps the raw per-round times in the JSON it saves (as with
--benchmark-save-data). --amal-threads N sets torch's CPU threads. After the session every timed round is
also appended to the results store as one run file (experiment "bench"), with the case parameters and the environment;
an interrupted session (Ctrl-C) stores nothing and saves no JSON: the cases it measured are not the run asked for.
"""

from datetime import datetime

import pandas as pd
import pytest
import torch
from pytest_benchmark.timers import default_timer
from pytest_benchmark.utils import NameWrapper

from amal import files, store
from amal.benchmarks import round_rows
from amal.cases import PROFILES, cases
from amal.cli import stamp
from amal.environment import run_start
from amal.errors import UsageError, folder
from amal.timing import set_threads


def pytest_addoption(parser):
    group = parser.getgroup("amal")
    group.addoption("--amal-profile", choices=PROFILES, default="quick",
                    help="quick (default: few epochs, a subset of batch sizes) or full (the seed's 1000-epoch grid)")
    group.addoption("--amal-results", "--results", dest="amal_results", default=None, type=folder,
                    help="results directory the rounds are appended to (default: $AMAL_RESULTS or ./results)")
    group.addoption("--amal-no-store", action="store_true", help="do not append the rounds to the results store")
    group.addoption("--amal-threads", type=int, default=None,
                    help="torch CPU threads for every benchmark (default: torch's choice; recorded in the results)")


@pytest.hookimpl(tryfirst=True)  # before pytest-benchmark's own configure reads these options
def pytest_configure(config):
    config.option.benchmark_save_data = True  # raw rounds in saved JSON: the regression gate reads them
    config.option.benchmark_disable_gc = True  # no collection inside a round, as amal.timing.Stopwatch does
    if config.option.benchmark_timer == str(NameWrapper(default_timer)):
        config.option.benchmark_timer = "amal.timing.clock_s"
    try:  # fail now rather than after minutes of measurements
        set_threads(config.option.amal_threads)
        if not config.option.amal_no_store:
            results = config.option.amal_results or store.default_results_dir()
            config.stash[NEW_FOLDERS] = files.missing_folders(results)
            files.check_writable(results)
    except UsageError as exc:
        raise pytest.UsageError(str(exc)) from exc
    config.pluginmanager.register(NoJsonWhenInterrupted(), "amal-no-json-when-interrupted")


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        profile_cases = cases(metafunc.config.option.amal_profile)
        metafunc.parametrize("case", profile_cases, ids=[case.name for case in profile_cases])


@pytest.fixture(scope="session")
def profile(request) -> str:
    return request.config.option.amal_profile


def pytest_collection_modifyitems(config, items):
    """Cases on CUDA are skipped without a CUDA device (collected, so the count of cases does not change)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none on this machine")
    for item in items:
        case = item.callspec.params.get("case") if hasattr(item, "callspec") else None
        if case is not None and case.device.startswith("cuda"):
            item.add_marker(skip)


STORED = pytest.StashKey[str]()
NEW_FOLDERS = pytest.StashKey[list]()  # the results folders this session created (removed again if left empty)
STARTED = pytest.StashKey[datetime]()
UNSAVED_JSON = pytest.StashKey[bool]()  # an interrupted session whose JSON was not saved


def pytest_sessionstart(session):
    """The session's start: run_id and timestamp_utc of the rounds it stores."""
    session.config.stash[STARTED] = run_start()


def measured(config) -> list[dict]:
    """pytest-benchmark's records of this session, raw rounds included (errored benchmarks left out, and one that
    Ctrl-C stopped before its first timed round ended: pytest-benchmark flags errors only, and has no round for it)."""
    session = getattr(config, "_benchmarksession", None)
    if session is None or session.disabled:
        return []
    return [bench.as_dict(include_data=True) for bench in session.benchmarks
            if not bench.has_error and bench.stats is not None and len(bench.stats.data)]


def interrupted(exitstatus) -> bool:
    return exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR)


class NoJsonWhenInterrupted:
    """An interrupted session saves no JSON (--benchmark-autosave/-save/-json) as it stores no rounds: its cases would
    pass for the whole bench run, the last one cut short, and the next --benchmark-compare would compare against
    them. (A plugin object: pytest-benchmark saves before its sessionfinish wrapper yields, so this must wrap it.)"""

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session, exitstatus):
        bench_session = getattr(session.config, "_benchmarksession", None)
        if interrupted(exitstatus) and bench_session is not None:
            if bench_session.save or bench_session.autosave or bench_session.json:
                session.config.stash[UNSAVED_JSON] = True
            bench_session.save = bench_session.autosave = bench_session.json = None
        yield


def pytest_sessionfinish(session, exitstatus):
    """Append the rounds to the results store; an interrupted session stores nothing."""
    config = session.config
    benchmarks = measured(config)
    unsaved = ["saved as JSON"] if config.stash.get(UNSAVED_JSON, False) else []
    if config.option.amal_no_store or not benchmarks or interrupted(exitstatus):
        files.remove_empty(config.stash.get(NEW_FOLDERS, []))  # nothing stored: no empty results folder left
        unsaved = ([] if config.option.amal_no_store else ["stored"]) + unsaved
        if interrupted(exitstatus) and benchmarks and unsaved:  # a part of the cases: not a bench run
            config.stash[STORED] = (f"amal: interrupted: the rounds of {len(benchmarks)} case(s) were not "
                                    f"{' nor '.join(unsaved)}")
        return
    df = round_rows(benchmarks, config.option.amal_profile)
    on_gpu = df["device"].astype(str).str.startswith("cuda") if "device" in df else pd.Series(False, df.index)
    df = stamp(df, "bench", tag="", device="cuda" if on_gpu.any() else None, started=config.stash.get(STARTED, None))
    df["cuda_device"] = df["cuda_device"].where(on_gpu, "")  # the GPU's name on the rounds that ran on it only
    path = store.save(df, config.option.amal_results or store.default_results_dir())
    config.stash[STORED] = f"amal: stored {len(df)} benchmark rounds in {path}"


def pytest_terminal_summary(terminalreporter, config):
    """The fidelity and SGD-floor figures (extra_info['summary']) and where the rounds were stored."""
    lines = [b["extra_info"]["summary"] for b in measured(config) if "summary" in b["extra_info"]]
    if lines:
        terminalreporter.section("amal")
        for line in lines:
            terminalreporter.write_line(line)
    if STORED in config.stash:
        terminalreporter.write_line(config.stash[STORED])
