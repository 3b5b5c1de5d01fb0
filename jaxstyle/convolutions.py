"""How VGG-19's convolutions and max-pooling are computed: the one seam for speed tricks.

A strategy (``Convolutions``) is a hashable NamedTuple of pure functions:

- ``prepare(params)``: what can be computed from the weights once, outside the iteration
  loop (the loop calls it once per compiled chunk: ``objective.StyleObjective.prepare``);
- ``conv(x, layer)``: a layer's 3×3 "SAME" cross-correlation plus its bias;
- ``max_pool(x)``: 2×2 max-pooling, stride 2.

``PLAIN`` is XLA's own convolution and ``reduce_window``, with autodiff's gradients: any
backend (GPUs and TPUs choose their own convolution algorithms). ``CPU`` holds the tricks
that make XLA:CPU fast, all behind this seam and nowhere else:

- each convolution's input gradient as an ordinary HWIO correlation with a precomputed
  ``backward_kernel``. Why: JAX writes it as a convolution with the kernel reversed and its
  feature axes swapped through dimension numbers, and inside a loop body XLA:CPU runs that
  form on a slow path (about 3× slower: jax-ml/jax#12868);
- Winograd F(4×4, 3×3) (``jaxstyle.winograd``) for layers with ≥ ``WINOGRAD_MIN_CHANNELS``
  input and output channels, forward and backward, from kernel transforms computed in
  ``prepare``: about twice as fast, features within ~1e-5 relative of the direct ones;
- conv1_1 (3 input channels, where XLA:CPU's convolution crawls) as one product of 27-wide
  patches;
- the max-pool gradient as one elementwise pass from a byte per window (XLA:CPU's
  select-and-scatter took ~20 % of a value+gradient).

The weights (``params``) are the same plain pytree whatever the strategy: ``prepare`` adds
its precomputed entries inside the compiled program, and ``conv`` computes them on the
spot if they are absent (correct, only slower). ``strategy("auto")`` is ``CPU`` where JAX's
default backend is the CPU and ``PLAIN`` elsewhere.
"""

from __future__ import annotations

import functools
from typing import Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .errors import OptionError
from .winograd import winograd_correlate, winograd_kernel


def correlate(x: jax.Array, kernel: jax.Array) -> jax.Array:
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
    _, kernel_vjp = jax.vjp(lambda k: correlate(x, k), kernel)  # removed by XLA when unused
    (kernel_grad,) = kernel_vjp(g)
    return apply(g, backward), kernel_grad, jnp.zeros_like(forward), jnp.zeros_like(backward)


_correlate_precomputed.defvjp(_correlate_precomputed_fwd, _correlate_precomputed_bwd)


def _winograd(x: jax.Array, u: jax.Array) -> jax.Array:
    return winograd_correlate(x, u, _tile_size(u))


def _tile_size(u: jax.Array) -> int:
    return int(round(u.shape[0] ** 0.5)) - 2


#: Convolutions with at least this many input and output channels (all but conv1_1)
#: use Winograd F(4×4, 3×3) in the CPU strategy. Measured on
#: a 2-core CPU (value and gradient of the whole objective at 192×256): 0.27 s with
#: every such layer, 0.30 s from conv2_1 on, 0.32 s from conv3_1 on, 0.50 s with none.
WINOGRAD_MIN_CHANNELS = 64
#: ... and inputs at least this high and wide (two tiles); smaller ones gain nothing.
WINOGRAD_MIN_SIDE = 8


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


def window_corners(x: jax.Array):
    # The four elements of each 2x2 window, in row-major order; odd sizes lose their
    # last row/column, as in Keras.
    h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
    x = x[:, :h, :w]
    return x[:, 0::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 0::2], x[:, 1::2, 1::2]


@jax.custom_vjp
def _max_pool(x: jax.Array) -> jax.Array:
    return _max_pool_fwd(x)[0]


def _max_pool_fwd(x):
    a, b, c, d = window_corners(x)
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




def prepare_cpu(params: Mapping) -> dict:
    """``params`` with each convolution's ``kernel_bwd`` and, for layers with ≥
    ``WINOGRAD_MIN_CHANNELS`` input and output channels, the Winograd transforms of the
    kernel and of its backward kernel (``winograd``, ``winograd_bwd``). Prepared layers are
    kept as they are. Gradients with respect to the kernels are unchanged."""
    out = dict(params)
    for name, layer in params.items():
        if name.startswith("conv") and "kernel_bwd" not in layer:
            out[name] = _prepared_layer(layer)
    return out


def _prepared_layer(layer: Mapping) -> dict:
    layer = {**layer, "kernel_bwd": backward_kernel(layer["kernel"])}
    if min(layer["kernel"].shape[2:]) >= WINOGRAD_MIN_CHANNELS:
        layer["winograd"] = winograd_kernel(layer["kernel"], 4)
        layer["winograd_bwd"] = winograd_kernel(layer["kernel_bwd"], 4)
    return layer


def conv_cpu(x: jax.Array, layer: Mapping) -> jax.Array:
    if x.shape[-1] <= PATCH_MAX_CHANNELS and x.dtype == jnp.float32:
        y = _correlate_patches(x, layer["kernel"])
    else:
        if "kernel_bwd" not in layer:  # not prepared (a forward pass outside the loop, say)
            layer = _prepared_layer(layer)
        if "winograd" in layer and x.dtype == jnp.float32 and min(x.shape[1:3]) >= WINOGRAD_MIN_SIDE:
            y = _correlate_precomputed(_winograd, x, layer["kernel"], layer["winograd"], layer["winograd_bwd"])
        else:
            kernel = layer["kernel"]
            y = _correlate_precomputed(correlate, x, kernel, kernel, layer["kernel_bwd"].astype(x.dtype))
    return y + layer["bias"].astype(x.dtype)


def conv_plain(x: jax.Array, layer: Mapping) -> jax.Array:
    return correlate(x, layer["kernel"]) + layer["bias"].astype(x.dtype)


def max_pool_plain(x: jax.Array) -> jax.Array:
    h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2  # odd sizes lose their last row/column, as in Keras
    # -inf as a Python number: lax recognises max with its identity (reduce_window_max, differentiable).
    return jax.lax.reduce_window(x[:, :h, :w], -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


class Convolutions(NamedTuple):
    """A way of computing VGG-19's convolutions and max-pooling (see the module's text)."""

    name: str
    prepare: Callable[[Mapping], dict]
    conv: Callable[[jax.Array, Mapping], jax.Array]
    max_pool: Callable[[jax.Array], jax.Array]


PLAIN = Convolutions("plain", dict, conv_plain, max_pool_plain)
CPU = Convolutions("cpu", prepare_cpu, conv_cpu, _max_pool)
STRATEGIES = {"plain": PLAIN, "cpu": CPU}
CHOICES = ("auto", *STRATEGIES)


def strategy_name(name: str) -> str:
    """``name`` checked, with "auto" made concrete: "cpu" on a CPU backend, else "plain"."""
    if name not in CHOICES:
        raise OptionError(f"convolutions must be one of {', '.join(CHOICES)}, got {name!r}")
    if name == "auto":
        return "cpu" if jax.default_backend() == "cpu" else "plain"
    return name


def strategy(name: str | Convolutions = "auto") -> Convolutions:
    return name if isinstance(name, Convolutions) else STRATEGIES[strategy_name(name)]
