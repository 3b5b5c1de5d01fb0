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

(``add_backward_kernels`` may add a ``kernel_bwd`` per layer, and on CPU the Winograd
transforms ``winograd`` / ``winograd_bwd`` of the deep layers: same results, faster.)

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
from .winograd import winograd_correlate, winograd_kernel

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


def _correlate(x: jax.Array, kernel: jax.Array) -> jax.Array:
    # Cross-correlation with zero "SAME" padding, as in Caffe and Keras. Low-precision
    # inputs (bfloat16) accumulate in float32 and are rounded once, at the output.
    low = jnp.finfo(x.dtype).bits < 32
    y = jax.lax.conv_general_dilated(
        x, kernel.astype(x.dtype), (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
        preferred_element_type=jnp.float32 if low else None,
    )
    return y.astype(x.dtype)


def backward_kernel(kernel: jax.Array) -> jax.Array:
    """The HWIO kernel whose correlation gives a 3x3 "SAME" layer's input gradient.

    For y = x ⋆ W (cross-correlation), ∂L/∂x = (∂L/∂y) ⋆ W', W'[h, w, o, i] = W[2−h, 2−w, i, o].
    """
    xp = jnp if isinstance(kernel, jax.core.Tracer) else np  # concrete: no compiles
    return jnp.asarray(xp.flip(kernel, (0, 1)).swapaxes(2, 3))


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _correlate_precomputed(apply, x, kernel, forward, backward):
    """``apply(x, forward)``, the correlation of x with ``kernel`` in a precomputed
    form, whose input gradient is ``apply(g, backward)`` (the same correlation with
    the backward kernel). Kernel gradients are the direct correlation's."""
    return apply(x, forward)


def _correlate_precomputed_fwd(apply, x, kernel, forward, backward):
    return apply(x, forward), (x, kernel, forward, backward)


def _correlate_precomputed_bwd(apply, residuals, g):
    x, kernel, forward, backward = residuals
    _, kernel_vjp = jax.vjp(lambda k: _correlate(x, k), kernel)  # removed by XLA when unused
    (kernel_grad,) = kernel_vjp(g)
    return apply(g, backward), kernel_grad, jnp.zeros_like(forward), jnp.zeros_like(backward)


_correlate_precomputed.defvjp(_correlate_precomputed_fwd, _correlate_precomputed_bwd)


def _winograd(x: jax.Array, u: jax.Array) -> jax.Array:
    return winograd_correlate(x, u, _tile_size(u))


def _tile_size(u: jax.Array) -> int:
    return int(round(u.shape[0] ** 0.5)) - 2


#: Convolutions with at least this many input and output channels (all but conv1_1)
#: use Winograd F(4×4, 3×3) where ``add_backward_kernels`` turns it on. Measured on
#: a 2-core CPU (value and gradient of the whole objective at 192×256): 0.27 s with
#: every such layer, 0.30 s from conv2_1 on, 0.32 s from conv3_1 on, 0.50 s with none.
WINOGRAD_MIN_CHANNELS = 64
#: ... and inputs at least this high and wide (two tiles); smaller ones gain nothing.
WINOGRAD_MIN_SIDE = 8


def add_backward_kernels(params: Mapping, winograd: bool | None = None) -> dict:
    """``params`` prepared for fast gradients, with everything computed once, outside
    the loop.

    - each convolution's ``backward_kernel`` (``kernel_bwd``). Why: JAX writes a
      convolution's input gradient as a convolution with the kernel reversed and its
      feature axes swapped through dimension numbers. Inside a loop body XLA:CPU runs
      that form on a slow path (about 3x slower: jax-ml/jax#12868). With the kernel
      flipped and transposed once, the gradient is an ordinary HWIO convolution.
    - with ``winograd`` (default: when JAX's default backend is the CPU), for layers
      with ≥ ``WINOGRAD_MIN_CHANNELS`` input and output channels, the Winograd
      F(4×4, 3×3) transforms of the kernel and of its backward kernel (``winograd``,
      ``winograd_bwd``): those layers then run as batched matrix products
      (``jaxstyle.winograd``), forward and backward, about twice as fast on CPU.
      Features match the direct correlation to ~1e-5 relative. GPUs and TPUs
      choose their own convolution algorithms, so it is off there by default.

    Gradients with respect to the kernels are unchanged (the added entries get zero).
    Layers already prepared (with a ``kernel_bwd``) are kept as they are, so calling
    this again, with either ``winograd``, costs nothing and changes nothing.
    """
    if winograd is None:
        winograd = jax.default_backend() == "cpu"
    out = dict(params)
    for name, layer in params.items():
        if not name.startswith("conv") or "kernel_bwd" in layer:
            continue
        layer = {**layer, "kernel_bwd": backward_kernel(layer["kernel"])}
        if winograd and min(layer["kernel"].shape[2:]) >= WINOGRAD_MIN_CHANNELS:
            layer["winograd"] = winograd_kernel(layer["kernel"], 4)
            layer["winograd_bwd"] = winograd_kernel(layer["kernel_bwd"], 4)
        out[name] = layer
    return out


def _correlate_patches(x: jax.Array, kernel: jax.Array) -> jax.Array:
    # The same "SAME" correlation as one matrix product over 3x3 patches (im2col).
    # Why: with 3 input channels (conv1_1) XLA:CPU's convolution runs at a few
    # GFLOP/s; 27-wide patches times a (27, C_out) matrix is several times faster.
    n, h, w, c = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    patches = jnp.concatenate([xp[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], axis=-1)
    return patches @ kernel.astype(x.dtype).reshape(9 * c, -1)


#: Convolutions with at most this many input channels run as patch products.
PATCH_MAX_CHANNELS = 4


def _conv(x: jax.Array, layer: Mapping) -> jax.Array:
    if x.shape[-1] <= PATCH_MAX_CHANNELS and x.dtype == jnp.float32:
        y = _correlate_patches(x, layer["kernel"])
    elif "winograd" in layer and x.dtype == jnp.float32 and min(x.shape[1:3]) >= WINOGRAD_MIN_SIDE:
        y = _correlate_precomputed(_winograd, x, layer["kernel"], layer["winograd"], layer["winograd_bwd"])
    elif "kernel_bwd" in layer:
        kernel = layer["kernel"]
        y = _correlate_precomputed(_correlate, x, kernel, kernel, layer["kernel_bwd"].astype(x.dtype))
    else:
        y = _correlate(x, layer["kernel"])
    return y + layer["bias"].astype(x.dtype)


def _window_corners(x: jax.Array):
    # The four elements of each 2x2 window, in row-major order; odd sizes lose their
    # last row/column, as in Keras.
    h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
    x = x[:, :h, :w]
    return x[:, 0::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 0::2], x[:, 1::2, 1::2]


@jax.custom_vjp
def _max_pool(x: jax.Array) -> jax.Array:
    return _max_pool_fwd(x)[0]


def _max_pool_fwd(x):
    a, b, c, d = _window_corners(x)
    y = jnp.maximum(jnp.maximum(a, b), jnp.maximum(c, d))
    # Which corner won (the first, in row-major order, on ties): one byte per output.
    winner = jnp.where(a == y, 0, jnp.where(b == y, 1, jnp.where(c == y, 2, 3))).astype(jnp.int8)
    return y, (winner, x.shape)


def _max_pool_bwd(residuals, g):
    # Each window's gradient goes to its winner, as reduce_window's gradient
    # (select-and-scatter) sends it, but as one elementwise pass: XLA:CPU's
    # select-and-scatter took ~20% of a VGG value+gradient.
    winner, (n, h, w, c) = residuals
    corner = jnp.arange(4, dtype=jnp.int8).reshape(1, 1, 2, 1, 2, 1)
    grad = jnp.where(winner[:, :, None, :, None, :] == corner, g[:, :, None, :, None, :], 0)
    grad = grad.reshape(n, h // 2 * 2, w // 2 * 2, c)
    return (jnp.pad(grad, ((0, 0), (0, h % 2), (0, w % 2), (0, 0))),)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def _pool(x: jax.Array, pooling: str) -> jax.Array:
    # 2x2, stride 2, no padding.
    if pooling == "max":
        return _max_pool(x)
    a, b, c, d = _window_corners(x)
    return (a + b + c + d) * 0.25


def check_pooling(pooling: str) -> str:
    if pooling not in ("max", "avg"):
        raise OptionError(f"pooling must be 'max' or 'avg', got {pooling!r}")
    return pooling


COMPUTE_DTYPES = ("float32", "bfloat16")


def _run_block(names: tuple[str, ...], wanted: frozenset, pooling: str, x: jax.Array, convs: Mapping):
    """Layers ``names`` (one block, ending at its pooling) from ``x``; the ``wanted`` ones returned."""
    features = {}
    for name in names:
        if name.startswith("conv"):
            x = _conv(x, convs[name])
        elif name.startswith("relu"):
            x = jax.nn.relu(x)
        else:
            x = _pool(x, pooling)
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
) -> dict[str, jax.Array]:
    """Activations of VGG-19 at ``layers`` for NHWC RGB ``images`` in [0, 1].

    Only the network up to the deepest requested layer is computed. ``pooling`` is
    ``"max"`` (the network as trained) or ``"avg"`` (what Gatys et al. used).
    ``remat``: under differentiation, keep only each block's output and the requested
    features, and recompute the rest of a block in the backward pass
    (``jax.checkpoint`` per block: less memory for one more forward pass).
    ``compute_dtype``: "bfloat16" runs the network in bfloat16 (convolutions
    accumulate in float32); the features come back in it.
    Returns ``{layer_name: (N, H_l, W_l, C_l) array}``.
    """
    wanted = set(check_layers(layers))
    check_pooling(pooling)
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
        run = functools.partial(_run_block, names, frozenset(wanted.intersection(names)), pooling)
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
