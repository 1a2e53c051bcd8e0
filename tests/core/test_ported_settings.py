"""Settings ported from transformers' run_glue.py / run_classification.py, as people wrote them.

The files in tests/fixtures/settings/ are real (schlevik/nlr, as committed) or transcribed from transformers'
own tests and README (provenance in tests/fixtures/README.md). Each goes through `lab run`'s check, and the
refusal must name what to change; once changed as the messages say, the setting is accepted.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys

import pytest

from helpers import FIXTURES, LabCLI, write_settings
from lab.errors import BadInput
from lab.train.args import default_text_columns, peek_columns, setting_problems, validate_settings

SETTINGS = FIXTURES / "settings"
MRPC = FIXTURES / "data" / "mrpc" / "dev.csv"
HAS_STACK = all(importlib.util.find_spec(m) for m in ("torch", "transformers"))
needs_stack = pytest.mark.skipif(not HAS_STACK, reason="lab run checks the default program only with the train extra")


@pytest.fixture
def lab(lab_root):
    return LabCLI(lab_root)


def _port(lab_root, name: str, text: str | None = None):
    source = SETTINGS / name
    exp_dir = write_settings(lab_root, "port", {name: text if text is not None else source.read_text()})
    return exp_dir, name.split(".")[0]


# What each real or transcribed file is refused for, by lab run, all in one line.
EXPECTED = {
    "nlr-roberta-s-m20.jsonnet": [
        "unknown key 'evaluation_strategy' (transformers 5 calls it 'eval_strategy')",
        "unknown key 'overwrite_cache' (lab keeps no tokenized cache between runs: remove the key)",
        "unknown key 'overwrite_output_dir'", "unknown key 'warmup_ratio'",
        "train_file: no such file", "data/train-s-m20.json", "validation_file: no such file",
        "'output_dir' \"./models/roberta-s-m20\": under lab each setting writes its model to its experiment's models/SETTING/",
    ],
    "nlr-train-r-s1.jsonnet": ["unknown key 'evaluation_strategy'", "train_file: no such file", "'output_dir'"],
    "nlr-eval-c-1-2-train-r-m20.jsonnet": [
        "model_name_or_path: no model directory", "models/roberta-r-m20", "train_file: no such file",
    ],
    # Committed with an unterminated string: jsonnet's own message, with the file and position.
    "nlr-eval-40-45-train-e.jsonnet": ["nlr-eval-40-45-train-e.jsonnet:7:33: "],
    "transformers4-test_run_glue.json": [
        "unknown key 'overwrite_output_dir'", "train_file: no such file", "tests/fixtures/tests_samples/MRPC/train.csv",
        "'output_dir' \"/tmp/tmp_dir\"",
    ],
    "transformers3-test_run_glue.json": [
        "unknown key 'data_dir' (a GLUE data directory: lab reads local files: set train_file",
        "unknown key 'task_name' (run_glue.py's GLUE task: lab reads local files",
        "unknown key 'per_gpu_train_batch_size' (transformers 5 calls it 'per_device_train_batch_size')",
        "unknown key 'model_type'", "no data: set train_file",
    ],
    "transformers-readme-run_glue.json": ["unknown key 'task_name'", "no data: set train_file", "'output_dir' \"/tmp/mrpc/\""],
}


@needs_stack
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_settings_are_refused_with_every_fix_named(lab, lab_root, name):
    exp_dir, setting = _port(lab_root, name)
    proc = lab("run", f"port/{setting}", check=2)
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith(f"lab: error: experiments/port/settings/{name}")
    for phrase in EXPECTED[name]:
        assert phrase in proc.stderr, (phrase, proc.stderr)
    assert "nothing was queued" in proc.stderr
    assert not (exp_dir / "runs").exists() or not any((exp_dir / "runs").iterdir())
    assert not (exp_dir / "models" / setting).exists()


@needs_stack
def test_every_bad_setting_of_an_experiment_is_reported(lab, lab_root):
    for name in EXPECTED:
        _port(lab_root, name)
    proc = lab("run", "port", check=2)
    lines = proc.stderr.splitlines()
    assert len(lines) == len(EXPECTED) + 1 and all(line.startswith("lab: error: ") for line in lines)
    assert sorted(line.split(": ")[2].split(":")[0].rsplit("/", 1)[-1] for line in lines[:-1]) == sorted(EXPECTED)
    assert lines[-1] == f"lab: error: {len(EXPECTED)} of {len(EXPECTED)} settings are bad; nothing was queued"


def _ported_transformers4(lab_root) -> dict:
    """transformers' own test_run_glue arguments, changed as lab's messages say."""
    setting = json.loads((SETTINGS / "transformers4-test_run_glue.json").read_text())
    del setting["output_dir"], setting["overwrite_output_dir"]
    setting["train_file"] = setting["validation_file"] = "data/mrpc/dev.csv"
    return setting


@needs_stack
def test_ported_as_told_the_setting_is_accepted(lab_root):
    from lab.core.workspace import Workspace
    from lab.runs.control import check

    exp_dir, _ = _port(lab_root, "transformers4-test_run_glue.json", json.dumps(_ported_transformers4(lab_root)))
    (exp_dir / "data" / "mrpc").mkdir(parents=True)
    shutil.copy(MRPC, exp_dir / "data" / "mrpc" / "dev.csv")
    planned = check(Workspace(lab_root), ["port/transformers4-test_run_glue"])
    assert [p.setting.name for p in planned] == ["transformers4-test_run_glue"]


# ---- the cheap checks, in-process ----------------------------------------------------------------------------


def test_sentence_pairs_are_found_as_run_glue_finds_them():
    assert peek_columns(MRPC) == ["label", "sentence1", "sentence2"]
    assert default_text_columns(peek_columns(MRPC)) == ["sentence1", "sentence2"]
    assert default_text_columns(["idx", "premise", "hypothesis", "label"]) == ["premise", "hypothesis"]
    assert default_text_columns(["question", "sentence", "label"]) == ["question", "sentence"]
    assert default_text_columns(["question1", "question2", "label"]) == ["question1", "question2"]
    assert default_text_columns(["sentence", "label"]) == ["sentence"]
    assert default_text_columns(["text", "label"]) == ["text"]
    assert default_text_columns(["body", "label"]) is None


@pytest.mark.slow  # trains a model
def test_the_trainer_uses_the_pair(tmp_path):
    pytest.importorskip("datasets")
    from lab.train.args import DataTrainingArguments
    from lab.train.trainer import _text_columns, load_data

    raw = load_data({"train": MRPC}, None, None, "s.json")
    data_args = DataTrainingArguments(train_file=str(MRPC))
    assert _text_columns(raw, data_args, "s.json") == ["sentence1", "sentence2"]


def test_missing_files_and_columns_are_found_at_queue_time(tmp_path):
    (tmp_path / "data").mkdir()
    shutil.copy(MRPC, tmp_path / "data" / "train.csv")
    base = {"model_name_or_path": "distilbert-base-uncased", "train_file": "data/train.csv"}
    assert setting_problems(base, tmp_path) == []
    problems = setting_problems({**base, "validation_file": "data/dev.csv", "model_name_or_path": "./models/mine"}, tmp_path)
    assert problems == [f"validation_file: no such file {tmp_path / 'data' / 'dev.csv'}",
                        f"model_name_or_path: no model directory {tmp_path / 'models' / 'mine'}"]
    problems = setting_problems({**base, "text_column_names": "text", "label_column_name": "gold"}, tmp_path)
    assert problems == [
        "train_file train.csv: no text column 'text' (columns: label, sentence1, sentence2)",
        "train_file train.csv: no label column 'gold' (columns: label, sentence1, sentence2); set label_column_name",
    ]
    (tmp_path / "data" / "body.jsonl").write_text('{"body": "x", "label": 1}\n')
    [problem] = setting_problems({**base, "train_file": "data/body.jsonl"}, tmp_path)
    assert problem.startswith("train_file body.jsonl: no text column: lab looks for the pair sentence1/sentence2")


def test_own_output_dir_is_refused_under_lab_only(tmp_path):
    shutil.copy(MRPC, tmp_path / "train.csv")
    setting = {"model_name_or_path": "m", "train_file": "train.csv", "output_dir": "/tmp/mrpc/"}
    [problem] = setting_problems(setting, tmp_path)
    assert problem.startswith("'output_dir' \"/tmp/mrpc/\": under lab each setting writes its model to") and problem.endswith("remove the key")
    assert setting_problems(setting, tmp_path, allow_output_dir=True) == []
    assert setting_problems(setting) == []  # by hand, outside lab


@pytest.mark.parametrize(
    "key, says",
    [
        ("task_name", "lab reads local files (train_file, validation_file, test_file) and finds GLUE's column pairs"),
        ("dataset_name", "a hub dataset: lab reads local files: set train_file"),
        ("dataset_config_name", "a hub dataset's configuration"),
        ("data_dir", "a GLUE data directory"),
        ("overwrite_cache", "lab keeps no tokenized cache"),
        ("metric_name", "lab always reports accuracy and macro F1"),
        ("use_fast_tokenizer", "lab always loads the fast tokenizer"),
        ("do_regression", "regression is not supported"),
        ("train_split_name", "lab reads each split from its own file"),
        ("evaluate_during_training", "set \"eval_strategy\": \"steps\""),
        ("remove_columns", "lab feeds the model only the text and label columns"),
    ],
)
def test_example_script_keys_say_what_lab_does_instead(key, says):
    with pytest.raises(BadInput) as e:
        validate_settings({"model_name_or_path": "m", "train_file": "t.csv", key: "x"}, "s.json")
    assert f"unknown key {key!r} (" in str(e.value) and says in str(e.value)
    assert "remove_unused_columns" not in str(e.value)


def test_wrong_types_are_reported_all_at_once():
    with pytest.raises(BadInput) as e:
        validate_settings({"model_name_or_path": "m", "train_file": "t.csv", "learning_rate": "2e-5", "fp16": "False",
                           "max_seq_length": "128", "evaluation_strategy": "epoch"}, "s.json")
    assert str(e.value) == (
        "s.json: unknown key 'evaluation_strategy' (transformers 5 calls it 'eval_strategy'); "
        "'learning_rate' must be a number, not \"2e-5\"; 'fp16' must be true or false, not \"False\"; "
        "'max_seq_length' must be an integer, not \"128\""
    )


def test_a_comment_in_a_json_setting_says_json_has_none(tmp_path):
    from lab.core.settings import resolve_file

    path = tmp_path / "s1.json"
    path.write_text('{\n  // copied from run_glue.sh\n  "model_name_or_path": "m"\n}\n')
    with pytest.raises(BadInput) as e:
        resolve_file(path, "s1.json")
    assert str(e.value) == ("s1.json:2:3: Expecting property name enclosed in double quotes "
                            "(JSON has no comments; jsonnet has: rename it to s1.jsonnet)")


def test_help_into_a_closed_pipe_prints_no_traceback():
    proc = subprocess.Popen([sys.executable, "-m", "lab.train", "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader (`| head`) has gone before anything was written
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 0 and err == ""
