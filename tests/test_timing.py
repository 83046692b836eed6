"""The timing module against independent clocks.

Tolerances: time.sleep(d) never returns before d has passed, so a correct timer reads at least d; and the timer's
reading of a block can never exceed a reference clock read just outside that block (monotonic clocks, same process).
Both bounds hold whatever the load of the machine, so these tests assert no wall-clock speed.
"""

import os
import subprocess
import sys
import time

import pytest
import torch

from amal.errors import UsageError
from amal.timing import (
    RunWait,
    Sections,
    Stopwatch,
    StreamStopwatch,
    clock_s,
    contention,
    cpu_wait,
    cpu_wait_ns,
    measure,
    recording,
    resolve_device,
    set_threads,
    slowed_runs,
    sync,
    synced,
    use_device,
    warmup,
)

CLOCK_RESOLUTION_S = 1e-6  # perf_counter and monotonic are both nanosecond clocks; 1 µs covers their rounding


def outer_reference(block):
    """Seconds a block takes on time.monotonic_ns, read around it; returns (its result, seconds)."""
    start = time.monotonic_ns()
    result = block()
    return result, (time.monotonic_ns() - start) / 1e9


def test_sleep_is_measured_within_the_enclosing_reference():
    watch = Stopwatch()

    def timed_sleep():
        with watch:
            time.sleep(0.05)

    _, outer = outer_reference(timed_sleep)
    assert 0.05 <= watch.total_s <= outer + CLOCK_RESOLUTION_S
    assert watch.laps == 1 and watch.total_ns == int(watch.total_s * 1e9)


def test_busy_loop_is_measured_within_the_enclosing_reference():
    """A loop spinning for 30 ms of CPU time: wall time is at least the CPU time the process spent in it."""
    watch = Stopwatch()

    def spin():
        cpu_start = time.process_time_ns()
        with watch:
            while time.process_time_ns() - cpu_start < 30_000_000:
                pass
        return (time.process_time_ns() - cpu_start) / 1e9

    cpu_s, outer = outer_reference(spin)
    # process_time has a coarser resolution (clock ticks on some kernels): allow 10 ms under the CPU time read
    assert cpu_s - 0.01 <= watch.total_s <= outer + CLOCK_RESOLUTION_S
    assert watch.total_s >= 0.02


def test_stopwatch_accumulates_laps():
    watch = Stopwatch()

    def lap(seconds):
        with watch:
            time.sleep(seconds)

    lap_refs = [outer_reference(lambda s=seconds: lap(s))[1] for seconds in (0.01, 0.02, 0.03)]
    assert watch.laps == 3
    assert 0.06 <= watch.total_s <= sum(lap_refs) + 3 * CLOCK_RESOLUTION_S


def test_stopwatch_counts_the_block_even_when_it_raises():
    watch = Stopwatch()
    with pytest.raises(RuntimeError), watch:
        time.sleep(0.01)
        raise RuntimeError("boom")
    assert watch.laps == 1 and watch.total_s >= 0.01


def test_sections_time_each_name_separately():
    sections = Sections()
    for _ in range(2):
        with sections("data"):
            time.sleep(0.01)
        with sections("forward"):
            time.sleep(0.03)
    assert list(sections.watches) == ["data", "forward"]
    assert [w.laps for w in sections.watches.values()] == [2, 2]
    means = sections.mean_s()
    assert means["data"] >= 0.01 and means["forward"] >= 0.03
    assert means["forward"] == sections.watches["forward"].total_s / 2


def test_sections_mean_of_an_unused_watch_is_zero():
    sections = Sections()
    sections.watches["idle"] = Stopwatch()
    assert sections.mean_s() == {"idle": 0.0}


def test_measure_does_not_count_warmup():
    """Call k sleeps k × 10 ms: with 2 warm-up calls, the 3 timed calls are calls 3, 4, 5 (≥ 30, 40, 50 ms)."""
    calls = []

    def work():
        calls.append(len(calls) + 1)
        time.sleep(0.01 * calls[-1])

    times = measure(work, rounds=3, warmup_rounds=2)
    assert calls == [1, 2, 3, 4, 5]
    assert len(times) == 3
    assert [t >= 0.01 * k for t, k in zip(times, (3, 4, 5), strict=True)] == [True, True, True]


def test_warmup_runs_and_times_nothing():
    calls = []
    assert warmup(lambda: calls.append(1), steps=4) is None
    assert len(calls) == 4


def test_clock_s_is_perf_counter_in_seconds():
    before, reading, after = time.perf_counter_ns(), clock_s(), time.perf_counter_ns()
    assert before / 1e9 <= reading <= after / 1e9


def test_set_threads_sets_and_reports():
    old = torch.get_num_threads()
    try:
        assert set_threads(1) == 1 == torch.get_num_threads()
        assert set_threads(None) == 1
    finally:
        torch.set_num_threads(old)
    for threads in (0, 1025, 10**11):  # (10**11 overflowed a C long inside torch: a traceback)
        with pytest.raises(UsageError, match=f"^threads must be from 1 to 1,024, got {threads:,}$"):
            set_threads(threads)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UsageError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    for name in ("cuda:abc", "cuda:-1", "cuda:", "cuda0", "cuda:²"):  # torch.device would raise its own error on these
        with pytest.raises(UsageError, match="unknown device"):
            resolve_device(name)
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="CUDA is not available"):
            resolve_device("cuda")
    else:
        with pytest.raises(UsageError, match="GPU\\(s\\), numbered from 0"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_use_device_makes_a_numbered_gpu_current():
    assert use_device("cpu") == torch.device("cpu")
    with pytest.raises(UsageError, match="unknown device"):
        use_device("gpu")
    if torch.cuda.is_available():
        last = torch.cuda.device_count() - 1
        assert use_device(f"cuda:{last}") == torch.device("cuda", last) and torch.cuda.current_device() == last


def test_sync_on_cpu_returns():
    assert sync("cpu") is None and sync(None) is None


@pytest.mark.gpu
def test_long_kernel_is_fully_counted():
    """A chain of large matmuls: the synced stopwatch agrees with CUDA events; without sync it sees only launches."""
    device = torch.device("cuda")
    a = torch.randn(4096, 4096, device=device)
    work = lambda: [a @ a for _ in range(50)]  # noqa: E731  (≈ 7 TFLOP: hundreds of ms on any GPU)
    warmup(work, 2, device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    synced = Stopwatch(device)
    with synced:
        start.record()
        work()
        end.record()
    events_s = start.elapsed_time(end) / 1e3
    unsynced = Stopwatch(None)  # no device: no sync, the clock stops when the launches are queued
    with unsynced:
        work()
    sync(device)
    # the events bracket exactly the kernels; the stopwatch adds launch latency and the two syncs (well under 5 %)
    assert 0.999 * events_s <= synced.total_s <= 1.05 * events_s + 1e-3
    assert unsynced.total_s < 0.5 * events_s


def test_stream_stopwatch_on_the_cpu_is_a_stopwatch():
    watch = StreamStopwatch("cpu")
    assert watch.total_s == 0.0 and watch.laps == 0

    def two_laps():
        for seconds in (0.01, 0.02):
            with watch:
                time.sleep(seconds)

    _, outer = outer_reference(two_laps)
    assert watch.laps == 2 and 0.03 <= watch.total_s <= outer + CLOCK_RESOLUTION_S


def test_synced_returns_the_result_of_one_call():
    calls = []
    round_ = synced(lambda: calls.append(1) or len(calls), "cpu")
    assert round_() == 1 and round_() == 2 and calls == [1, 1]


@pytest.mark.gpu
def test_stream_stopwatch_times_copies_without_making_the_host_wait():
    """1 GiB pinned → GPU, non-blocking: the host's block returns at once; the events hold the copy's duration,
    nested inside the synced wall time around it and no shorter than the copy at 1 TB/s (beyond any host link)."""
    device = torch.device("cuda")
    host = torch.empty(256 * 2**20, dtype=torch.float32).pin_memory()
    warmup(lambda: host.to(device, non_blocking=True), 2, device)
    copies, wall, host_side = StreamStopwatch(device), Stopwatch(device), Stopwatch(None)
    with wall:
        for _ in range(3):
            with host_side, copies:
                host.to(device, non_blocking=True)
    assert copies.laps == 3
    stream_s = copies.total_s
    assert 3 * host.nbytes / 1e12 <= stream_s <= wall.total_s + CLOCK_RESOLUTION_S
    assert host_side.total_s < 0.5 * stream_s


@pytest.mark.gpu
def test_synced_round_is_fully_counted_by_an_outside_clock():
    """pytest-benchmark's clock does not sync: a `synced` round makes it see the kernels' whole duration, which the
    same round without `synced` would not."""
    device = torch.device("cuda")
    a = torch.randn(4096, 4096, device=device)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def work():  # ≈ 7 TFLOP between two events
        start.record()
        [a @ a for _ in range(50)]
        end.record()

    warmup(work, 2, device)
    for round_, counted in ((synced(work, device), True), (work, False)):
        outside = Stopwatch(None)
        with outside:
            round_()
        sync(device)
        kernels_s = start.elapsed_time(end) / 1e3
        assert (outside.total_s >= kernels_s) if counted else (outside.total_s < 0.5 * kernels_s)


def test_recording_appends_one_time_per_call():
    times, calls = [], []
    timed = recording(lambda: calls.append(time.sleep(0.01)), times)
    timed()
    timed()
    assert len(calls) == 2 and len(times) == 2
    assert all(0.01 <= t < 1.0 for t in times)  # at least the sleep; the upper bound only catches unit mistakes


def test_a_cpu_lap_does_no_device_work(monkeypatch):
    """Whether to sync is decided when the stopwatch is made: a CPU lap only reads the clock twice (deciding per
    lap cost 0.7 µs, counted in every timed part of a step)."""
    import amal.timing

    def device_work(*args):
        raise AssertionError("device work inside a CPU lap")

    watch = Stopwatch(torch.device("cpu"))
    monkeypatch.setattr(amal.timing, "is_cuda", device_work)
    monkeypatch.setattr(torch.cuda, "synchronize", device_work)
    with watch:
        pass
    assert watch.laps == 1


def test_the_garbage_collector_is_paused_inside_a_stopwatch_and_restored_after():
    import gc

    collections = []

    def record(phase, info):
        if phase == "start":
            collections.append(info["generation"])

    threshold = gc.get_threshold()
    gc.callbacks.append(record)
    try:
        gc.set_threshold(1)  # any allocation would start a collection
        outer, inner = Stopwatch(), Stopwatch()
        with outer:
            collections.clear()  # those started before the block (set_threshold(1) above) do not count
            with inner:
                _ = [[[]] for _ in range(1000)]
            assert not gc.isenabled()  # the inner block ended: still paused for the outer one
            _ = [[[]] for _ in range(1000)]
        assert collections == [] and gc.isenabled()
        _ = [[[]] for _ in range(10)]
        assert collections  # collecting again, off the clock
        gc.disable()
        with Stopwatch():
            pass
        assert not gc.isenabled()  # left as it was found
    finally:
        gc.enable()
        gc.set_threshold(*threshold)
        gc.callbacks.remove(record)


def test_a_waiting_stopwatch_counts_no_wait_for_a_thread_that_sleeps():
    """A thread with nothing to do does not wait for a CPU: a sleep adds (about) no wait, whatever it lasts."""
    watch, plain = Stopwatch(waits=True), Stopwatch()
    with watch, plain:
        time.sleep(0.05)
    assert plain.waited_s is None and cpu_wait(plain.waited_s, plain.total_s, 1) is None  # off unless asked for
    if cpu_wait_ns() is None:
        pytest.skip("this kernel does not say how long threads wait (no /proc/self/task/*/schedstat)")
    assert watch.total_s >= 0.05 and watch.waited_s < 0.02 and watch.laps == 1


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or cpu_wait_ns() is None,
                    reason="needs CPU affinity and /proc/self/task/*/schedstat (Linux)")
def test_cpu_wait_rises_when_another_process_runs_on_the_same_cpu():
    """cpu_wait (per epoch, and per run): a process alone on its CPU hardly waits; beside a busy loop pinned to the same
    CPU it waits about half the time, however steady its own work looks."""
    mine = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {max(mine)})
    try:
        def spin_wait() -> tuple[float, float]:
            """As an epoch's Stopwatch and a whole run's RunWait see it."""
            watch = Stopwatch(waits=True)
            with RunWait(threads=1) as run, watch:
                end = time.perf_counter() + 0.3
                while time.perf_counter() < end:
                    pass
            return cpu_wait(watch.waited_s, watch.total_s, 1), run.cpu_wait

        alone = spin_wait()
        with subprocess.Popen([sys.executable, "-c", "import os, sys; os.sched_setaffinity(0, {int(sys.argv[1])}); "
                               "print(flush=True)\nwhile True: pass", str(max(mine))], stdout=subprocess.PIPE) as rival:
            try:
                rival.stdout.readline()  # pinned and spinning
                shared = spin_wait()
            finally:
                rival.kill()
    finally:
        os.sched_setaffinity(0, mine)
    for seen_alone, seen_shared in zip(alone, shared, strict=True):
        assert seen_shared > 0.25 and seen_shared > seen_alone + 0.2, (alone, shared)
    with RunWait("cuda") as on_gpu:  # a GPU's time is the device's: the host's waits are not measured for it
        pass
    assert on_gpu.cpu_wait is None


def test_contention_counts_the_epochs_that_waited_and_says_whether_the_median_one_did():
    """The rule the CLI and the report both apply: an epoch waited when its cpu_wait is over CONTENDED (0.15);
    unmeasured epochs (None, NaN) are left out of every count."""
    assert contention([0.01, 0.0, None, float("nan")]) is None
    assert contention([]) is None
    some = contention([0.01, 0.3, 0.02, None])
    assert some == {"epochs": 3, "contended": 1, "cpu_wait": 0.02, "largest": 0.3, "throughout": False}
    most = contention([0.4, 0.01, 0.35, 0.2])
    assert most == {"epochs": 4, "contended": 3, "cpu_wait": pytest.approx(0.275), "largest": 0.4, "throughout": True}
    assert contention([0.15, 0.15]) is None  # over the bound, not at it
    assert contention([0.2, 0.05], above=0.3) is None


def test_slowed_runs_keeps_the_runs_over_the_bound_of_those_measured():
    """The rule the CLI, the report's notes and Fig. 3 share for whole runs: over CONTENDED (0.15), not at it."""
    waits = [(0.1, 0.31), (0.2, 0.15), (0.26, None), (0.27, float("nan")), (0.3, 0.02), (("tensor", 16, 1), 0.4)]
    assert slowed_runs(waits) == ([(0.1, 0.31), (("tensor", 16, 1), 0.4)], 4)
    assert slowed_runs(waits, above=0.35) == ([(("tensor", 16, 1), 0.4)], 4)
    assert slowed_runs([]) == ([], 0)
