"""Where and how a result was measured: host, CPU, GPU, threads, versions, commit, UTC time; and the memory a run
may take there."""

import os
import platform
import socket
import subprocess
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import torch


@cache
def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


AMAL_DIR = Path(__file__).resolve().parent


# git reads only: a checkout owned by another user (a CI container's, a shared one) is read too, where git would
# refuse it as of "dubious ownership", and no file-system monitor named by the repository's config is started
GIT = ("git", "-c", "safe.directory=*", "-c", "core.fsmonitor=false")


@cache
def git_commit(here: Path = AMAL_DIR) -> str:
    """The commit of the checkout holding `here` (default: the amal being run), with '+dirty' for local changes;
    '' outside a git checkout, or where the repository around `here` does not track it (amal installed into the
    site-packages of a virtual environment that lies inside some other project's checkout)."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*GIT, *args], cwd=here, capture_output=True, text=True, timeout=5)

    try:
        tracked = git("ls-files", "--error-unmatch", ".")
        sha = git("rev-parse", "HEAD")
        if tracked.returncode != 0 or sha.returncode != 0:
            return ""
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return ""


def cuda_device_name(device: torch.device | str | None) -> str:
    """The GPU's name when `device` is a CUDA device, else ''."""
    if device is None or torch.device(device).type != "cuda":
        return ""
    return torch.cuda.get_device_name(torch.device(device))


def run_start() -> datetime:
    """A run's start: the UTC time now. The checkout's commit is read now too (git_commit is cached for the
    process), so a checkout edited while the run goes on is not recorded as the code that ran."""
    git_commit()
    return datetime.now(UTC)


def environment(device: torch.device | str | None = None, started: datetime | None = None) -> dict:
    """Metadata stored with every result row (the environment columns of the results schema); `started`: when the
    run started (default: now)."""
    return {
        "host": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cpu_count": usable_cpus(),
        "num_threads": torch.get_num_threads(),
        "cuda_device": cuda_device_name(device),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "git_commit": git_commit(),
        "timestamp_utc": (started or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


# a memory cgroup's (a container's) limit, usage and reclaimable page cache: cgroup v2, then v1
CGROUP_MEMORY = (("memory.max", "memory.current", "memory.stat", "inactive_file"),
                 ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes", "memory/memory.stat",
                  "total_inactive_file"))


def cgroup_free(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes the process's memory cgroup still allows: its limit less what it uses, page cache it can drop not
    counted (as `docker stats` counts it); None without a limit or a cgroup file system."""
    for limit_file, usage_file, stat_file, cache_key in CGROUP_MEMORY:
        try:
            limit = (root / limit_file).read_text().strip()
            if limit == "max" or int(limit) >= 2**62:  # no limit (v1 writes one near 2**63)
                return None
            usage = int((root / usage_file).read_text())
            cache = next((int(line.split()[1]) for line in (root / stat_file).read_text().splitlines()
                          if line.split()[:1] == [cache_key]), 0)
            return int(limit) - (usage - cache)
        except (OSError, ValueError, IndexError):
            continue
    return None


def memory_available(device: torch.device) -> int | None:
    """Bytes free for a run: the GPU's free memory on CUDA; on the CPU the kernel's MemAvailable, or what a
    container's memory limit still allows when that is less (None where neither is known)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as fh:
            free = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):
        free = None
    known = [value for value in (free, cgroup_free()) if value is not None]
    return min(known) if known else None


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity, as a container or taskset sets it), else the machine's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
