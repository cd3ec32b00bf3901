#!/usr/bin/env bash
# The real-shape GPU benchmarks of docs/benchmarks.md, in one script for a machine with one GPU and
# JAX[cuda] + torch + transformers already installed but no network (the lent H100 of this project).
#
#   bash bench/gpu_suite.sh train   # Qwen2.5-0.5B shape: sid train step vs PyTorch loop, MFU
#   bash bench/gpu_suite.sh eval    # Qwen2.5-1.5B shape: trie / pure beam vs HF generate + trie processor
#
# sid itself is installed from a wheel in .whl/ when one is there (built beforehand with
# `pip wheel --no-deps -w .whl .`), else from the checkout (needs setuptools). Logs and JSON go to $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/sid-gpu}
mkdir -p "$OUT"
PY=${PY:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
if ls .whl/sid-*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-deps --no-index --force-reinstall .whl/sid-*.whl || exit 1
else
  $PY -m pip install -q --no-deps --no-build-isolation --no-index -e . || exit 1
fi
$PY - <<'EOF'
import flax, jax, optax, torch, transformers
print("jax", jax.__version__, jax.devices(), "| flax", flax.__version__, "| optax", optax.__version__,
      "| transformers", transformers.__version__, "| torch", torch.__version__)
EOF
# JAX and torch share the GPU in one process: JAX takes a fixed share, torch the rest.
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.6}
export TOKENIZERS_PARALLELISM=false TRANSFORMERS_NO_ADVISORY_WARNINGS=1
shift_args=("${@:2}")
case ${1:-train} in
  train)
    $PY bench/train_vs_hf.py --preset qwen2_5_0_5b --dtype bfloat16 --batch 64 --hf-micro 16 \
      --steps 10 --warmup 2 --policies pack --threads 8 --json "$OUT/train.json" "${shift_args[@]}" \
      2>&1 | tee "$OUT/train.log" ;;
  eval)
    $PY bench/eval_vs_hf.py --preset qwen2_5_1_5b --dtype bfloat16 --prompts 128 --batch 32 \
      --hf-prompts 16 --hf-batch 8 --rounds 2 --decoders trie,pure_beam --threads 8 --json "$OUT/eval.json" \
      "${shift_args[@]}" 2>&1 | tee "$OUT/eval.log" ;;
  *) echo "usage: bash bench/gpu_suite.sh train|eval [extra bench args]" >&2; exit 2 ;;
esac
