#!/usr/bin/env bash
# One prepared check for a machine with one CUDA GPU (under 8 minutes: 480 s of step limits): the CUDA tests, the
# baseline train step against a bare torchvision loop at 384x192 / batch 64 (bf16, fp16 and fp32),
# ours vs baseline images/s, extraction images/s (torch fp32/bf16; ONNX Runtime's CUDA provider when
# installed), ccreid parse images/s (fp32/bf16/fp16, batch 32) and
# `ccreid demo --quick` on the GPU. Results: benchmarks/results/gpu.md (+ the JSON files each
# benchmark writes beside it). Run from the repository root after `make test` installed .venv:
#     bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=benchmarks/results/gpu.md
start=$(date +%s)
step() {  # step NAME SECONDS COMMAND...: run with a time limit, keep going on failure, record the status
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s)
  echo "== $name" >&2
  timeout "$limit" "$@" > "/tmp/gpu_check_$name.log" 2>&1
  local rc=$?
  echo "| $name | $rc | $(( $(date +%s) - t0 )) s | \`$*\` |" >> /tmp/gpu_check_steps.md
}
: > /tmp/gpu_check_steps.md
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print(torch.cuda.get_device_name(0))" \
  > /tmp/gpu_check_device.txt || { echo "no CUDA GPU visible" >&2; exit 2; }
step cuda_tests 75 "$PY" -m pytest -q -p no:cacheprovider -m cuda tests
step train_step_bf16 60 "$PY" benchmarks/bench_train_step.py --device cuda --amp bf16 --out benchmarks/results/gpu_train_step_bf16
step train_step_fp16 60 "$PY" benchmarks/bench_train_step.py --device cuda --amp fp16 --out benchmarks/results/gpu_train_step_fp16
step train_step_fp32 60 "$PY" benchmarks/bench_train_step.py --device cuda --amp off --out benchmarks/results/gpu_train_step_fp32
step ours_vs_baseline 60 "$PY" benchmarks/bench_train_throughput.py --presets baseline,ours --threads 0 \
  --out benchmarks/results/gpu_train_throughput train.device=cuda
step extract 60 "$PY" benchmarks/bench_extract.py --device cuda --images 256 --batch 64 --repeats 3 \
  --out benchmarks/results/gpu_extract
step parse 45 "$PY" benchmarks/bench_parse.py --images 8 --repeats 1 --out benchmarks/results/gpu_parse
step demo_quick 60 "$PY" -m ccreid demo --quick --overwrite --out /tmp/gpu_demo --no-report train.device=cuda
{
  echo "# GPU check"
  echo
  echo "Device: $(cat /tmp/gpu_check_device.txt); $(date -u +%Y-%m-%dT%H:%MZ); $(( $(date +%s) - start )) s in all."
  echo "Command: \`bash benchmarks/gpu_check.sh\`"
  echo
  echo "| step | exit | time | command |"
  echo "|---|---:|---:|---|"
  cat /tmp/gpu_check_steps.md
  for f in gpu_train_step_bf16 gpu_train_step_fp16 gpu_train_step_fp32 gpu_train_throughput gpu_extract gpu_parse; do
    [ -f "benchmarks/results/$f.md" ] && { echo; sed 's/^# /## /' "benchmarks/results/$f.md"; }
  done
  echo
  echo "## demo --quick on the GPU"
  echo '```'
  tail -n 12 /tmp/gpu_check_demo_quick.log
  echo '```'
} > "$OUT"
echo "wrote $OUT" >&2
