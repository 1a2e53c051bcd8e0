"""lab: a lab notebook for ML research that keeps experiments and papers together and keeps the GPU busy."""

from lab.errors import BadInput, LabError

__version__ = "0.1.0"
__all__ = ["BadInput", "LabError", "log_metrics", "__version__"]


def __getattr__(name):
    # `lab.log_metrics` on first use: importing it (json, re) would slow every `lab` start, `lab search` included.
    if name == "log_metrics":
        from lab.core.metrics import log_metrics

        return log_metrics
    raise AttributeError(f"module 'lab' has no attribute {name!r}")
