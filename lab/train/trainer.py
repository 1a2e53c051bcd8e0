"""The training run: data, model and tokenizer, the transformers Trainer, and what the run leaves behind.

Built the way transformers' `examples/pytorch/text-classification/run_classification.py` is built, for local
CSV/JSON/JSONL data. Imported only by `lab.train.program` once the settings have been checked.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path

import datasets
import numpy as np
import transformers
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    HfArgumentParser,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    default_data_collator,
    set_seed,
)

from lab.errors import BadInput, LabError
from lab.core.metrics import log_metrics
from lab.train.args import DATA_SUFFIXES, NO_TEXT_COLUMN, DataTrainingArguments, ModelArguments, default_text_columns

logger = logging.getLogger("lab.train")


class LabMetricsCallback(TrainerCallback):
    """Streams every training log and evaluation to `LAB_METRICS` (one JSON line each), for `lab status` and the book.

    `Trainer.evaluate` reports its metrics through `log`, so `on_log` sees them all: the step's loss, learning
    rate and gradient norm, `eval_*` after each evaluation, and the run's `train_*` summary at its end.
    """

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            log_metrics(step=state.global_step, max_steps=state.max_steps, num_train_epochs=args.num_train_epochs)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            values = {"epoch": state.epoch, **logs}
            values.pop("step", None)
            log_metrics(step=state.global_step, **values)


def run(plan) -> None:
    """Train, evaluate and predict as the plan says; save the model, tokenizer and metrics in output_dir."""
    parser = HfArgumentParser((ModelArguments, DataTrainingArguments, TrainingArguments))
    try:
        model_args, data_args, training_args = parser.parse_dict(plan.settings, allow_extra_keys=False)
    except (ValueError, TypeError) as e:
        raise BadInput(f"{plan.where}: {str(e).strip()}") from None
    _setup_logging(training_args)
    # torch warns at every evaluation that pinned memory needs an accelerator: noise in a CPU run's log.
    warnings.filterwarnings("ignore", message=".*'pin_memory' argument is set as true but no accelerator.*")
    logger.info(f"settings: {plan.where}; model: {plan.model.describe()}; output: {training_args.output_dir}")
    logger.info(
        f"device: {training_args.device}, n_gpu: {training_args.n_gpu}, bf16: {training_args.bf16}, fp16: {training_args.fp16}"
    )
    set_seed(training_args.seed)

    raw = load_data(plan.data_files, data_args, model_args.cache_dir, plan.where)
    text_columns = _text_columns(raw, data_args, plan.where)
    label_column = data_args.label_column_name
    for split in ("train", "validation"):
        if split in raw and label_column not in raw[split].column_names:
            raise BadInput(f"{plan.where}: {split}_file has no label column {label_column!r} (columns: {', '.join(raw[split].column_names)})")
    is_multi_label, label_list = _labels(raw, label_column, plan.where)
    label_to_id = {label: i for i, label in enumerate(label_list)}

    config, tokenizer, model = _load_model(plan, model_args, len(label_list), is_multi_label)
    if training_args.do_train:
        model.config.label2id = label_to_id
        model.config.id2label = {i: label for label, i in label_to_id.items()}
    elif model.config.label2id and set(model.config.label2id) == set(label_list):
        label_to_id = {str(k): int(v) for k, v in model.config.label2id.items()}
    max_length = min(data_args.max_seq_length, tokenizer.model_max_length)
    padding = "max_length" if data_args.pad_to_max_length else False

    def preprocess(batch):
        texts = [batch[c] for c in text_columns]
        if len(texts) > 2:  # more than a pair: one text
            texts = [[data_args.text_column_delimiter.join(str(t) for t in row) for row in zip(*texts)]]
        result = tokenizer(*texts, padding=padding, max_length=max_length, truncation=True)
        if label_column in batch:
            if is_multi_label:
                result["labels"] = [_multi_hot(labels, label_to_id) for labels in batch[label_column]]
            else:
                result["labels"] = [label_to_id[label_name(label)] for label in batch[label_column]]
        return result

    with training_args.main_process_first(desc="tokenizing"):
        processed = {
            split: ds.map(
                preprocess,
                batched=True,
                num_proc=data_args.preprocessing_num_workers,
                remove_columns=ds.column_names,
                desc=f"tokenizing {split}",
            )
            for split, ds in raw.items()
        }
    train_ds = _limit(processed.get("train"), data_args.max_train_samples)
    if train_ds is not None and data_args.shuffle_train_dataset:
        train_ds = train_ds.shuffle(seed=data_args.shuffle_seed)
    eval_ds = _limit(processed.get("validation"), data_args.max_eval_samples)
    test_ds = _limit(processed.get("test"), data_args.max_predict_samples)

    if data_args.pad_to_max_length:
        collator = default_data_collator
    else:
        collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if (training_args.fp16 or training_args.bf16) else None)

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_ds if training_args.do_train else None,
        eval_dataset=eval_ds if training_args.do_eval else None,
        processing_class=tokenizer,
        data_collator=collator,
        compute_metrics=classification_metrics(is_multi_label),
        callbacks=[LabMetricsCallback()],
    )

    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        metrics = dict(result.metrics, train_samples=len(train_ds))
        trainer.save_model()  # model (safetensors), config and tokenizer
        trainer.log_metrics("train", metrics)
        trainer.save_metrics("train", metrics)
        trainer.save_state()
    if training_args.do_eval:
        metrics = _final_evaluation(trainer) or trainer.evaluate(eval_dataset=eval_ds)
        metrics["eval_samples"] = len(eval_ds)
        trainer.log_metrics("eval", metrics)
        trainer.save_metrics("eval", metrics)
    if training_args.do_predict:
        predict(trainer, test_ds, raw["test"], label_list, is_multi_label, label_column)


def _final_evaluation(trainer) -> dict | None:
    """The evaluation the Trainer just ran at the final step, if it did: evaluating the same model again is waste."""
    state, args = trainer.state, trainer.args
    if args.load_best_model_at_end or not state.log_history or not args.do_train:
        return None
    evals = [h for h in state.log_history if "eval_loss" in h]
    last = evals[-1] if evals else None
    if last is None or last.get("step") != state.global_step:
        return None
    return {k: v for k, v in last.items() if k.startswith("eval_") or k == "epoch"}


def _setup_logging(training_args) -> None:
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    level = training_args.get_process_log_level()
    logger.setLevel(logging.INFO if training_args.should_log else level)
    datasets.utils.logging.set_verbosity(level)
    transformers.utils.logging.set_verbosity(level)
    datasets.utils.logging.disable_progress_bar()


def load_data(files: dict[str, Path], data_args, cache_dir, where: str) -> datasets.DatasetDict:
    """Each split from its own file (CSV, JSON or JSON Lines), so the splits may differ in format."""
    splits = {}
    for split, path in files.items():
        builder = DATA_SUFFIXES[path.suffix.lower()]
        try:
            splits[split] = datasets.load_dataset(builder, data_files={split: str(path)}, split=split, cache_dir=cache_dir)
        except Exception as e:  # pyarrow and datasets raise many types for a malformed file
            raise BadInput(f"{where}: {split}_file {path}: cannot read it as {builder}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        if len(splits[split]) == 0:
            raise BadInput(f"{where}: {split}_file {path} has no rows")
    return datasets.DatasetDict(splits)


def _text_columns(raw, data_args, where: str) -> list[str]:
    first = next(iter(raw.values()))
    columns = data_args.text_column_names or default_text_columns(first.column_names)
    if columns is None:
        raise BadInput(f"{where}: {NO_TEXT_COLUMN} (columns: {', '.join(first.column_names)})")
    for split, ds in raw.items():
        missing = [c for c in columns if c not in ds.column_names]
        if missing:
            raise BadInput(f"{where}: {split}_file has no text column {missing[0]!r} (columns: {', '.join(ds.column_names)}); set text_column_names")
    return columns


def _labels(raw, label_column: str, where: str) -> tuple[bool, list[str]]:
    """(multi-label?, the sorted label names): the union over the splits that have labels, as strings."""
    values = []
    is_multi_label = None
    for ds in raw.values():
        if label_column not in ds.column_names:
            continue
        for value in ds[label_column]:
            multi = isinstance(value, list)
            if is_multi_label is None:
                is_multi_label = multi
            elif multi != is_multi_label:
                raise BadInput(f"{where}: label column {label_column!r} mixes single labels and lists of labels")
            values.extend(value if multi else [value])
    if any(v is None for v in values):
        raise BadInput(f"{where}: label column {label_column!r} has empty labels")
    if any(isinstance(v, float) and not float(v).is_integer() for v in values):
        raise BadInput(f"{where}: label column {label_column!r} holds fractional numbers; this program classifies (labels: strings or integers)")
    names = {label_name(v) for v in values}
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        ordered = sorted(names, key=int)
    else:
        ordered = sorted(names)
    if len(ordered) < 2:
        raise BadInput(f"{where}: label column {label_column!r} has {len(ordered)} distinct label(s); classification needs at least 2")
    return bool(is_multi_label), ordered


def label_name(value) -> str:
    """A label as the config names it: 3, 3.0 and "3" are all "3"."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _multi_hot(labels, label_to_id) -> list[float]:
    row = [0.0] * len(label_to_id)
    for label in labels:
        row[label_to_id[label_name(label)]] = 1.0
    return row


def _limit(ds, n):
    if ds is None or n is None:
        return ds
    return ds.select(range(min(n, len(ds))))


def _load_model(plan, model_args, num_labels: int, is_multi_label: bool):
    common = dict(cache_dir=model_args.cache_dir, revision=model_args.model_revision, token=model_args.token,
                  trust_remote_code=model_args.trust_remote_code)
    step = "config"
    try:
        config = AutoConfig.from_pretrained(plan.config.path, num_labels=num_labels, finetuning_task="text-classification", **common)
        config.problem_type = "multi_label_classification" if is_multi_label else "single_label_classification"
        step = "tokenizer"
        tokenizer = AutoTokenizer.from_pretrained(plan.tokenizer.path, **common)
        step = "model"
        model = AutoModelForSequenceClassification.from_pretrained(
            plan.model.path, config=config, ignore_mismatched_sizes=model_args.ignore_mismatched_sizes, **common
        )
    except RuntimeError as e:
        if "ignore_mismatched_sizes" not in str(e):
            raise
        raise BadInput(
            f"{plan.where}: the model's classification head does not fit the data's {num_labels} labels; "
            "set \"ignore_mismatched_sizes\": true to replace it with a new one"
        ) from None
    except OSError as e:
        source = {"config": plan.config, "tokenizer": plan.tokenizer, "model": plan.model}[step]
        raise LabError(f"{plan.where}: cannot load the {step} from {source.describe()}: {str(e).strip().splitlines()[0]}") from None
    return config, tokenizer, model


def classification_metrics(is_multi_label: bool):
    """compute_metrics for the Trainer: accuracy and macro F1 (multi-label: exact-match accuracy, macro and micro F1).

    Computed with numpy as scikit-learn defines them: importing scikit-learn would load a second OpenMP runtime
    beside torch's, and on a busy CPU the two compete for the cores and slow training down.
    """

    def compute(p):
        logits = p.predictions[0] if isinstance(p.predictions, tuple) else p.predictions
        if is_multi_label:
            preds = (logits > 0).astype(int)
            refs = p.label_ids.astype(int)
            tp = (preds & refs).sum(axis=0)
            fp = (preds & (1 - refs)).sum(axis=0)
            fn = ((1 - preds) & refs).sum(axis=0)
            return {
                "accuracy": float((preds == refs).all(axis=1).mean()),
                "f1": float(np.mean(_f1(tp, fp, fn))),
                "f1_micro": float(_f1(tp.sum(), fp.sum(), fn.sum())),
            }
        preds = np.argmax(logits, axis=-1)
        refs = p.label_ids
        classes = np.union1d(refs, preds)
        tp = np.array([np.sum((preds == c) & (refs == c)) for c in classes])
        fp = np.array([np.sum((preds == c) & (refs != c)) for c in classes])
        fn = np.array([np.sum((preds != c) & (refs == c)) for c in classes])
        return {"accuracy": float(np.mean(preds == refs)), "f1": float(np.mean(_f1(tp, fp, fn)))}

    return compute


def _f1(tp, fp, fn):
    """F1 per class (0 where a class never occurs, as scikit-learn's zero_division=0)."""
    tp, fp, fn = (np.asarray(x, dtype=float) for x in (tp, fp, fn))
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros_like(denominator), where=denominator > 0)


def predict(trainer, test_ds, raw_test, label_list, is_multi_label, label_column) -> None:
    """Predict the test file; write `predict_results.jsonl` (one label, or list of labels, per row) and its metrics."""
    output = trainer.predict(test_ds, metric_key_prefix="predict")
    logits = output.predictions[0] if isinstance(output.predictions, tuple) else output.predictions
    if is_multi_label:
        predicted = [[label_list[i] for i in np.flatnonzero(row > 0)] for row in logits]
    else:
        predicted = [label_list[i] for i in np.argmax(logits, axis=-1)]
    metrics = dict(output.metrics or {}, predict_samples=len(test_ds))
    trainer.log_metrics("predict", metrics)
    trainer.save_metrics("predict", metrics)
    if trainer.is_world_process_zero():
        log_metrics(step=trainer.state.global_step, **metrics)
        path = Path(trainer.args.output_dir) / "predict_results.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for index, label in enumerate(predicted):
                f.write(json.dumps({"index": index, "prediction": label}, ensure_ascii=False) + "\n")
