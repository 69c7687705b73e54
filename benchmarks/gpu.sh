#!/usr/bin/env bash
# Issue 15's GPU sweep on one GPU: jaxvit against timm AMP and torch.compile, bf16, batch 128, each
# model at its default size, in priority order, inside a time budget (default 460 s: the sweep is
# meant to end in under 8 minutes; what the budget leaves out is listed as not measured).
#
#   bash benchmarks/gpu.sh [OUTDIR]      -> OUTDIR/gpu.csv, OUTDIR/gpu.md (default benchmarks/gpu)
#
# Overrides (for a smoke run on a CPU): BENCH_ARGS (replaces the shared flags), FLAGSHIP, MODELS,
# BUDGET_S, FLAGSHIP_COMPILE_S, COMPILE_S, PYTHON.
set -u
cd "$(dirname "$0")/.."
out=${1:-benchmarks/gpu}
mkdir -p "$out"
csv=$out/gpu.csv
rm -f "$csv"
py=${PYTHON:-python3}
budget=${BUDGET_S:-460}
flagship=${FLAGSHIP:-vit_base_patch16_224}
models=${MODELS:-swin_tiny_patch4_window7_224,mixer_b16_224,deit_small_patch16_224,mvitv2_tiny,tnt_s_patch16_224,inception_v4,perceiver_base}
read -r -a common <<< "${BENCH_ARGS:---dtype bfloat16 --batch 128 --steps 20 --warmup 3}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # jax and torch share the GPU within one process
export PYTHONUNBUFFERED=1
start=$SECONDS
left() { echo $((budget - (SECONDS - start))); }
bench() {  # bench LIMIT_S ARGS...: one bench.py run, stopped at LIMIT_S or the budget, whichever is first
  local limit=$1; shift
  local l; l=$(left)
  (( l < limit )) && limit=$l
  if (( limit < 20 )); then echo "skipped (budget): $*" | tee -a "$out/skipped.txt"; return; fi
  timeout "$limit" "$py" benchmarks/bench.py "${common[@]}" --csv "$csv" "$@" || echo "stopped or failed ($?): $*"
}

"$py" - <<'EOF'
import jax, platform
print("jax", jax.__version__, jax.devices(), "python", platform.python_version())
try:
    import torch, timm
    print("torch", torch.__version__, "timm", timm.__version__, "cuda", torch.cuda.is_available())
except ImportError as e:
    print("no torch/timm:", e)
EOF

# 1. the flagship against timm AMP and torch.compile, then jaxvit's settings alone
bench $((${FLAGSHIP_COMPILE_S:-150} + 90)) --model "$flagship" --torch amp,compile \
  --compile-timeout "${FLAGSHIP_COMPILE_S:-150}"
bench 90 --model "$flagship" --torch "" --attention xla
bench 90 --model "$flagship" --torch "" --remat block --jax train
bench 90 --model "$flagship" --torch "" --transfer-dtype uint8 --jax train
# 2. the other families, most asked-for first
IFS=, read -r -a rest <<< "$models"
for m in "${rest[@]}"; do
  bench $((${COMPILE_S:-50} + 110)) --model "$m" --torch amp,compile --compile-timeout "${COMPILE_S:-50}"
done
"$py" benchmarks/bench.py --md-from "$csv" --md "$out/gpu.md"
echo "sweep: $((SECONDS - start)) s"
