import re

import torch

from amal import environment, store


def test_environment_describes_the_machine():
    env = environment.environment("cpu")
    assert env["torch_version"] == torch.__version__
    assert env["num_threads"] == torch.get_num_threads()
    assert env["cuda_device"] == "" and env["cpu_model"] and env["host"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", env["timestamp_utc"])
    assert tuple(env) == store.ENVIRONMENT and set(store.ENVIRONMENT) <= set(store.COLUMNS)


def test_git_commit_is_a_sha_or_empty():
    commit = environment.git_commit()
    assert commit == "" or re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", commit)


def test_git_commit_of_another_checkout(tmp_path):
    assert environment.git_commit(tmp_path) == ""  # not a git checkout
