"""A script in the style of transformers' example scripts: HfArgumentParser dataclasses from command-line
flags, a tiny model from a config, the Trainer with report_to="none", log_metrics/save_metrics/save_state.
`--gate FILE`: after the first logged loss it waits for FILE, so that a test can look while it runs.

A test program: no lab import; tests/runs/test_capture.py runs it through `lab run --wait`.
"""
import os
import time
from dataclasses import dataclass, field

import torch
from transformers import BertConfig, BertForSequenceClassification, HfArgumentParser, Trainer, TrainerCallback, TrainingArguments


@dataclass
class ModelArguments:
    hidden_size: int = field(default=16, metadata={"help": "width"})
    layers: list[int] = field(default_factory=lambda: [1], metadata={"help": "a list flag"})
    gate: str = field(default="", metadata={"help": "a file to wait for after the first log"})


class Data(torch.utils.data.Dataset):
    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randint(5, 30, (n, 8), generator=g)
        self.y = (self.x[:, 0] > 17).long()

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"input_ids": self.x[i], "labels": self.y[i]}


class Gate(TrainerCallback):
    def __init__(self, path):
        self.path = path

    def on_step_begin(self, args, state, control, **kwargs):
        # After the first logged loss (printed by the progress callback, which runs after this one).
        while any("loss" in e for e in state.log_history) and not os.path.exists(self.path):
            time.sleep(0.05)


def main():
    parser = HfArgumentParser((ModelArguments, TrainingArguments))
    model_args, training_args = parser.parse_args_into_dataclasses()
    config = BertConfig(vocab_size=32, hidden_size=model_args.hidden_size, num_hidden_layers=model_args.layers[0],
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=16, num_labels=2)
    torch.manual_seed(training_args.seed)
    model = BertForSequenceClassification(config)
    trainer = Trainer(model=model, args=training_args, train_dataset=Data(64, 1), eval_dataset=Data(16, 2),
                      callbacks=[Gate(model_args.gate)] if model_args.gate else [])
    result = trainer.train()
    metrics = result.metrics
    trainer.log_metrics("train", metrics)
    trainer.save_metrics("train", metrics)
    trainer.save_state()
    metrics = trainer.evaluate()
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics)


if __name__ == "__main__":
    main()
