"""The style-transfer objective: targets computed once, then a pure loss of the image.

    L(x) = α Σ_content-layers ½ Σ (F_l(x) − P_l)²
         + β Σ_style-layers w_l Σ (G_l(x) − A_l)² / (4 N_l² M_l²)
         + γ TV(x)

A style image of another size than the output is allowed: its Gram matrix A_l is
rescaled by M_l(output) / M_l(style), i.e. both Grams are compared per position,
which is the paper's formula exactly when the sizes agree.
"""

from __future__ import annotations

import functools
from typing import Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from .checks import finite_number
from .errors import OptionError
from .losses import content_loss, gram_matrix, style_loss, total_loss, total_variation
from .vgg import check_layers, check_pooling, vgg19_features


class LossLayers(NamedTuple):
    """Which layers the losses use, and the pooling; static (selects a compiled program)."""

    content: tuple[str, ...] = ("relu4_2",)
    style: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    pooling: str = "max"

    def checked(self) -> "LossLayers":
        content = check_layers(self.content, "content layer")
        style = check_layers(self.style, "style layer")
        if not content and not style:
            raise OptionError("give at least one content or style layer")
        if len(set(style)) != len(style) or len(set(content)) != len(content):
            raise OptionError("a layer is listed twice in the content or style layers")
        return LossLayers(content, style, check_pooling(self.pooling))


class Targets(NamedTuple):
    """The arrays the loss compares against, and the loss weights (a pytree)."""

    content: dict[str, jax.Array]  # P_l: (1, H_l, W_l, C_l) features of the content image
    style_grams: dict[str, jax.Array]  # A_l, rescaled to the output's size: (C_l, C_l)
    style_layer_weights: dict[str, jax.Array]  # w_l
    content_weight: jax.Array  # α
    style_weight: jax.Array  # β
    tv_weight: jax.Array  # γ


def _positions(features: jax.Array) -> int:
    return features.shape[-3] * features.shape[-2]


@functools.partial(jax.jit, static_argnames=("layers", "output_shape"))
def _style_grams(params, style_image, layers: LossLayers, output_shape):
    """Style Grams A_l of one (H, W, 3) style image, scaled to an output of ``output_shape``."""
    features = vgg19_features(params, style_image[None], layers.style, pooling=layers.pooling)
    shapes = jax.eval_shape(
        lambda x: vgg19_features(params, x, layers.style, pooling=layers.pooling),
        jax.ShapeDtypeStruct((1, *output_shape), jnp.float32),
    )
    return {
        name: gram_matrix(f)[0] * (_positions(shapes[name]) / _positions(f))
        for name, f in features.items()
    }


@functools.partial(jax.jit, static_argnames=("layers",))
def _content_features(params, content_image, layers: LossLayers):
    return vgg19_features(params, content_image[None], layers.content, pooling=layers.pooling)


def make_targets(
    params: Mapping,
    content_image: jax.Array,
    style_image: jax.Array | Sequence[jax.Array],
    layers: LossLayers,
    *,
    content_weight: float,
    style_weight: float,
    tv_weight: float,
    style_layer_weights: Mapping[str, float] | Sequence[float] | None = None,
    style_blend_weights: Sequence[float] | None = None,
) -> Targets:
    """Compute P_l and A_l once. ``style_layer_weights`` defaults to 1/L each (w_l = 1/5).

    ``style_image`` may be a list of images: then A_l = Σ_i b_i A_l^(i), with the
    ``style_blend_weights`` b normalised to sum to 1 (default: equal).
    """
    content_weight = finite_number(content_weight, "content weight")
    style_weight = finite_number(style_weight, "style weight")
    tv_weight = finite_number(tv_weight, "tv weight")
    weights = _layer_weights(layers.style, style_layer_weights)
    content_image = jnp.asarray(content_image, jnp.float32)
    styles = [style_image] if getattr(style_image, "ndim", None) == 3 else list(style_image)
    blend = blend_weights(style_blend_weights, len(styles))
    content = _content_features(params, content_image, layers) if layers.content else {}
    grams = {}
    for b, style in zip(blend, styles):
        if layers.style and b > 0:
            these = _style_grams(params, jnp.asarray(style, jnp.float32), layers, content_image.shape)
            grams = {k: grams.get(k, 0.0) + b * g for k, g in these.items()}
    f32 = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    return Targets(
        content, grams, {k: f32(v) for k, v in weights.items()},
        f32(content_weight), f32(style_weight), f32(tv_weight),
    )  # fmt: skip


def blend_weights(given: Sequence[float] | None, count: int) -> list[float]:
    """Style blend weights, each finite and ≥ 0, normalised to sum to 1 (default equal)."""
    if count < 1:
        raise OptionError("give at least one style image")
    if given is None:
        return [1.0 / count] * count
    given = list(given)
    if len(given) != count:
        raise OptionError(f"{len(given)} style blend weights for {count} style images; give one each")
    weights = [finite_number(w, "style blend weight") for w in given]
    if sum(weights) <= 0:
        raise OptionError("style blend weights must not all be 0")
    return [w / sum(weights) for w in weights]


def _layer_weights(style_layers, given) -> dict[str, float]:
    if given is None:
        return {name: 1.0 / len(style_layers) for name in style_layers}
    if isinstance(given, Mapping):
        extra = set(given) - set(style_layers)
        if extra:
            raise OptionError(f"style layer weights name layers not in the style layers: {sorted(extra)}")
        weights = {name: given.get(name, 0.0) for name in style_layers}
    else:
        given = list(given)
        if len(given) != len(style_layers):
            raise OptionError(
                f"{len(given)} style layer weights for {len(style_layers)} style layers; give one each"
            )
        weights = dict(zip(style_layers, given))
    return {name: finite_number(w, f"style layer weight of {name}") for name, w in weights.items()}


def loss_terms(image: jax.Array, params: Mapping, targets: Targets, layers: LossLayers) -> dict:
    """The three loss terms and their weighted total for one (H, W, 3) image."""
    wanted = tuple(dict.fromkeys(layers.content + layers.style))
    features = vgg19_features(params, image[None], wanted, pooling=layers.pooling)
    content = sum(content_loss(features[name], targets.content[name]) for name in layers.content)
    style = style_loss(features, targets.style_grams, targets.style_layer_weights)
    tv = total_variation(image)
    content, style = jnp.asarray(content, tv.dtype), jnp.asarray(style, tv.dtype)
    total = total_loss(
        content, style, tv, targets.content_weight, targets.style_weight, targets.tv_weight
    )
    return {"content": content, "style": style, "tv": tv, "total": total}


def objective(image: jax.Array, params: Mapping, targets: Targets, layers: LossLayers) -> jax.Array:
    """The weighted total loss of one (H, W, 3) image in [0, 1]; what is minimised."""
    return loss_terms(image, params, targets, layers)["total"]


class StyleObjective(NamedTuple):
    """``objective`` with its layers bound; hashable by value, so jit reuses compiled loops."""

    layers: LossLayers

    def __call__(self, image: jax.Array, params: Mapping, targets: Targets) -> jax.Array:
        return objective(image, params, targets, self.layers)
