"""sanet-bench: benchmark and evaluation suite for arbitrary neural style transfer."""

from .api import list_methods, load_method
from .errors import SanetBenchError

__version__ = "0.1.0"
__all__ = ["SanetBenchError", "list_methods", "load_method", "__version__"]
