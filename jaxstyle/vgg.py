"""VGG-19 feature extraction as pure functions of (params, images).

The network is the convolutional part of VGG-19 (Simonyan & Zisserman, 2014):
16 3x3 convolutions in 5 blocks, each convolution followed by a ReLU and each
block by a 2x2 pooling. Layer names follow the Caffe/paper convention::

    conv1_1 relu1_1 conv1_2 relu1_2 pool1  conv2_1 ... relu5_4 pool5

``convB_C`` is the convolution's output before its ReLU, ``reluB_C`` after it.
(Gatys et al. write "conv4_2" for what is here ``relu4_2``: the rectified response.)

``params`` is a plain dict pytree::

    {"input": {"matrix": (3, 3), "offset": (3,)},
     "conv1_1": {"kernel": (3, 3, 3, 64) HWIO, "bias": (64,)}, ...}

(How the convolutions and max-pooling are computed is a strategy, ``jaxstyle.convolutions``:
XLA's own ops, or the CPU's fast paths. The params are the same plain pytree for both;
a strategy's ``prepare`` may add precomputed entries, which ``vgg19_features`` takes too.)

``input`` turns RGB images in [0, 1] into whatever the weights were trained on
(``x @ matrix + offset``): for the original Caffe weights that is BGR, 0..255,
minus the ImageNet mean. Keeping it in the params keeps ``vgg19_features`` pure
and makes the preprocessing travel with the weights.
"""

from __future__ import annotations

import functools
from typing import Iterable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .errors import OptionError
from .convolutions import Convolutions, strategy, window_corners

# Output channels of each convolution block, and how many convolutions it has.
_BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))

CONV_LAYERS: tuple[str, ...] = tuple(
    f"conv{b}_{c}" for b, (_, n) in enumerate(_BLOCKS, 1) for c in range(1, n + 1)
)


def _layer_sequence() -> tuple[str, ...]:
    names = []
    for b, (_, n) in enumerate(_BLOCKS, 1):
        for c in range(1, n + 1):
            names += [f"conv{b}_{c}", f"relu{b}_{c}"]
        names.append(f"pool{b}")
    return tuple(names)


#: Every layer name ``vgg19_features`` can return, in network order.
LAYERS: tuple[str, ...] = _layer_sequence()
_LAYER_INDEX = {name: i for i, name in enumerate(LAYERS)}


def conv_shapes() -> dict[str, tuple[int, int, int, int]]:
    """The HWIO kernel shape of every VGG-19 convolution."""
    shapes, cin = {}, 3
    for b, (cout, n) in enumerate(_BLOCKS, 1):
        for c in range(1, n + 1):
            shapes[f"conv{b}_{c}"] = (3, 3, cin, cout)
            cin = cout
    return shapes


CONV_SHAPES = conv_shapes()


class Preprocessing(NamedTuple):
    """How the weights expect their input, as stored in a weights file.

    The network sees ``(x[..., order] * scale - mean) / std`` for an RGB image ``x``
    in [0, 1], where ``order`` is (2, 1, 0) for BGR and (0, 1, 2) for RGB.
    ``mean`` and ``std`` are given in the network's own channel order.
    """

    channel_order: str  # "RGB" or "BGR"
    scale: float  # 255.0 for Caffe-style weights, 1.0 for torchvision
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def input_params(self) -> dict[str, np.ndarray]:
        """The affine map ``x @ matrix + offset`` that applies this convention."""
        if self.channel_order not in ("RGB", "BGR"):
            raise OptionError(f"channel order must be 'RGB' or 'BGR', got {self.channel_order!r}")
        order = (0, 1, 2) if self.channel_order == "RGB" else (2, 1, 0)
        std = np.asarray(self.std, np.float64)
        matrix = np.zeros((3, 3))
        for out_channel, in_channel in enumerate(order):
            matrix[in_channel, out_channel] = self.scale / std[out_channel]
        offset = -np.asarray(self.mean, np.float64) / std
        return {"matrix": matrix.astype(np.float32), "offset": offset.astype(np.float32)}


#: The convention of the original Caffe VGG weights (and of Keras' copy of them).
CAFFE_PREPROCESSING = Preprocessing("BGR", 255.0, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0))


def check_layers(layers: Iterable[str], what: str = "layer") -> tuple[str, ...]:
    """Return ``layers`` as a tuple, or raise OptionError naming the unknown ones."""
    if isinstance(layers, str):
        layers = (layers,)
    layers = tuple(layers)
    unknown = [name for name in layers if name not in _LAYER_INDEX]
    if unknown:
        raise OptionError(
            f"unknown VGG-19 {what} name(s) {unknown}; valid names look like "
            f"'relu4_2', 'conv1_1', 'pool3' ({LAYERS[0]} ... {LAYERS[-1]})"
        )
    return layers


def deepest_layer(layers: Iterable[str]) -> str:
    """The layer furthest into the network among ``layers``."""
    return max(check_layers(layers), key=_LAYER_INDEX.__getitem__)


def convs_needed(layers: Iterable[str]) -> tuple[str, ...]:
    """The convolutions that must run to compute ``layers``."""
    last = _LAYER_INDEX[deepest_layer(layers)]
    return tuple(name for name in LAYERS[: last + 1] if name.startswith("conv"))


def min_image_side(layers: Iterable[str]) -> int:
    """The smallest image side for which every layer in ``layers`` is at least 1x1."""
    last = _LAYER_INDEX[deepest_layer(layers)]
    pools = sum(1 for name in LAYERS[: last + 1] if name.startswith("pool"))
    return 2**pools


def preprocess(params: Mapping, images: jax.Array) -> jax.Array:
    """Map RGB images in [0, 1] to the network's input convention."""
    return images @ params["input"]["matrix"] + params["input"]["offset"]


def _pool(x: jax.Array, pooling: str, convolutions: Convolutions) -> jax.Array:
    # 2x2, stride 2, no padding.
    if pooling == "max":
        return convolutions.max_pool(x)
    a, b, c, d = window_corners(x)
    return (a + b + c + d) * 0.25


def check_pooling(pooling: str) -> str:
    if pooling not in ("max", "avg"):
        raise OptionError(f"pooling must be 'max' or 'avg', got {pooling!r}")
    return pooling


COMPUTE_DTYPES = ("float32", "bfloat16")


def _run_block(names: tuple[str, ...], wanted: frozenset, pooling: str, ops: Convolutions, x: jax.Array, convs: Mapping):
    """Layers ``names`` (one block, ending at its pooling) from ``x``; the ``wanted`` ones returned."""
    features = {}
    for name in names:
        if name.startswith("conv"):
            x = ops.conv(x, convs[name])
        elif name.startswith("relu"):
            x = jax.nn.relu(x)
        else:
            x = _pool(x, pooling, ops)
        if name in wanted:
            features[name] = x
    return x, features


def vgg19_features(
    params: Mapping,
    images: jax.Array,
    layers: Sequence[str],
    *,
    pooling: str = "max",
    remat: bool = False,
    compute_dtype: str = "float32",
    convolutions: str | Convolutions = "auto",
) -> dict[str, jax.Array]:
    """Activations of VGG-19 at ``layers`` for NHWC RGB ``images`` in [0, 1].

    Only the network up to the deepest requested layer is computed. ``pooling`` is
    ``"max"`` (the network as trained) or ``"avg"`` (what Gatys et al. used).
    ``remat``: under differentiation, keep only each block's output and the requested
    features, and recompute the rest of a block in the backward pass
    (``jax.checkpoint`` per block: less memory for one more forward pass).
    ``compute_dtype``: "bfloat16" runs the network in bfloat16 (convolutions
    accumulate in float32); the features come back in it.
    ``convolutions``: "plain", "cpu" or "auto" (the CPU's fast paths on a CPU backend;
    ``jaxstyle.convolutions``). Returns ``{layer_name: (N, H_l, W_l, C_l) array}``.
    """
    wanted = set(check_layers(layers))
    check_pooling(pooling)
    ops = strategy(convolutions)
    if compute_dtype not in COMPUTE_DTYPES:
        raise OptionError(f"compute dtype must be one of {', '.join(COMPUTE_DTYPES)}, got {compute_dtype!r}")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise OptionError(f"images must be NHWC with 3 channels, got shape {images.shape}")
    x = preprocess(params, images)
    if compute_dtype != "float32":  # "float32": the inputs' own precision (float64 in gradient checks)
        x = x.astype(compute_dtype)
    last = _LAYER_INDEX[deepest_layer(wanted)]
    blocks, block = [], []
    for name in LAYERS[: last + 1]:
        if name.startswith("conv") and name not in params:
            raise OptionError(f"these weights have no {name}; use weights that include it")
        block.append(name)
        if name.startswith("pool") or name == LAYERS[last]:
            blocks.append(tuple(block))
            block = []
    features = {}
    for names in blocks:
        run = functools.partial(_run_block, names, frozenset(wanted.intersection(names)), pooling, ops)
        if remat:
            run = jax.checkpoint(run)
        x, found = run(x, {name: params[name] for name in names if name.startswith("conv")})
        features.update(found)
    return features


def init_vgg19_params(
    key: jax.Array,
    layers: Iterable[str] = CONV_LAYERS,
    preprocessing: Preprocessing = CAFFE_PREPROCESSING,
) -> dict:
    """Random (He-initialised) VGG-19 params, for tests and experiments.

    ``layers`` are the convolutions to include (a prefix of the network is enough
    for features up to its last layer).
    """
    params = {"input": {k: jnp.asarray(v) for k, v in preprocessing.input_params().items()}}
    for name in layers:
        shape = CONV_SHAPES[name]
        key, k_kernel, k_bias = jax.random.split(key, 3)
        fan_in = shape[0] * shape[1] * shape[2]
        # Caffe-scale inputs (0..255) are ~100x larger than [0,1]; keep activations tame.
        gain = np.sqrt(2.0 / fan_in) / (100.0 if name == "conv1_1" else 1.0)
        params[name] = {
            "kernel": gain * jax.random.normal(k_kernel, shape, jnp.float32),
            "bias": 0.1 * jax.random.normal(k_bias, shape[-1:], jnp.float32),
        }
    return params
