"""The one timing module: every time the project reports is read here.

Rules: `time.perf_counter_ns`; on CUDA a `torch.cuda.synchronize` before every clock read (kernels are asynchronous,
the clock would otherwise see only their launch); Python's cyclic garbage collector paused while a stopwatch runs (as
`timeit` does: a full collection of a process holding a few hundred thousand objects takes ~0.2 s, and landed inside
one epoch of 1.4 ms; it runs when the block ends, off the clock); warm-up work is run and thrown away before
measuring; evaluation is timed on a separate stopwatch so it never counts as training time. A part of a CUDA loop
(the host-to-device copies of a training epoch) is timed by `StreamStopwatch`, with CUDA events instead of a sync per
block, so that timing the part does not slow the whole.
"""

import gc
import os
import statistics
import time
from collections.abc import Callable
from contextlib import contextmanager

import torch

from amal.errors import UsageError


def clock_s() -> float:
    """Seconds on the clock every measurement reads, `perf_counter_ns` / 1e9 (pytest-benchmark's timer in bench/)."""
    return time.perf_counter_ns() / 1e9


def resolve_device(name: str) -> torch.device:
    """'cpu', 'cuda', 'cuda:N' or 'auto' (cuda when available) as a torch.device; UsageError for anything else."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    index = name.removeprefix("cuda:") if name.startswith("cuda:") else None
    if name not in ("cpu", "cuda") and not (index is not None and index.isascii() and index.isdigit()):
        raise UsageError(f"unknown device {name!r}; choose cpu, cuda, cuda:N (a GPU's number) or auto")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"device {name!r} asked for, but CUDA is not available on this machine")
    if index is not None and int(index) >= torch.cuda.device_count():
        raise UsageError(f"device {name!r} asked for, but this machine has {torch.cuda.device_count()} GPU(s), "
                         "numbered from 0")
    return torch.device(name)


def use_device(name: str) -> torch.device:
    """Resolve `name` and, for a numbered GPU (cuda:1), make it the process's current CUDA device, so that 'cuda'
    then means that GPU everywhere (its name is the one recorded with the results)."""
    device = resolve_device(name)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)
    return device


def is_cuda(device: torch.device | str | None) -> bool:
    return device is not None and torch.device(device).type == "cuda"


def sync(device: torch.device | str | None) -> None:
    """Wait until all queued work on `device` has finished (a no-op on the CPU)."""
    if is_cuda(device):
        torch.cuda.synchronize(device)


MAX_THREADS = 1024  # torch threads allowed (more than a machine's CPUs is a real experiment; 10^11 a C overflow)


def set_threads(threads: int | None) -> int:
    """Set torch's intra-op CPU thread count when `threads` is given; return the count in force."""
    if threads is not None:
        if not 1 <= threads <= MAX_THREADS:
            raise UsageError(f"threads must be from 1 to {MAX_THREADS:,}, got {threads:,}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


class Stopwatch:
    """Accumulates the time spent inside `with watch:` blocks, in nanoseconds; syncs `device` at both ends (decided
    once: on the CPU a lap costs the two clock reads and the collector's switch, nothing else); the garbage collector
    is paused inside a block (and left as it was found: a block inside another keeps it paused).

    With `waits=True` it also accumulates how long the process's threads waited for a CPU inside the blocks
    (`waited_s`: run-queue delay, see `cpu_wait_ns`), read outside the wall-clock interval, so that it costs the
    timed time nothing (a few small file reads each end: for long blocks, such as epochs, not steps)."""

    def __init__(self, device: torch.device | str | None = None, waits: bool = False):
        self.device = device
        self._cuda = torch.device(device) if is_cuda(device) else None
        self.total_ns = 0
        self.waited_ns = 0 if waits and cpu_wait_ns() is not None else None
        self.laps = 0
        self._start = None
        self._wait_start = None
        self._collecting = False

    def __enter__(self):
        self._collecting = gc.isenabled()
        gc.disable()
        if self.waited_ns is not None:
            self._wait_start = cpu_wait_ns()
        if self._cuda is not None:
            torch.cuda.synchronize(self._cuda)
        self._start = time.perf_counter_ns()
        return self

    def __exit__(self, *exc):
        if self._cuda is not None:
            torch.cuda.synchronize(self._cuda)
        self.total_ns += time.perf_counter_ns() - self._start
        if self.waited_ns is not None:
            self.waited_ns += max(0, cpu_wait_ns() - self._wait_start)  # (a thread that ended takes its count along)
        self.laps += 1
        self._start = None
        if self._collecting:
            gc.enable()
        return False

    @property
    def total_s(self) -> float:
        return self.total_ns / 1e9

    @property
    def waited_s(self) -> float | None:
        return None if self.waited_ns is None else self.waited_ns / 1e9


CONTENDED = 0.15  # an epoch's cpu_wait above this: other processes competed (measured, README: idle 0.000-0.006;
# beside a busy loop, 2 threads on 2 CPUs: 0.25-0.39, the epochs up to 6x slower)


def cpu_wait_ns() -> int | None:
    """Nanoseconds this process's threads (those alive now) have spent ready to run but waiting for a CPU, since
    each started: the run-queue delay of Linux's /proc/self/task/*/schedstat. A thread with nothing to do does not
    wait, so this counts CPU time denied, not CPU time left unused. None where the kernel does not say."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:  # not Linux
        return None
    total, read = 0, False
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/schedstat") as stats:
                total += int(stats.read().split()[1])
            read = True
        except (OSError, IndexError, ValueError):  # a thread that just ended, or a kernel without schedstat
            continue
    return total if read else None


def contention(waits, above: float = CONTENDED) -> dict | None:
    """How a run's epochs waited for a CPU, from their cpu_wait (None or NaN where not measured): the epochs
    measured, how many waited more than `above` (`contended`: other processes competed, and those epochs were slow
    however steady), the median epoch's share (`cpu_wait`), the largest, and whether the median epoch itself waited
    more (`throughout`: evenly slow, which no spread of epoch times shows). None when no epoch waited more."""
    measured = sorted(w for w in waits if w is not None and w == w)  # w == w: not NaN
    contended = sum(w > above for w in measured)
    if not contended:
        return None
    median = statistics.median(measured)
    return {"epochs": len(measured), "contended": contended, "cpu_wait": median, "largest": measured[-1],
            "throughout": median > above}


def slowed_runs(waits, above: float = CONTENDED) -> tuple[list, int]:
    """Of runs' cpu_wait, one share a run over its whole loop as `RunWait` measures it ((key, share) pairs; None or
    NaN: not measured), the (key, share) of those whose threads waited more than `above` (other processes competed:
    the run's times are slow), and how many runs were measured."""
    measured = [(key, share) for key, share in waits if share is not None and share == share]  # share == share: not NaN
    return [(key, share) for key, share in measured if share > above], len(measured)


class RunWait:
    """The share of its threads' time this process spent waiting for a CPU over a whole `with` block (`cpu_wait`,
    as the function computes it; None where not measured), read at the block's two ends only: around a run's training
    loop it adds nothing inside (a Stopwatch with waits=True reads at every lap: for long laps, such as epochs)."""

    def __init__(self, device: torch.device | str | None = None, threads: int | None = None):
        self.threads = threads
        self.cpu_wait = None
        self._on = not is_cuda(device)  # on a GPU the time is the device's: the host's waits are not its share

    def __enter__(self):
        self.threads = self.threads or torch.get_num_threads()
        self._waited = cpu_wait_ns() if self._on else None
        self._start = time.perf_counter_ns()
        return self

    def __exit__(self, *exc):
        wall_ns = time.perf_counter_ns() - self._start
        waited = cpu_wait_ns() if self._on else None
        if self._waited is not None and waited is not None:  # (a thread that ended takes its count along)
            self.cpu_wait = cpu_wait(max(0, waited - self._waited) / 1e9, wall_ns / 1e9, self.threads)
        return False


def cpu_wait(waited_s: float | None, wall_s: float, threads: int) -> float | None:
    """The share of its threads' time a process spent waiting for a CPU: waited seconds over wall seconds × threads.
    About 0 when each thread that had work had a CPU; 0.3-0.5 when another busy process shares the CPUs (its times
    are then slow, however steady). None when not measured."""
    if waited_s is None or wall_s <= 0 or threads < 1:
        return None
    return waited_s / (wall_s * threads)


class StreamStopwatch:
    """Accumulates the device time of the work queued inside `with` blocks, without making the host wait per block.

    On CUDA each block is bracketed by two events on the stream current when the stopwatch was made; reading
    `total_s` (once, after the loop, and after the loop's own clock: it is not cheap) waits for the last event and
    sums the intervals. The loop thus runs as it would unmeasured: no sync between its steps, copies and kernels
    still queued ahead; per block the host only creates two events and records them (the stream is looked up once).
    On the CPU the host does the work, and this is a Stopwatch.
    """

    def __init__(self, device: torch.device | str | None = None):
        self.device = device
        self._watch = None if is_cuda(device) else Stopwatch(device)
        self._stream = None if self._watch is not None else torch.cuda.current_stream(device)  # of `device`, not GPU 0
        self._events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self.laps = 0

    def __enter__(self):
        if self._watch is not None:
            self._watch.__enter__()
        else:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record(self._stream)
            self._events.append((start, end))
        return self

    def __exit__(self, *exc):
        if self._watch is not None:
            self._watch.__exit__(*exc)
        else:
            self._events[-1][1].record(self._stream)
        self.laps += 1
        return False

    @property
    def total_s(self) -> float:
        if self._watch is not None:
            return self._watch.total_s
        if not self._events:
            return 0.0
        self._events[-1][1].synchronize()
        return sum(start.elapsed_time(end) for start, end in self._events) / 1e3


class Sections:
    """Time named sections of a step (e.g. data, forward, backward, update) with one Stopwatch each."""

    def __init__(self, device: torch.device | str | None = None):
        self.device = device
        self.watches: dict[str, Stopwatch] = {}

    @contextmanager
    def __call__(self, name: str):
        watch = self.watches.get(name)
        if watch is None:  # made once per name, not per lap
            watch = self.watches[name] = Stopwatch(self.device)
        with watch:
            yield

    def mean_s(self) -> dict[str, float]:
        """Mean seconds per lap of each section."""
        return {name: w.total_s / max(w.laps, 1) for name, w in self.watches.items()}


def warmup(fn: Callable[[], object], steps: int, device: torch.device | str | None = None) -> None:
    """Run `fn` `steps` times and wait for it: caches, allocators and lazy initialisation settle, nothing is timed."""
    for _ in range(steps):
        fn()
    sync(device)


def recording(fn: Callable[[], object], times: list[float],
              device: torch.device | str | None = None) -> Callable[[], None]:
    """A callable that runs `fn` once and appends its seconds to `times` (e.g. a bare loop timed between rounds)."""

    def timed():
        watch = Stopwatch(device)
        with watch:
            fn()
        times.append(watch.total_s)

    return timed


def measure(fn: Callable[[], object], rounds: int, warmup_rounds: int = 1,
            device: torch.device | str | None = None) -> list[float]:
    """Seconds taken by each of `rounds` calls of `fn`, after `warmup_rounds` uncounted calls."""
    warmup(fn, warmup_rounds, device)
    times = []
    timed = recording(fn, times, device)
    for _ in range(rounds):
        timed()
    return times


def synced(fn: Callable[[], object], device: torch.device | str | None) -> Callable[[], object]:
    """`fn` followed by a sync of `device`: a round timed by an outside clock (pytest-benchmark's) then ends when its
    kernels have run, not when they were queued."""

    def round_then_sync():
        result = fn()
        sync(device)
        return result

    return round_then_sync
