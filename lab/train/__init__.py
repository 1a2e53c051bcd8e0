"""lab's default training program: text-classification fine-tuning with the transformers Trainer.

`python -m lab.train SETTINGS.json` (or `.jsonnet`) is what an experiment runs when its report names no
command. The settings hold the keys of three argument groups, as in transformers' `examples/pytorch` programs:
`ModelArguments`, `DataTrainingArguments` (both in `lab.train.args`) and transformers' `TrainingArguments`.

Importing this package is cheap (no torch, no transformers), so `lab run` can call `validate_settings` on
every setting it queues for this program.
"""

from __future__ import annotations

from lab.train.args import DataTrainingArguments, ModelArguments, validate_settings

__all__ = ["DataTrainingArguments", "ModelArguments", "validate_settings", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run the program (what `python -m lab.train` does); returns the exit status."""
    from lab.train.program import main as _main

    return _main(argv)
