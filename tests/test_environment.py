import os
import re
import subprocess

import pytest
import torch

from amal import environment, store


def test_environment_describes_the_machine():
    env = environment.environment("cpu")
    assert env["torch_version"] == torch.__version__
    assert env["num_threads"] == torch.get_num_threads()
    assert env["cuda_device"] == "" and env["cpu_model"] and env["host"]
    assert 1 <= env["cpu_count"] <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):  # the CPUs this process may use, not the machine's
        assert env["cpu_count"] == len(os.sched_getaffinity(0))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", env["timestamp_utc"])
    assert tuple(env) == store.ENVIRONMENT and set(store.ENVIRONMENT) <= set(store.COLUMNS)


def test_git_commit_is_a_sha_or_empty():
    commit = environment.git_commit()
    assert commit == "" or re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", commit)


def test_git_commit_of_another_checkout(tmp_path):
    assert environment.git_commit(tmp_path) == ""  # not a git checkout


def test_git_commit_is_empty_for_a_folder_the_surrounding_checkout_does_not_track(tmp_path):
    """amal installed in a virtual environment inside another project's checkout: not that project's commit."""
    def git(*args, cwd=tmp_path):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                       capture_output=True)

    git("init", "-q")
    (tmp_path / "tracked.txt").write_text("x")
    git("add", "tracked.txt")
    git("commit", "-qm", "other project")
    installed = tmp_path / ".venv" / "site-packages" / "amal"
    installed.mkdir(parents=True)
    (installed / "__init__.py").write_text("")
    assert environment.git_commit(installed) == ""
    assert re.fullmatch(r"[0-9a-f]{40}", environment.git_commit(tmp_path))  # the project itself: its commit


def test_git_commit_of_a_checkout_owned_by_another_user(tmp_path, monkeypatch):
    """A CI container running as root over a checkout its runner cloned: git refuses such a repository ("dubious
    ownership") unless told it is safe; git's own switch makes this checkout look owned by someone else."""
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "tracked.txt").write_text("x")
    subprocess.run(["git", "add", "tracked.txt"], cwd=tmp_path, check=True)
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one"], cwd=tmp_path,
                   check=True)
    monkeypatch.setenv("GIT_TEST_ASSUME_DIFFERENT_OWNER", "1")
    refused = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True)
    if refused.returncode == 0:
        pytest.skip("this git does not check a repository's owner (before 2.35.2)")
    assert "dubious ownership" in refused.stderr
    assert re.fullmatch(r"[0-9a-f]{40}", environment.git_commit.__wrapped__(tmp_path))


@pytest.mark.parametrize(("files", "free"), [
    ({"memory.max": "max\n"}, None),  # cgroup v2 without a limit
    ({"memory.max": "8000\n", "memory.current": "5000\n", "memory.stat": "anon 1\ninactive_file 1000\n"}, 4000),
    ({"memory/memory.limit_in_bytes": "9223372036854771712\n"}, None),  # cgroup v1 without a limit
    ({"memory/memory.limit_in_bytes": "8000\n", "memory/memory.usage_in_bytes": "5000\n",
      "memory/memory.stat": "inactive_file 7\ntotal_inactive_file 1000\n"}, 4000),
    ({}, None),  # no cgroup file system
])
def test_a_container_memory_limit_is_read_from_its_cgroup(tmp_path, files, free):
    """limit − (usage − page cache it can drop), as a container's memory limit sees it."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert environment.cgroup_free(tmp_path) == free


def test_usable_cpus_is_the_affinity_of_this_process():
    cpus = environment.usable_cpus()
    assert cpus >= 1
    if hasattr(os, "sched_getaffinity"):
        mine = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(mine)})
        try:
            assert environment.usable_cpus() == 1
        finally:
            os.sched_setaffinity(0, mine)
        assert cpus == len(mine)
