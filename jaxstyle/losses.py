"""The losses of Gatys, Ecker & Bethge (CVPR 2016), as pure jit-able functions.

For one layer l with N_l channels and M_l = H_l * W_l positions, F_l is the (M_l, N_l)
matrix of the generated image's activations, P_l the content image's, and A_l the
style image's Gram matrix.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp


def _accumulation_dtype(x: jax.Array):
    # Sums run in float32 at least (bfloat16 features included), float64 if given.
    return jnp.promote_types(x.dtype, jnp.float32)


def gram_matrix(features: jax.Array) -> jax.Array:
    """G = Fᵀ F for features (..., H, W, C): G_ij = Σ_positions F_i F_j, shape (..., C, C).

    Unnormalised, as in the paper; ``style_layer_loss`` does the normalising.
    """
    *batch, h, w, c = features.shape
    f = features.reshape(*batch, h * w, c)
    return jnp.einsum("...mi,...mj->...ij", f, f, preferred_element_type=_accumulation_dtype(f))


def content_loss(features: jax.Array, target: jax.Array) -> jax.Array:
    """L_content = ½ Σ (F − P)²  (the paper's equation 1)."""
    dtype = _accumulation_dtype(features)
    diff = features.astype(dtype) - target.astype(dtype)
    return 0.5 * jnp.sum(diff * diff)


def style_layer_loss(features: jax.Array, target_gram: jax.Array) -> jax.Array:
    """E_l = Σ (G − A)² / (4 N_l² M_l²)  (the paper's equation 4).

    Computed as ¼ Σ ((G − A) / (N_l M_l))² so that no intermediate overflows or
    loses precision on large images.
    """
    *_, h, w, c = features.shape
    scale = 1.0 / (c * h * w)
    diff = (gram_matrix(features) - target_gram) * scale
    return 0.25 * jnp.sum(diff * diff)


def style_loss(
    features: Mapping[str, jax.Array],
    target_grams: Mapping[str, jax.Array],
    layer_weights: Mapping[str, jax.Array | float],
) -> jax.Array:
    """L_style = Σ_l w_l E_l over the layers in ``layer_weights``  (equation 5)."""
    return sum(
        layer_weights[name] * style_layer_loss(features[name], target_grams[name])
        for name in layer_weights
    )


def total_variation(image: jax.Array) -> jax.Array:
    """TV = Σ (x[i+1, j] − x[i, j])² + Σ (x[i, j+1] − x[i, j])²  over (..., H, W, C).

    The squared (smooth) form, on the image in [0, 1]; it discourages pixel noise.
    """
    dy = image[..., 1:, :, :] - image[..., :-1, :, :]
    dx = image[..., :, 1:, :] - image[..., :, :-1, :]
    return jnp.sum(dy * dy) + jnp.sum(dx * dx)


def total_loss(
    content: jax.Array,
    style: jax.Array,
    tv: jax.Array,
    content_weight: jax.Array | float,
    style_weight: jax.Array | float,
    tv_weight: jax.Array | float,
) -> jax.Array:
    """L = α·L_content + β·L_style + γ·TV."""
    return content_weight * content + style_weight * style + tv_weight * tv
