#!/usr/bin/env bash
# Every GPU check of issue 27 in one go, for a machine with a CUDA GPU (about 8 minutes on an H100/H200):
# the CUDA tests, `ganforge bench throughput --device cuda` (all rows, 64x64, batch 64 and 256), the default run's
# loop profiled eager and with train.cuda_graph, a short stacked-mnist-pacgan timing eager vs graph, and the
# torch.compile modes. Everything goes under $OUT (default ./gpu-checks); summary.txt lists each part's exit code.
#
#   OUT=/tmp/gpu-out bash scripts/gpu_checks.sh
set -u
OUT=$(mkdir -p "${OUT:-gpu-checks}" && cd "${OUT:-gpu-checks}" && pwd)
BUDGET=${BUDGET:-540}  # seconds: a part that could run past it is skipped (and listed as such)
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export CUBLAS_WORKSPACE_CONFIG=${CUBLAS_WORKSPACE_CONFIG:-:4096:8}  # train.deterministic=true on CUDA
START=$(date +%s)

log() { echo "[$(date -u +%H:%M:%S) +$(( $(date +%s) - START ))s] $*" | tee -a "$OUT/summary.txt"; }
part() {  # part NAME SECONDS COMMAND...: run with a time limit, output to $OUT/NAME.log, exit code to summary
  local name=$1 limit=$2; shift 2
  if [ $(( $(date +%s) - START + limit )) -gt "$BUDGET" ]; then log "skipped $name: past the ${BUDGET}s budget"; return 1; fi
  log "start $name (limit ${limit}s): $*"
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  log "end $name: rc=$?"
}

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
part env 60 python -c "import torch, ganforge; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'device', torch.cuda.get_device_name(0), 'bf16', torch.cuda.is_bf16_supported())"

# 1. the tests that run on CUDA when a GPU is present: graphs, and the exact-resume tests (RESUME_DEVICE)
part tests 150 python -m pytest -p no:warnings -q tests/test_graphs.py tests/test_determinism.py \
  "tests/test_train.py::test_resume_continues_exactly_where_it_stopped"

# 2. the step, side by side: textbook, ganforge, the fast path (bf16, fused Adam, CUDA graph); 64x64, batch 64/256
part bench 120 python -m ganforge bench throughput --device cuda --sizes 64 --batches 64,256 --steps 30 \
  --write "$OUT/BENCHMARKS-gpu.md"

# 3. whole runs of the default preset (32 px dcgan-mnist, 400 steps): img_s in metrics.jsonl, and the loop profiled
part loop_fp32 50 python scripts/profile_loop.py --steps 400 --device cuda --out "$OUT/runs/mnist-fp32" \
  --json "$OUT/loop_fp32.json"
part loop_graph 50 python scripts/profile_loop.py --steps 400 --device cuda --out "$OUT/runs/mnist-graph" \
  --json "$OUT/loop_graph.json" --set train.precision=bf16 --set train.cuda_graph=true

# 4. Stacked MNIST (PacDCGAN2, bf16): 2,000 of the preset's 20,000 steps, eager and captured, wall time per run
for mode in eager graph; do
  flag=$([ "$mode" = graph ] && echo true || echo false)
  t0=$(date +%s%N)
  part "stacked_$mode" 60 python -m ganforge train stacked-mnist-pacgan --steps 2000 --seed 0 --quiet \
    --out "$OUT/runs/stacked-$mode" --set train.device=cuda --set eval.final=false --set train.cuda_graph=$flag \
    && log "stacked_$mode wall $(( ($(date +%s%N) - t0) / 1000000 )) ms (start-up, data and pictures included)"
done

# 5. torch.compile modes on the bench's 64x64 DCGAN (the earlier stride assertion under max-autotune)
part compile_default 50 python scripts/gpu_compile_probe.py default
part compile_autotune 60 python scripts/gpu_compile_probe.py max-autotune-no-cudagraphs

# the small files only: metrics lines and logs, no checkpoints or pictures
[ -d "$OUT/runs" ] && find "$OUT/runs" -name metrics.jsonl | while read -r f; do cp "$f" "$OUT/$(basename "$(dirname "$f")").metrics.jsonl"; done
rm -rf "$OUT/runs"
log "done in $(( $(date +%s) - START ))s"
