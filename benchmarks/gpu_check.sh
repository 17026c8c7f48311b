#!/usr/bin/env bash
# The GPU check, under 10 minutes on one GPU: the VTAB recipe's backbone (timm ViT-B/16 augreg
# in21k, 224 px, batch 64) in bf16 on one VTAB-1K-sized task. `peftbench bench` (every method's
# step, inference and peak memory; fp32 against bf16), the plan and estimate of a run, then the run
# with one worker per GPU (--workers auto); it prints the throughputs and peak memory recorded.
# It installs and downloads nothing: PYTHON is an interpreter with torch (CUDA) and peftbench.
#
#   PYTHON=.venv/bin/python benchmarks/gpu_check.sh [OUT]      # OUT: default gpu-check/
#
# VTAB_ROOT=/data/vtab-1k uses the real eurosat folder, else a synthetic one of the same size is
# made under OUT; weights not in the Hugging Face cache get random stand-ins (benchmarks/gpu_fixture.py).
# BACKBONE, SIZE and EPOCHS change the model, image size and epochs, REQUIRE_GPU=0 lets it run on a
# CPU (tests/test_gpu_check.py runs it so, with a tiny model). OUT gets check.log, bench.json,
# results.db and runs.csv.
set -euo pipefail
OUT=$(mkdir -p "${1:-gpu-check}" && cd "${1:-gpu-check}" && pwd)
PY=${PYTHON:-python3}
BACKBONE=${BACKBONE:-timm:vit_base_patch16_224.augreg_in21k}
SIZE=${SIZE:-224}
TASK=eurosat
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
exec > >(tee "$OUT/check.log") 2>&1

"$PY" - <<EOF
import torch
gpus = torch.cuda.device_count()
print(f"{gpus} GPU(s): {', '.join(torch.cuda.get_device_name(i) for i in range(gpus)) or 'none'}; torch {torch.__version__}")
assert gpus or "${REQUIRE_GPU:-1}" == "0", "no GPU visible (REQUIRE_GPU=0 to run on the CPU)"
EOF
FIXTURE=$("$PY" "$(dirname "$0")/gpu_fixture.py" "$OUT" "$BACKBONE" "$TASK")  # DATA_ROOT, maybe HF_HUB_CACHE
eval "$FIXTURE"
RUN=(--methods lora,hora,dora,vera,adapter,linear --tasks "vtab/$TASK" --data-root "$DATA_ROOT" --backbone "$BACKBONE"
     --image-size "$SIZE" --trials 0 --seeds 1 --epochs "${EPOCHS:-3}" --precision bf16 --store "$OUT/results.db"
     --out "$OUT" --no-progress)

echo "== peftbench bench: steps, inference and peak memory, as ratios to LoRA"
"$PY" -m peftbench.cli bench --backbone "$BACKBONE" --image-size "$SIZE" --batch-size 64 --run-task "vtab/$TASK" \
    --run-options "--data-root $DATA_ROOT --epochs 1" --json "$OUT/bench.json"
echo "== the plan of the run, and its estimate"
"$PY" -m peftbench.cli run "${RUN[@]}" --dry-run
echo "== the run, one worker per GPU"
start=$(date +%s)
"$PY" -m peftbench.cli run "${RUN[@]}" --workers auto
echo "the run took $(( $(date +%s) - start )) s of wall time"
"$PY" -m peftbench.cli export --store "$OUT/results.db" --format csv --out "$OUT/runs.csv"
"$PY" - "$OUT/results.db" <<'EOF'
import sys

from peftbench.store import Store

print(f"{'method':<8} {'train/s':>8} {'eval/s':>8} {'peak MB':>8}  device")
for r in Store(sys.argv[1], create=False).records(phase="final"):
    print(f"{r['method']:<8} {r['train_samples_per_s'] or 0:>8.0f} {r['eval_samples_per_s'] or 0:>8.0f} "
          f"{r['peak_memory_mb'] or 0:>8.0f}  {r['env']['device']} ({r['status']})")
EOF
