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
    return _gram(features.reshape(*batch, h * w, c))


@jax.custom_vjp
def _gram(f: jax.Array) -> jax.Array:
    return jnp.einsum("...mi,...mj->...ij", f, f, preferred_element_type=_accumulation_dtype(f))


def _gram_fwd(f):
    return _gram(f), f


def _gram_bwd(f, g):
    # ∂(FᵀF)/∂F applied to g is F (g + gᵀ): one product, and already (M, C), where
    # autodiff's two products came out (C, M) and were transposed.
    sym = (g + jnp.swapaxes(g, -1, -2)).astype(f.dtype)
    return (jnp.einsum("...mi,...ij->...mj", f, sym, preferred_element_type=_accumulation_dtype(f)).astype(f.dtype),)


_gram.defvjp(_gram_fwd, _gram_bwd)


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
    return _gram_distance(gram_matrix(features), target_gram, features.shape, axis=None)


def _gram_distance(gram: jax.Array, target: jax.Array, shape, axis) -> jax.Array:
    """¼ Σ ((G − A) / (N_l M_l))² over ``axis`` (None: everything), for features of ``shape``."""
    *_, h, w, c = shape
    diff = (gram - target) / float(c * h * w)  # a float: N_l·M_l passes int32's range at large sizes
    return 0.25 * jnp.sum(diff * diff, axis=axis)


def total_variation(image: jax.Array) -> jax.Array:
    """TV = Σ (x[i+1, j] − x[i, j])² + Σ (x[i, j+1] − x[i, j])²  over (..., H, W, C).

    The squared (smooth) form, on the image in [0, 1]; it discourages pixel noise.
    """
    dy = image[..., 1:, :, :] - image[..., :-1, :, :]
    dx = image[..., :, 1:, :] - image[..., :, :-1, :]
    return jnp.sum(dy * dy) + jnp.sum(dx * dx)


# -- guided Gram matrices (Gatys et al. 2017, "Controlling Perceptual Factors") --------


def guided_gram_matrix(features: jax.Array, mask: jax.Array) -> jax.Array:
    """Ĝ = M · Σ_p m(p)² F(p) F(p)ᵀ / Σ_p m(p)²: the Gram matrix of the region a mask
    (..., H, W) in [0, 1] weighs, per position like G / M and scaled back by M so that
    an all-ones mask gives the plain Gram matrix."""
    *_, h, w, _ = features.shape
    weighted = features * mask[..., None].astype(features.dtype)
    mass = jnp.sum(jnp.square(mask.astype(_accumulation_dtype(features))), axis=(-2, -1))
    return gram_matrix(weighted) * (float(h * w) / mass)[..., None, None]


def guided_style_layer_loss(features: jax.Array, masks: jax.Array, target_grams: jax.Array) -> jax.Array:
    """E_l = Σ_i π_i ¼ Σ ((Ĝ_i − Â_i) / (N_l M_l))² for region masks (R, H_l, W_l), with
    π_i region i's share Σ m_i² / Σ_j Σ m_j² of the mask mass (one all-ones mask: E_l)."""
    mass = jnp.sum(masks * masks, axis=(-2, -1))
    grams = guided_gram_matrix(features, masks)  # (R, C, C): (1, H, W, C) broadcast against (R, H, W)
    return jnp.sum(mass / jnp.sum(mass) * _gram_distance(grams, target_grams, features.shape, axis=(-2, -1)))


def downsample_mask(mask: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """A (..., H, W) mask averaged over 2×2 blocks (as VGG pools) until it is ``shape``."""
    while mask.shape[-2:] != tuple(shape):
        h, w = mask.shape[-2] // 2 * 2, mask.shape[-1] // 2 * 2
        if (h // 2, w // 2) < tuple(shape) or h == 0 or w == 0:
            raise ValueError(f"cannot pool a {mask.shape[-2:]} mask to {shape}")
        m = mask[..., :h, :w]
        mask = 0.25 * (m[..., 0::2, 0::2] + m[..., 1::2, 0::2] + m[..., 0::2, 1::2] + m[..., 1::2, 1::2])
    return mask


# -- sliced Wasserstein style loss -------------------------------------------------------


def sorted_projections(features: jax.Array, directions: jax.Array) -> jax.Array:
    """The features (..., H, W, C) projected on unit ``directions`` (C, K), each of the
    K projections sorted over positions: (..., K, M), one empirical quantile function each."""
    *batch, h, w, c = features.shape
    f = features.reshape(*batch, h * w, c)
    projected = jnp.einsum("...mc,ck->...km", f, directions.astype(f.dtype),
                           preferred_element_type=_accumulation_dtype(f))  # fmt: skip
    return jnp.sort(projected, axis=-1)


def resample_quantiles(sorted_values: jax.Array, count: int) -> jax.Array:
    """Sorted samples (..., M') as ``count`` evenly spaced quantiles (linear interpolation):
    a style image of another size compared at the output's number of positions."""
    m = sorted_values.shape[-1]
    if m == count:
        return sorted_values
    src = (jnp.arange(m) + 0.5) / m
    dst = (jnp.arange(count) + 0.5) / count
    flat = sorted_values.reshape(-1, m)
    out = jax.vmap(lambda row: jnp.interp(dst, src, row))(flat)
    return out.reshape(*sorted_values.shape[:-1], count)


def sliced_wasserstein_layer_loss(features: jax.Array, target_sorted: jax.Array, directions: jax.Array) -> jax.Array:
    """SW_l = (1/K) Σ_k (1/M) Σ_i (sort(F θ_k)_i − Q_k,i)².

    The squared 2-Wasserstein distance between the distributions of the features'
    projections on K fixed unit directions θ_k and the style's (quantiles Q, sorted
    and resampled to M positions), averaged over directions: it matches the whole
    distribution of activations along each direction, not only its second moments.
    """
    diff = sorted_projections(features, directions) - target_sorted
    return jnp.mean(diff * diff, axis=(-2, -1))
