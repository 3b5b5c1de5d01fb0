"""3x3 "SAME" cross-correlation by Winograd's minimal filtering, F(m×m, 3×3).

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016).
The output is cut into m×m tiles; tile t reads an a×a input patch d_t (a = m + 2):

    Y_t = Aᵀ [ U ⊙ (Bᵀ d_t B) ] A,    U = G g Gᵀ,

summed over input channels, for each output channel: per tile position (ξ, ν) of
the a×a transformed patch, that sum is a matrix product

    M[ξν] = V[ξν] · U[ξν],   V: (tiles, C_in), U: (C_in, C_out).

It needs a²/(9m²) of the direct method's multiplications: 1/2.25 for m = 2 and 1/4
for m = 4. The price is the transforms (additions, memory traffic) and rounding:
for m = 4 the matrices hold 4, 5 and 8, and float32 results differ from the direct
correlation by ~1e-5 relative (m = 2: ~1e-6).

Why here: XLA:CPU runs batched matrix products at about the speed of its direct
convolution, so a quarter of the multiplications makes VGG-19's 3×3 layers about
twice as fast on CPU (``jaxstyle.convolutions.CPU`` uses it there). GPUs and TPUs
choose their own convolution algorithms; jaxstyle leaves them to it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

# (Bᵀ, G, Aᵀ) for interpolation points 0, ±1 (m = 2) and 0, ±1, ±2 (m = 4), plus ∞.
_MATRICES = {
    2: (
        [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]],
    ),
    4: (
        [
            [4, 0, -5, 0, 1, 0],
            [0, -4, -4, 1, 1, 0],
            [0, 4, -4, -1, 1, 0],
            [0, -2, -1, 2, 1, 0],
            [0, 2, -1, -2, 1, 0],
            [0, 4, 0, -5, 0, 1],
        ],
        [
            [1 / 4, 0, 0],
            [-1 / 6, -1 / 6, -1 / 6],
            [-1 / 6, 1 / 6, -1 / 6],
            [1 / 24, 1 / 12, 1 / 6],
            [1 / 24, -1 / 12, 1 / 6],
            [0, 0, 1],
        ],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    ),
}

TILE_SIZES = tuple(_MATRICES)


def winograd_matrices(m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Bᵀ (a×a), G (a×3), Aᵀ (m×a)) for F(m×m, 3×3), as float64 numpy arrays."""
    if m not in _MATRICES:
        raise ValueError(f"Winograd tile size must be one of {TILE_SIZES}, got {m}")
    return tuple(np.asarray(x, np.float64) for x in _MATRICES[m])


def winograd_kernel(kernel: jax.Array, m: int = 4) -> jax.Array:
    """U = G g Gᵀ for every (input, output) channel pair of an HWIO 3×3 kernel.

    Returns (a², C_in, C_out), tile positions in row-major (ξ, ν) order, in float32
    (float64 for a float64 kernel).
    """
    _, g, _ = winograd_matrices(m)
    a = m + 2
    xp = jnp if isinstance(kernel, jax.core.Tracer) else np  # concrete: no compiles
    dtype = np.float64 if kernel.dtype == np.float64 else np.float32
    k = xp.asarray(kernel).astype(dtype).reshape(3, -1)  # (r, s·I·O)
    g = g.astype(dtype)
    partial = (g @ k).reshape(a, 3, -1)  # Σ_r G[ξ, r] g[r, s]: (ξ, s, I·O)
    u = xp.matmul(g, partial)  # Σ_s G[ν, s] (...)[ξ, s]: (ξ, ν, I·O)
    return jnp.asarray(u.reshape(a * a, *kernel.shape[2:]))


def _combine(coefficients, terms):
    # Σ c·t over the nonzero c, with ±1 as plain adds: the transforms are additions,
    # and XLA fuses these into a few elementwise loops.
    total = None
    for c, t in zip(coefficients, terms):
        if c == 0:
            continue
        term = t if c == 1 else -t if c == -1 else t * np.asarray(c, t.dtype)
        total = term if total is None else total + term
    return total


@functools.partial(jax.jit, static_argnames="m")  # traced once per shape, not at every call
def winograd_correlate(x: jax.Array, u: jax.Array, m: int = 4) -> jax.Array:
    """The 3×3 "SAME" (zero-padded) cross-correlation of NHWC ``x`` with the kernel
    whose ``winograd_kernel(kernel, m)`` is ``u``. Any H, W: the edges are padded
    to whole tiles and the extra output cropped.

    The transforms are elementwise, so each image's result is the same whether it
    is computed alone or in a batch (a matrix product for them summed in an order
    that changed with the batch size at small sizes).
    """
    bt, _, at = winograd_matrices(m)
    a = m + 2
    n, h, w, c = x.shape
    th, tw = -(-h // m), -(-w // m)
    xp = jnp.pad(x, ((0, 0), (1, 1 + th * m - h), (1, 1 + tw * m - w), (0, 0)))
    # V = Bᵀ d B for every tile: rows first (tile i's row r is padded row m·i + r),
    # each stage one stacked array, then columns.
    rows = [xp[:, r : r + m * (th - 1) + 1 : m] for r in range(a)]
    by_rows = jnp.stack([_combine(bt[xi], rows) for xi in range(a)])  # (ξ, n, th, W+2, c)
    cols = [by_rows[:, :, :, s : s + m * (tw - 1) + 1 : m] for s in range(a)]
    v = jnp.stack([_combine(bt[nu], cols) for nu in range(a)], axis=1)  # (ξ, ν, n, th, tw, c)
    # M[ξν] = V[ξν] · U[ξν]: the multiplications, as a² matrix products.
    prod = jnp.einsum("tpc,tck->tpk", v.reshape(a * a, n * th * tw, c), u.astype(x.dtype))
    prod = prod.reshape(a, a, n * th * tw, -1)
    # Y = Aᵀ M A, rows then columns, and each tile's m×m outputs back into place.
    by_rows = jnp.stack([_combine(at[i], [prod[xi] for xi in range(a)]) for i in range(m)])  # (i, ν, p, k)
    y = jnp.stack([_combine(at[j], [by_rows[:, nu] for nu in range(a)]) for j in range(m)], axis=1)  # (i, j, p, k)
    y = y.reshape(m, m, n, th, tw, -1).transpose(2, 3, 0, 4, 1, 5).reshape(n, th * m, tw * m, -1)
    return y[:, :h, :w]
