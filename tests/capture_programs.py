"""Real programs, with no lab import, that the capture tests run through `lab run --wait`: each writes what its
library really writes (the transformers Trainer, PyTorch Lightning, torch's SummaryWriter, print)."""

# A script in the style of transformers' example scripts: HfArgumentParser dataclasses from command-line flags,
# a tiny model from a config, Trainer with report_to="none", log_metrics/save_metrics/save_state.
# `gate`: after the first logged loss it waits for that file (so a test can look while it runs).
TRAINER = r'''
import os, sys, time
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
'''

# The Trainer settings the tests pass as flags ({flags}).
def trainer_settings(output_dir: str, **extra) -> dict:
    return {
        "output_dir": output_dir, "report_to": "none", "max_steps": 8, "per_device_train_batch_size": 8,
        "logging_steps": 2, "learning_rate": 0.01, "save_strategy": "no", "seed": 3, "use_cpu": True,
        "disable_tqdm": True, "layers": [1], **extra,
    }


# A LightningModule with the default logger (TensorBoard's when tensorboard is installed, else a CSV logger),
# or an explicit CSVLogger (`csv: true`); a validation metric per epoch gives sparse rows, and a metric that
# appears only in the second epoch changes the CSV's columns mid-run.
LIGHTNING = r'''
import json, os, sys
import torch
import lightning as L

s = json.load(open(sys.argv[1]))


class Model(L.LightningModule):
    def __init__(self, lr=0.05):
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, i):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("train_loss", loss)
        if self.current_epoch >= 1:
            self.log("late_metric", float(self.current_epoch))
        return loss

    def validation_step(self, batch, i):
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


torch.manual_seed(0)
x = torch.randn(64, 4)
y = x.sum(dim=1, keepdim=True)
data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
out = os.environ["LAB_OUTPUT_DIR"]
logger = True
if s.get("csv"):
    from lightning.pytorch.loggers import CSVLogger
    logger = CSVLogger(out)
trainer = L.Trainer(max_epochs=3, default_root_dir=out, logger=logger, log_every_n_steps=2,
                    enable_checkpointing=False, enable_model_summary=False, accelerator="cpu", devices=1)
trainer.fit(Model(), data, data)
'''

# A training loop that writes scalars with torch.utils.tensorboard.SummaryWriter (where TENSORBOARD_LOGGING_DIR
# says, as lab sets it), and prints nothing of them.
SUMMARY_WRITER = r'''
import json, os, sys
from torch.utils.tensorboard import SummaryWriter

s = json.load(open(sys.argv[1]))
w = SummaryWriter(os.environ["TENSORBOARD_LOGGING_DIR"])
for step in range(s.get("steps", 20)):
    w.add_scalar("train/loss", 1.0 / (step + 1), step)
    if step % 5 == 4:
        w.add_scalar("val/accuracy", step / 100, step, new_style=True)
w.close()
print("done")
'''

# A plain script that prints its metrics, and whatever the test asks it to print too (bad output).
PRINTS = r'''
import json, sys
s = json.load(open(sys.argv[1]))
out = sys.stdout.buffer
out.write(bytes.fromhex(s.get("before", "")))
for step in range(1, s.get("steps", 5) + 1):
    out.write(f"step {step}: loss={1 / step:.4f} accuracy={step / 10}\n".encode())
out.write(bytes.fromhex(s.get("after", "")))
for i in range(s.get("names", 0)):
    out.write(f"m{i}=1\n".encode())
out.flush()
'''
