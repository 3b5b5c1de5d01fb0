"""jaxstyle: neural style transfer (Gatys, Ecker & Bethge, CVPR 2016) in JAX.

The names here are what users call; everything else stays importable from its module
(``jaxstyle.objective``, ``jaxstyle.optimize``, ``jaxstyle.vgg``, ...).
"""

from .api import StyleProblem, prepare, prepare_batch, solve, stylize, stylize_batch
from .config import DEFAULTS, PRESETS, Options
from .errors import CheckpointError, ImageError, JaxstyleError, OptionError, OutputError, WeightsError
from .losses import gram_matrix
from .optimize import NonFiniteLossWarning, Progress
from .vgg import vgg19_features
from .weights import load_weights

__version__ = "0.1.0"

__all__ = [
    "DEFAULTS", "PRESETS", "Options", "StyleProblem", "prepare", "prepare_batch", "solve", "stylize", "stylize_batch",
    "CheckpointError", "ImageError", "JaxstyleError", "OptionError", "OutputError", "WeightsError",
    "gram_matrix", "NonFiniteLossWarning", "Progress",
    "vgg19_features", "load_weights",
]  # fmt: skip
