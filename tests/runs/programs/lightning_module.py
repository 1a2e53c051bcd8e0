"""A LightningModule with the default logger (TensorBoard's when tensorboard is installed), or a CSVLogger
(`csv: true`): a validation metric per epoch gives sparse rows, and a metric first logged in the second epoch
adds a column mid-run.

A test program: no lab import; tests/runs/test_capture.py runs it through `lab run --wait`.
"""
import json
import os
import sys
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
