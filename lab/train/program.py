"""`python -m lab.train SETTINGS`: read and check the settings, find the data, the model and the output directory.

Everything here is cheap and runs before torch or transformers is imported, so a bad setting is refused in a
fraction of a second with one line (exit status 2) and the hub is switched off before any library reads its
environment. The training itself is in `lab.train.trainer`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, fields
from pathlib import Path

from lab.errors import BadInput, LabError, missing_extra
from lab.core.settings import resolve_file
from lab.train.args import PROGRAM_GROUPS, DataTrainingArguments, ModelArguments, program_arguments, validate_settings
from lab.train.models import ModelSource, resolve_model

USAGE = "usage: python -m lab.train SETTINGS.json  (or SETTINGS.jsonnet; --help lists the program's keys)"

HELP = """\
Fine-tune a transformers model for text classification, driven by one settings file.

The settings hold the keys of ModelArguments and DataTrainingArguments (below) and of transformers'
TrainingArguments (learning_rate, num_train_epochs, per_device_train_batch_size, eval_strategy, seed, bf16, ...).
Unknown keys are refused by name. Relative paths are relative to the experiment directory ($LAB_EXPERIMENT_DIR
under lab; otherwise EXP when the file is in EXP/settings/ or EXP/runs/, else the file's own directory).
Under lab the model goes to experiments/EXP/models/SETTING/ ($LAB_OUTPUT_DIR) and a setting may not name its
own output_dir; run by hand, output_dir is where the setting says (default: EXP/models/SETTING/ for a file in
EXP/settings/). Text columns: text_column_names, else a GLUE pair (sentence1/sentence2, question1/question2,
premise/hypothesis, question/sentence) as run_glue.py finds it, else 'sentence', else 'text'.

Example settings:
  {"model_name_or_path": "sentence-transformers/all-MiniLM-L6-v2", "train_file": "data/train.jsonl",
   "validation_file": "data/validation.jsonl", "learning_rate": 5e-5, "num_train_epochs": 2, "seed": 42}
"""


@dataclass
class Plan:
    """What a run will do, worked out before any heavy import."""

    settings: dict  # for HfArgumentParser: the setting with output_dir, do_* and data paths filled in
    where: str
    experiment_dir: Path
    model_args: ModelArguments
    data_args: DataTrainingArguments
    model: ModelSource
    config: ModelSource
    tokenizer: ModelSource
    data_files: dict[str, Path]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in ("-h", "--help"):
        try:
            print(help_text(), flush=True)
        except BrokenPipeError:
            # `python -m lab.train --help | head`: the reader left; that is not an error.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if len(argv) != 1:
        print(f"lab.train: error: {USAGE}", file=sys.stderr)
        return 2
    try:
        plan = make_plan(Path(argv[0]))
        set_offline(plan)
        from lab.train.trainer import run

        run(plan)
    except LabError as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"lab.train: error: {message}", file=sys.stderr)
        return e.exit_code
    except ModuleNotFoundError as e:
        if missing_extra(e) is None:
            raise
        print(f"lab.train: error: {missing_extra(e)}", file=sys.stderr)
        return 1
    return 0


def help_text() -> str:
    lines = [USAGE, "", HELP]
    for group in PROGRAM_GROUPS:
        lines.append(f"{group.__name__}:")
        for f in fields(group):
            lines.append(f"  {f.name}: {f.metadata.get('help', '')}")
        lines.append("")
    lines.append("TrainingArguments: https://huggingface.co/docs/transformers/main_classes/trainer#transformers.TrainingArguments")
    return "\n".join(lines)


def make_plan(settings_path: Path) -> Plan:
    """Read and check the settings and find every file the run needs; raises BadInput naming the file and key."""
    resolved = resolve_file(settings_path)
    exp_dir, where, default_output = locate(settings_path)
    # Under lab the output directory is lab's (models/SETTING/); run by hand, a setting may name its own.
    validate_settings(resolved, where, exp_dir, allow_output_dir=not os.environ.get("LAB_EXPERIMENT_DIR"))
    model_args, data_args = program_arguments(resolved, where)
    settings = dict(resolved)

    output = settings.get("output_dir")
    if output:
        settings["output_dir"] = str(_under(exp_dir, output))
    elif default_output is not None:
        settings["output_dir"] = str(default_output)
    else:
        raise BadInput(f"{where}: set output_dir (outside a lab run there is no models/SETTING/ to default to)")

    data_files = {}
    for split, key in (("train", "train_file"), ("validation", "validation_file"), ("test", "test_file")):
        value = getattr(data_args, key)
        if value is not None:
            path = _under(exp_dir, value)
            if not path.is_file():
                raise BadInput(f"{where}: {key}: no such file {path}")
            data_files[split] = path
    # Like the transformers examples, do_train/do_eval/do_predict choose what runs; a setting that names none of
    # them trains, and evaluates and predicts when it has validation and test files.
    if not any(k in settings for k in ("do_train", "do_eval", "do_predict")):
        settings["do_train"] = "train" in data_files
        settings["do_eval"] = "validation" in data_files
        settings["do_predict"] = "test" in data_files
    for flag, split in (("do_train", "train"), ("do_eval", "validation"), ("do_predict", "test")):
        if settings.get(flag) and split not in data_files:
            raise BadInput(f"{where}: {flag} needs {split}_file")
    if not any(settings.get(k) for k in ("do_train", "do_eval", "do_predict")):
        raise BadInput(f"{where}: nothing to do: do_train, do_eval and do_predict are all false")
    if settings.get("eval_strategy", "no") != "no" and "validation" not in data_files:
        raise BadInput(f"{where}: eval_strategy {settings['eval_strategy']!r} needs validation_file")

    def source(key, name):
        try:
            return resolve_model(name, exp_dir, use_packaged=model_args.use_packaged_model, key=key)
        except BadInput as e:
            raise BadInput(f"{where}: {e}") from None

    model = source("model_name_or_path", model_args.model_name_or_path)
    config = source("config_name", model_args.config_name) if model_args.config_name else model
    tokenizer = source("tokenizer_name", model_args.tokenizer_name) if model_args.tokenizer_name else model
    return Plan(settings, where, exp_dir, model_args, data_args, model, config, tokenizer, data_files)


def locate(settings_path: Path) -> tuple[Path, str, Path | None]:
    """(experiment directory, how to name the setting in messages, default output directory)."""
    settings_path = Path(settings_path)
    env = os.environ
    if env.get("LAB_EXPERIMENT_DIR"):
        exp_dir = Path(env["LAB_EXPERIMENT_DIR"])
        where = str(settings_path)
        setting = env.get("LAB_SETTING")
        if setting:
            for suffix in (".json", ".jsonnet"):
                original = exp_dir / "settings" / f"{setting}{suffix}"
                if original.is_file():
                    where = _shown(original, Path(env.get("LAB_ROOT") or exp_dir.parent.parent))
                    break
        output = Path(env["LAB_OUTPUT_DIR"]) if env.get("LAB_OUTPUT_DIR") else None
        return exp_dir, where, output
    parent = settings_path.resolve().parent
    if parent.name in ("settings", "runs"):
        exp_dir = parent.parent
        stem = settings_path.name.split(".")[0]
        return exp_dir, str(settings_path), exp_dir / "models" / stem
    return parent, str(settings_path), None


def set_offline(plan: Plan) -> None:
    """Keep the run off the network where nothing needs it (before transformers or datasets read the environment)."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # the data are local files
    if plan.model.local and plan.config.local and plan.tokenizer.local:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _under(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)
