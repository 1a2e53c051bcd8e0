"""lab: a lab notebook for ML research that keeps experiments and papers together and keeps the GPU busy.

The Python API (lab.api): `lab.open(root=None)` gives a `Lab`, with the experiments, settings and runs, search,
notes and the run queue. `lab.log_metrics` logs a training program's metrics. Both are imported on first use,
so `import lab` stays cheap (no NumPy, click or rich) for the `lab` command and for programs that log metrics.
"""

from lab.errors import BadInput, LabError

__version__ = "0.1.0"
__all__ = ["BadInput", "Lab", "LabError", "Run", "Runs", "SearchResult", "log_metrics", "open", "__version__"]

_API = frozenset({"open", "Lab", "Run", "Runs", "SearchResult"})


def __getattr__(name):
    # On first use: importing them (json, re, dataclasses) would slow every `lab` start, `lab search` included.
    if name == "log_metrics":
        from lab.core.metrics import log_metrics

        return log_metrics
    if name in _API:
        import lab.api

        return getattr(lab.api, name)
    raise AttributeError(f"module 'lab' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})
