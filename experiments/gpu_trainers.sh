#!/usr/bin/env bash
# The trainer group on a GPU machine: the default protein job with trainer=cpu, gpu, ddp and
# fsdp (one device each), then `seiko sample` from the last saved round. CI has no GPU, so this
# is a manual check; its output is in experiments/results/gpu_trainers/ and the README.
#
#   bash experiments/gpu_trainers.sh [OUT_DIR]     # python3 must hold seiko's dependencies
#   TRAINERS="gpu fsdp" bash experiments/gpu_trainers.sh     # a subset
#
# Each job is timed from its own summary.json; the script stops at the first failure.
set -euo pipefail
OUT=${1:-experiments/runs/gpu_trainers}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__, 'cuda', torch.cuda.is_available())"
ARGS=(budget.per_round=[64,128,256] eval.num_samples=256 progress=false)
for trainer in ${TRAINERS:-cpu gpu ddp fsdp}; do
  extra=()
  [[ $trainer == ddp || $trainer == fsdp ]] && extra=(trainer.devices=1)
  [[ $trainer == ddp ]] && extra+=(trainer.accelerator=gpu)
  start=$(date +%s.%N)
  $PY -m seiko trainer=$trainer "${ARGS[@]}" "${extra[@]}" run_name=trainer-$trainer \
      hydra.run.dir="$OUT/trainer-$trainer" > "$OUT/trainer-$trainer.log" 2>&1 \
    || { tail -40 "$OUT/trainer-$trainer.log"; exit 1; }
  end=$(date +%s.%N)
  $PY - "$OUT/trainer-$trainer" "$trainer" "$start" "$end" <<'EOF'
import json, sys
run, trainer, start, end = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
s = json.load(open(f"{run}/summary.json"))
rounds = [h["seconds"] for h in s["history"]]
print(f"trainer={trainer}: {end - start:.0f} s wall, seconds per round {', '.join(f'{x:.1f}' for x in rounds)}, "
      f"queries {s['queries']}, best {s['best_value']:.3f}, final samples feasible {s['final']['feasibility']:.2f}")
EOF
done
if [[ -f "$OUT/trainer-gpu/summary.json" ]]; then
  $PY -m seiko sample "$OUT/trainer-gpu" --num 64 --out "$OUT/samples.tsv"
  echo "seiko sample: $(($(wc -l < "$OUT/samples.tsv") - 1)) designs from trainer-gpu's last round"
fi
