"""A training loop that writes scalars with torch.utils.tensorboard.SummaryWriter where
TENSORBOARD_LOGGING_DIR says (lab sets it), and prints none of them.

A test program: no lab import; tests/runs/test_capture.py runs it through `lab run --wait`.
"""
import json
import os
import sys
from torch.utils.tensorboard import SummaryWriter

s = json.load(open(sys.argv[1]))
w = SummaryWriter(os.environ["TENSORBOARD_LOGGING_DIR"])
for step in range(s.get("steps", 20)):
    w.add_scalar("train/loss", 1.0 / (step + 1), step)
    if step % 5 == 4:
        w.add_scalar("val/accuracy", step / 100, step, new_style=True)
w.close()
print("done")
