"""lab: a lab notebook for ML research that keeps experiments and papers together and keeps the GPU busy."""

from .errors import BadInput, LabError
from .metrics import log_metrics

__version__ = "0.1.0"
__all__ = ["BadInput", "LabError", "log_metrics", "__version__"]
