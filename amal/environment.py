"""Where and how a result was measured: host, CPU, GPU, threads, versions, commit, UTC time."""

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
        "num_threads": torch.get_num_threads(),
        "cuda_device": cuda_device_name(device),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "git_commit": git_commit(),
        "timestamp_utc": (started or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
