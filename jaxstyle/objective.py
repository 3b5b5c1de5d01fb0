"""The style-transfer objective: loss terms built once, then a pure loss of the image.

    L(x) = α Σ_content-layers ½ Σ (F_l(x) − P_l)²
         + β Σ_style-layers w_l Σ (G_l(x) − A_l)² / (4 N_l² M_l²)
         + γ TV(x)
         + the user's own terms

``make_terms`` computes the targets (P_l, A_l, ...) of the terms ``LossLayers`` asks
for and returns them as a mapping of ``terms.Weighted`` loss terms ("content", "style",
"tv", "extra"); ``objective`` runs the network once for every layer some term reads and
adds the weighted terms up.

A style image of another size than the output is allowed: its Gram matrix A_l is
rescaled by M_l(output) / M_l(style), i.e. both Grams are compared per position,
which is the paper's formula exactly when the sizes agree.

Two variants of the style term (``LossLayers.style_loss``): ``"gram"`` with region
masks (``terms.GuidedGramStyleLoss``), and ``"sliced_wasserstein"``
(``terms.SlicedWassersteinStyleLoss``), whose several styles blend by averaging their
quantile functions (the 1-D Wasserstein barycentre).
"""

from __future__ import annotations

import functools
from typing import Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from .checks import finite_number
from .errors import OptionError
from .losses import downsample_mask, gram_matrix, resample_quantiles, sorted_projections
from .terms import (
    ContentLoss, GramStyleLoss, GuidedGramStyleLoss, SlicedWassersteinStyleLoss, Sum, TotalVariation, Weighted,
    check_extra_terms, evaluate, layers_read,
)  # fmt: skip
from .convolutions import strategy, strategy_name
from .vgg import COMPUTE_DTYPES, LAYERS, check_layers, check_pooling, vgg19_features

STYLE_LOSSES = ("gram", "sliced_wasserstein")


def check_style_loss(name) -> str:
    if name not in STYLE_LOSSES:
        raise OptionError(f"style loss must be one of {', '.join(STYLE_LOSSES)}, got {name!r}")
    return name


def check_compute_dtype(name) -> str:
    if name not in COMPUTE_DTYPES:
        raise OptionError(f"compute dtype must be one of {', '.join(COMPUTE_DTYPES)}, got {name!r}")
    return name


class LossLayers(NamedTuple):
    """Which layers the losses use, and the pooling; static (selects a compiled program)."""

    content: tuple[str, ...] = ("relu4_2",)
    style: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    pooling: str = "max"
    style_loss: str = "gram"  # or "sliced_wasserstein"
    remat: bool = False  # recompute each VGG block in the backward pass (less memory)
    compute_dtype: str = "float32"  # or "bfloat16": the network in bfloat16, losses in float32
    convolutions: str = "auto"  # "plain" or "cpu" (jaxstyle.convolutions); checked() makes "auto" concrete

    def checked(self) -> "LossLayers":
        content = check_layers(self.content, "content layer")
        style = check_layers(self.style, "style layer")
        if not content and not style:
            raise OptionError("give at least one content or style layer")
        if len(set(style)) != len(style) or len(set(content)) != len(content):
            raise OptionError("a layer is listed twice in the content or style layers")
        return LossLayers(content, style, check_pooling(self.pooling), check_style_loss(self.style_loss), bool(self.remat),
                          check_compute_dtype(self.compute_dtype), strategy_name(self.convolutions))  # fmt: skip


#: The objective's terms by name, each ``terms.Weighted``: "content", "style", "tv", "extra".
Terms = dict


def _positions(features: jax.Array) -> int:
    return features.shape[-3] * features.shape[-2]


def _output_shapes(params, layers: LossLayers, output_shape) -> dict:
    """Shapes (1, H_l, W_l, C_l) of the style layers' features for an output of ``output_shape``."""
    return jax.eval_shape(
        lambda x: vgg19_features(params, x, layers.style, pooling=layers.pooling, convolutions=layers.convolutions),
        jax.ShapeDtypeStruct((1, *output_shape), jnp.float32),
    )


@functools.partial(jax.jit, static_argnames=("layers", "output_shape"))
def _style_grams(params, style_image, layers: LossLayers, output_shape):
    """Style Grams A_l of one (H, W, 3) style image, scaled to an output of ``output_shape``."""
    features = vgg19_features(params, style_image[None], layers.style, pooling=layers.pooling,
                              convolutions=layers.convolutions)
    shapes = _output_shapes(params, layers, output_shape)
    return {
        name: gram_matrix(f)[0] * (_positions(shapes[name]) / _positions(f))
        for name, f in features.items()
    }


@functools.partial(jax.jit, static_argnames=("layers", "output_shape"))
def _style_quantiles(params, style_image, directions, layers: LossLayers, output_shape):
    """Sorted projections of one style image's features, resampled to the output's M_l."""
    features = vgg19_features(params, style_image[None], layers.style, pooling=layers.pooling,
                              convolutions=layers.convolutions)
    shapes = _output_shapes(params, layers, output_shape)
    return {
        name: resample_quantiles(sorted_projections(f, directions[name])[0], _positions(shapes[name]))
        for name, f in features.items()
    }


def projection_directions(channels: Mapping[str, int], seed: int = 0) -> dict[str, jax.Array]:
    """N_l random unit directions (N_l, N_l) per style layer (``channels``: layer → N_l),
    fixed by ``seed`` and the layer, so the loss is the same function at every step (as
    L-BFGS needs)."""
    return {
        name: _unit_columns(jax.random.normal(jax.random.fold_in(jax.random.key(seed), LAYERS.index(name)), (c, c)))
        for name, c in channels.items()
    }


def _unit_columns(a: jax.Array) -> jax.Array:
    return a / jnp.linalg.norm(a, axis=0, keepdims=True)



def layer_masks(masks: jax.Array, layers: LossLayers, params, output_shape) -> dict[str, jax.Array]:
    """Region masks (R, H, W) at the output's size, pooled to each style layer's size."""
    shapes = _output_shapes(params, layers, output_shape)
    return {name: downsample_mask(masks, shapes[name].shape[1:3]) for name in layers.style}


@functools.partial(jax.jit, static_argnames=("layers",))
def _content_features(params, content_image, layers: LossLayers):
    return vgg19_features(params, content_image[None], layers.content, pooling=layers.pooling,
                          convolutions=layers.convolutions)


def make_terms(
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
    masks: Sequence[jax.Array] | None = None,
    extra_terms: Sequence | None = None,
    place: Callable[[jax.Array], jax.Array] | None = None,
) -> Terms:
    """The loss terms, their targets computed once: {"content": α·ContentLoss,
    "style": β·(Gram, guided Gram or sliced-Wasserstein style loss), "tv": γ·TotalVariation,
    "extra": the sum of ``extra_terms`` (the user's own, ``check_extra_terms``)}.
    ``style_layer_weights`` defaults to 1/L each (w_l = 1/5).

    ``style_image`` may be a list of images: then A_l = Σ_i b_i A_l^(i), with the
    ``style_blend_weights`` b normalised to sum to 1 (default: equal). With ``masks``
    (one (H, W) array in [0, 1] per style image, the output's size) style i paints
    the region its mask weighs instead (guided Grams; the Gram loss only). ``place`` puts
    each image where the network should run on it (``sharding.spatial_placer``: its rows
    over several devices, as the run will have them); default: the default device.
    """
    place = place or (lambda image: jnp.asarray(image, jnp.float32))
    extra = check_extra_terms(extra_terms)
    content_weight = finite_number(content_weight, "content weight")
    style_weight = finite_number(style_weight, "style weight")
    tv_weight = finite_number(tv_weight, "tv weight")
    f32 = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    weights = {k: f32(v) for k, v in _layer_weights(layers.style, style_layer_weights).items()}
    content_image = jnp.asarray(content_image, jnp.float32)
    styles = [style_image] if getattr(style_image, "ndim", None) == 3 else list(style_image)
    blend = blend_weights(style_blend_weights, len(styles))
    content = {k: f[0] for k, f in _content_features(params, place(content_image), layers).items()} if layers.content else {}
    if masks is not None and layers.style:
        if layers.style_loss != "gram":
            raise OptionError("region masks work with the Gram style loss only")
        region = check_masks(masks, len(styles), content_image.shape[:2])
        per_style = [_style_grams(params, place(s), layers, content_image.shape) for s in styles]
        grams = {name: jnp.stack([g[name] for g in per_style]) for name in layers.style}
        style = GuidedGramStyleLoss(grams, layer_masks(region, layers, params, content_image.shape), weights)
    elif layers.style_loss == "sliced_wasserstein" and layers.style:
        shapes = _output_shapes(params, layers, content_image.shape)
        directions = projection_directions({name: shapes[name].shape[-1] for name in layers.style})
        quantiles = {}
        for b, s in zip(blend, styles):
            if layers.style and b > 0:
                these = _style_quantiles(params, place(s), directions, layers, content_image.shape)
                quantiles = {k: quantiles.get(k, 0.0) + b * q for k, q in these.items()}
        style = SlicedWassersteinStyleLoss(quantiles, directions, weights)
    else:
        grams = {}
        for b, s in zip(blend, styles):
            if layers.style and b > 0:
                these = _style_grams(params, place(s), layers, content_image.shape)
                grams = {k: grams.get(k, 0.0) + b * g for k, g in these.items()}
        style = GramStyleLoss(grams, weights)
    return {
        "content": Weighted(f32(content_weight), ContentLoss(content)),
        "style": Weighted(f32(style_weight), style),
        "tv": Weighted(f32(tv_weight), TotalVariation()),
        "extra": Weighted(f32(1.0), Sum(extra)),
    }


def check_masks(masks: Sequence, count: int, shape: tuple[int, int]) -> jax.Array:
    """Region masks as one (R, H, W) float32 array, checked: one per style, the output's
    size, values in [0, 1], none empty."""
    masks = list(masks)
    if len(masks) != count:
        raise OptionError(f"{len(masks)} region masks for {count} style images; give one mask per style")
    out = []
    for i, m in enumerate(masks, 1):
        m = jnp.asarray(m, jnp.float32)
        if m.shape != tuple(shape):
            raise OptionError(f"mask {i} has shape {m.shape}; masks must have the output's shape {tuple(shape)}")
        if not bool(jnp.all((m >= 0) & (m <= 1))):
            raise OptionError(f"mask {i} has values outside [0, 1]")
        if not bool(jnp.any(m > 0)):
            raise OptionError(f"mask {i} is empty (all 0): its style would paint nowhere")
        out.append(m)
    return jnp.stack(out)


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


def loss_terms(image: jax.Array, params: Mapping, terms: Terms, layers: LossLayers) -> dict:
    """Each term's unweighted value (content, style, tv, and the user's ``extra``) and the
    weighted ``total``, for one (H, W, 3) image. The network runs once, for every layer
    some term reads, with ``layers``' pooling, precision and convolutions."""
    features = _features(params, image, layers_read(terms), layers, remat=layers.remat,
                         compute_dtype=layers.compute_dtype)  # fmt: skip
    return evaluate(terms, image, features)


def _features(params, image, wanted, layers: LossLayers, **network) -> dict:
    if not wanted:
        return {}
    features = vgg19_features(params, image[None], wanted, pooling=layers.pooling, convolutions=layers.convolutions,
                              **network)  # fmt: skip
    return {name: f[0] for name, f in features.items()}


@functools.partial(jax.jit, static_argnames=("layers",))
def _style_layer_values(image, params, style, layers: LossLayers) -> dict[str, jax.Array]:
    return style.layer_values(_features(params, image, style.layers, layers))


def balanced_layer_weights(image: jax.Array, params, terms: Terms, layers: LossLayers) -> dict[str, jax.Array]:
    """Style layer weights under which every layer contributes alike at ``image``:
    w_l = S / (L · E_l(image)) with S = (1/L) Σ_l E_l(image), so that Σ_l w_l E_l equals
    the equal-weights style loss there and β keeps its meaning. A layer with E_l = 0
    (already matched) keeps 1/L."""
    values = _style_layer_values(jnp.asarray(image, jnp.float32), params, terms["style"].term, layers)
    count = len(values)
    mean = sum(values.values()) / count
    return {name: jnp.where(e > 0, mean / (count * jnp.where(e > 0, e, 1.0)), 1.0 / count).astype(jnp.float32)
            for name, e in values.items()}  # fmt: skip


def with_style_layer_weights(terms: Terms, weights: Mapping[str, jax.Array]) -> Terms:
    """``terms`` with the style term's layer weights replaced."""
    style = terms["style"]
    return {**terms, "style": style._replace(term=style.term._replace(layer_weights=dict(weights)))}


def objective(image: jax.Array, params: Mapping, terms: Terms, layers: LossLayers) -> jax.Array:
    """The weighted total loss of one (H, W, 3) image in [0, 1]; what is minimised."""
    return loss_terms(image, params, terms, layers)["total"]


class StyleObjective(NamedTuple):
    """``objective`` with its layers bound; hashable by value, so jit reuses compiled loops."""

    layers: LossLayers

    def __call__(self, image: jax.Array, params: Mapping, terms: Terms) -> jax.Array:
        return objective(image, params, terms, self.layers)

    def prepare(self, params: Mapping, *rest) -> tuple:
        """The arguments after the image, with what the convolution strategy computes from the
        weights once (``jaxstyle.convolutions``): ``minimize_batch`` calls this once per run."""
        return (strategy(self.layers.convolutions).prepare(params), *rest)
