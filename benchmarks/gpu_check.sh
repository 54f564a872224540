#!/usr/bin/env bash
# One short check of a GPU node (under 10 minutes on a bare machine with an NVIDIA GPU,
# Python 3.11, pip, make and this repository):
#   1. `make gpu-env`: the GPU lock (requirements/gpu-lock.txt) into .venv-gpu, pip check;
#   2. every model trained a few epochs on simulated clips on the GPU, in float32 and in
#      mixed precision: clips/s, peak device memory, the accuracy change of mixed precision;
#   3. the same models on the CPU (CUDA_VISIBLE_DEVICES empty): clips/s.
# Results: one JSON line per model on stdout, and benchmarks/results/gpu_check_{gpu,cpu}.json.
#
#   bash benchmarks/gpu_check.sh
#
# Settings (environment):
#   GPU_CHECK_PYTHON  an interpreter that already has the GPU lock installed (skips step 1)
#   GPU_CHECK_CPU_ONLY=1  skip the GPU part (it is skipped anyway, and said so, when no
#                     NVIDIA GPU is visible)
#   GPU_CHECK_ARGS    arguments for benchmarks/gpu_check.py (default: 256 clips of
#                     16 x 32 x 32, 3 timed epochs); e.g. "--models r2plus1d,frame"
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
out=benchmarks/results
mkdir -p "$out"

python=${GPU_CHECK_PYTHON:-}
if [ -z "$python" ]; then
    echo "== make gpu-env (requirements/gpu-lock.txt into .venv-gpu)"
    make gpu-env
    python=.venv-gpu/bin/python
    echo "== installed in $((SECONDS - start)) s"
fi
"$python" - <<'EOF'
import importlib.metadata as metadata
import tensorflow as tf
providers = metadata.packages_distributions().get("tensorflow", [])
print(f"== tensorflow {tf.__version__} from {providers}, built with CUDA: "
      f"{tf.test.is_built_with_cuda()}")
EOF

args=${GPU_CHECK_ARGS:-}
gpu_found=no
if [ -z "${GPU_CHECK_CPU_ONLY:-}" ] && command -v nvidia-smi >/dev/null 2>&1 \
        && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
    gpu_found=yes
fi
if [ "$gpu_found" = yes ]; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    echo "== GPU: float32 and mixed precision"
    # shellcheck disable=SC2086
    "$python" benchmarks/gpu_check.py --device gpu --out "$out/gpu_check_gpu.json" $args
elif [ -n "${GPU_CHECK_CPU_ONLY:-}" ]; then
    echo "== GPU part SKIPPED: GPU_CHECK_CPU_ONLY is set"
else
    echo "== GPU part SKIPPED: no NVIDIA GPU visible (nvidia-smi -L lists none)"
fi

echo "== CPU"
# shellcheck disable=SC2086
CUDA_VISIBLE_DEVICES="" "$python" benchmarks/gpu_check.py --device cpu \
    --out "$out/gpu_check_cpu.json" $args
echo "== done in $((SECONDS - start)) s (GPU part: $gpu_found)"
