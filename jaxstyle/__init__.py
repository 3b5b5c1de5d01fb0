"""jaxstyle: neural style transfer (Gatys, Ecker & Bethge, CVPR 2016) in JAX."""

from .api import DEFAULTS, StyleProblem, prepare, solve, stylize
from .batch import BatchProgress, StyleBatch, minimize_batch, prepare_batch, solve_batch, stylize_batch
from .checkpoint import load_checkpoint, problem_fingerprint, save_checkpoint
from .errors import CheckpointError, ImageError, JaxstyleError, OptionError, OutputError, WeightsError
from .losses import content_loss, gram_matrix, style_layer_loss, style_loss, total_loss, total_variation
from .objective import LossLayers, Targets, loss_terms, make_targets, objective
from .optimize import NonFiniteLossWarning, OptimizerConfig, Progress, RunState, minimize
from .vgg import CAFFE_PREPROCESSING, LAYERS, Preprocessing, init_vgg19_params, vgg19_features
from .weights import load_weights, locate_weights

__version__ = "0.1.0"

__all__ = [
    "BatchProgress", "StyleBatch", "minimize_batch", "prepare_batch", "solve_batch", "stylize_batch",
    "CAFFE_PREPROCESSING", "CheckpointError", "DEFAULTS", "LAYERS", "ImageError", "JaxstyleError", "LossLayers",
    "NonFiniteLossWarning", "OptimizerConfig", "OptionError", "OutputError", "Preprocessing", "Progress", "RunState", "StyleProblem", "Targets",
    "WeightsError", "content_loss", "gram_matrix", "init_vgg19_params", "load_checkpoint", "load_weights",
    "locate_weights", "loss_terms", "make_targets", "minimize", "objective", "prepare", "problem_fingerprint",
    "save_checkpoint", "solve",
    "style_layer_loss", "style_loss", "stylize", "total_loss", "total_variation", "vgg19_features",
]  # fmt: skip
