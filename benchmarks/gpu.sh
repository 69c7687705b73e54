#!/usr/bin/env bash
# Issue 15's GPU sweep on one GPU: jaxvit against timm AMP and torch.compile, bf16, batch 128, each
# model at its default size, in priority order, inside a time budget (default 500 s; what the
# budget leaves out is listed in OUTDIR/skipped.txt).
#
#   bash benchmarks/gpu.sh [OUTDIR]      -> OUTDIR/gpu.csv, OUTDIR/gpu.md (default benchmarks/gpu)
#
# Three stages, one after another (nothing is timed while anything compiles):
#   1. jaxvit's rows, one model at a time;
#   2. torch.compile's cold compiles, WARM_P models at a time (each stopped after WARM_S), which
#      fill Inductor's on-disk caches (on an H200 they took 60 to 211 s a model, MViTv2-T longest);
#   3. timm's AMP and torch.compile rows, one model at a time; torch.compile loads its compiled
#      graphs from those caches, so its "compile s" column is the cached first step (warm.log has
#      the cold compiles).
# Why: on an H200, jaxvit's ViT-B step timed beside three
# torch.compile warm-ups ran at 2561 img/s, alone at 3296. A whole sweep takes longer than one
# 10-minute device call on an H200 (stage 1 about 45 s a model, stage 3 about 40 s); STAGES=jax and
# STAGES=timm split it into two calls, MODELS narrows it.
# Two more stages, run only when STAGES names them, for a GPU session's questions:
#   ab:      jaxvit settings no GPU has timed yet, each beside the default it changes, in one
#            call (AB_ROWS: ';'-separated bench.py arguments; the default list is below: 8 rows,
#            each 21 to 59 s on an H200 by the gaps between benchmarks/gpu_h200/run2_jaxvit_alone.csv's rows);
#   profile: each of PROFILE_MODELS' train steps under jax's profiler, its costliest kernels
#            (benchmarks/profile_step.py --ops) in OUTDIR/profile_MODEL.txt.
# Overrides (for a smoke run on a CPU): BENCH_ARGS (replaces the shared flags), FLAGSHIP, MODELS,
# STAGES (jax,timm; ab, profile), BUDGET_S, JAX_S (limit per jaxvit model), COMPILE_S,
# FLAGSHIP_COMPILE_S, WARM_S, WARM_P, AB_ROWS, PROFILE_MODELS, PROFILE_ARGS, PROFILE_S, PYTHON.
set -u
cd "$(dirname "$0")/.."
out=${1:-benchmarks/gpu}
mkdir -p "$out"
out=$(cd "$out" && pwd)
csv=$out/gpu.csv
rm -f "$csv" "$out/skipped.txt" "$out/warm.log" "$out/warm_errors.txt"
py=${PYTHON:-python3}
budget=${BUDGET_S:-500}
stages=,${STAGES:-jax,timm},
flagship=${FLAGSHIP:-vit_base_patch16_224}
models=${MODELS:-swin_tiny_patch4_window7_224,mixer_b16_224,mvitv2_tiny,tnt_s_patch16_224,deit_small_patch16_224,inception_v4,perceiver_base}
read -r -a common <<< "${BENCH_ARGS:---dtype bfloat16 --batch 128 --steps 20 --warmup 3}"
IFS=, read -r -a rest <<< "$models"
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # jax and torch share the GPU within one process
export PYTHONUNBUFFERED=1
export TORCHINDUCTOR_FX_GRAPH_CACHE=1 TORCHINDUCTOR_AUTOGRAD_CACHE=1
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/jaxvit_gpu_sh_inductor}
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

# 1. jaxvit's rows: the flagship, the other families (MViTv2-T's step compiled for over 75 s on an
#    H200: it gets 60 s more), then the flagship's memory settings (uint8 input, remat block and
#    elementwise)
if [[ $stages == *,jax,* ]]; then
  bench "${JAX_S:-90}" --model "$flagship" --torch ""
  for m in "${rest[@]}"; do
    extra=0; [[ $m == mvitv2* ]] && extra=60
    bench $((${JAX_S:-90} + extra)) --model "$m" --torch ""
  done
  bench "${JAX_S:-90}" --model "$flagship" --torch "" --transfer-dtype uint8 --jax train
  bench "${JAX_S:-90}" --model "$flagship" --torch "" --remat block --jax train
  bench "${JAX_S:-90}" --model "$flagship" --torch "" --remat elementwise --jax train
fi

# ab. settings to compare on a GPU: cuDNN on inputs padded only to an even length (jax asks no
#     more; 64 is the default), alone and with remat=elementwise (the flagship's kept memory, as
#     step_memory.py --attention cudnn --kept-only traces it, 8328 -> 4533 MiB), XLA's attention
#     for Swin's 49-token windows, cuDNN for TnT's inner heads (6 wide, padded to 8)
if [[ $stages == *,ab,* ]]; then
  IFS=';' read -r -a ab_rows <<< "${AB_ROWS:-\
--model $flagship --torch= --jax train;\
--model $flagship --torch= --jax train --pad-multiple 2;\
--model $flagship --torch= --jax train --pad-multiple 2 --remat elementwise;\
--model swin_tiny_patch4_window7_224 --torch= --jax train;\
--model swin_tiny_patch4_window7_224 --torch= --jax train --attention xla;\
--model swin_tiny_patch4_window7_224 --torch= --jax train --pad-multiple 2;\
--model tnt_s_patch16_224 --torch= --jax train;\
--model tnt_s_patch16_224 --torch= --jax train --attention cudnn}"
  for r in "${ab_rows[@]}"; do
    read -r -a a <<< "$r"
    (( ${#a[@]} )) && bench "${JAX_S:-90}" "${a[@]}"
  done
fi

# profile. where each step's time goes, kernel by kernel
if [[ $stages == *,profile,* ]]; then
  IFS=, read -r -a profiled <<< "${PROFILE_MODELS:-swin_tiny_patch4_window7_224,$flagship,tnt_s_patch16_224}"
  read -r -a profile_args <<< "${PROFILE_ARGS:---dtype bfloat16 --batch 128 --ops 25}"
  for m in "${profiled[@]}"; do
    l=$(left); limit=${PROFILE_S:-90}; (( l < limit )) && limit=$l
    if (( limit < 20 )); then echo "skipped (budget): profile $m" | tee -a "$out/skipped.txt"; continue; fi
    timeout "$limit" "$py" benchmarks/profile_step.py --model "$m" "${profile_args[@]}" > "$out/profile_$m.txt" 2>&1 \
      || echo "profile stopped or failed ($?): $m"
    tail -n 30 "$out/profile_$m.txt"
  done
fi

if [[ $stages == *,timm,* ]]; then
  # models timm carries (Perceiver is not among them)
  read -r -a timm_models <<< "$("$py" -c 'import sys, timm; have = set(timm.list_models())
print(" ".join(m for m in sys.argv[1:] if m in have))' "$flagship" "${rest[@]}" 2> /dev/null)"
  # 2. torch.compile's cold compiles, WARM_P at a time, nothing timed meanwhile
  warm() {  # warm MODEL: one compiled train and eval step at the sweep's shapes
    local t0=$SECONDS
    timeout "$WARM_S" "$py" benchmarks/bench.py "${common[@]}" --model "$1" --torch-only compile \
      --steps 1 --warmup 1 > /dev/null 2>> "$out/warm_errors.txt"
    echo "warm-up $1: exit $?, $((SECONDS - t0)) s"
  }
  l=$(left)
  WARM_S=${WARM_S:-240}
  (( WARM_S > l - 60 )) && WARM_S=$((l - 60))
  if (( WARM_S > 0 )) && (( ${#timm_models[@]} )); then
    export -f warm
    export py out WARM_S WARM_COMMON="${common[*]}"
    printf '%s\n' "${timm_models[@]}" | xargs -P "${WARM_P:-4}" -I{} bash -c \
      'read -r -a common <<< "$WARM_COMMON"; warm "$1"' _ {} > "$out/warm.log" 2>&1
    echo "torch.compile warm-ups, done $((SECONDS - start)) s into the sweep:"; cat "$out/warm.log"
  fi
  # 3. timm's rows
  for m in "${timm_models[@]}"; do
    c=${COMPILE_S:-60}; [[ $m == "$flagship" ]] && c=${FLAGSHIP_COMPILE_S:-90}
    bench $((c + 30)) --model "$m" --jax "" --torch amp,compile --compile-timeout "$c"
  done
fi
[[ -f $csv ]] && "$py" benchmarks/bench.py --md-from "$csv" --md "$out/gpu.md"
echo "sweep: $((SECONDS - start)) s"
