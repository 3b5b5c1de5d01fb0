"""Loss terms: small pytrees that carry their own targets, combined by weighted sums.

A term is anything with a tuple ``layers`` (the VGG-19 layers it reads; static, part of
the pytree's structure) that is called as ``term(image, features) -> scalar``, with
``image`` (H, W, 3) in [0, 1] and ``features`` {layer: (H_l, W_l, C_l)}. Its arrays are
pytree leaves, so a batch stacks them along a leading axis and ``vmap`` maps over it,
and a sweep of a weight is a sweep of a leaf: one compiled program serves every value.

The built-in terms are the paper's (content, Gram style, total variation) and two
variants of the style term (region-guided Grams, sliced Wasserstein). ``Weighted``
scales a term, ``Sum`` adds terms; ``evaluate`` gives a named collection's parts and
weighted total. The objective (``jaxstyle.objective``) computes the features all terms
ask for in one pass of the network and hands them out.
"""

from __future__ import annotations

from typing import Any, Mapping, NamedTuple, Protocol

import jax
import jax.numpy as jnp

from .errors import OptionError
from .losses import content_loss, guided_style_layer_loss, sliced_wasserstein_layer_loss, style_layer_loss, total_variation
from .vgg import check_layers


class LossTerm(Protocol):
    """What the objective needs of a term."""

    layers: tuple[str, ...]

    def __call__(self, image: jax.Array, features: Mapping[str, jax.Array]) -> jax.Array: ...


class ContentLoss(NamedTuple):
    """Σ_l ½ Σ (F_l − P_l)² over the layers of ``targets`` (the paper's equation 1)."""

    targets: dict[str, jax.Array]  # P_l: (H_l, W_l, C_l) features of the content image

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.targets)

    def __call__(self, image, features):
        return _sum(content_loss(features[name], p) for name, p in self.targets.items())


class GramStyleLoss(NamedTuple):
    """Σ_l w_l Σ (G_l − A_l)² / (4 N_l² M_l²) (the paper's equations 4 and 5)."""

    grams: dict[str, jax.Array]  # A_l (C_l, C_l), scaled to the output's number of positions
    layer_weights: dict[str, jax.Array]  # w_l

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.grams)

    def layer_values(self, features) -> dict[str, jax.Array]:
        """E_l of each layer, unweighted."""
        return {name: style_layer_loss(features[name], a) for name, a in self.grams.items()}

    def __call__(self, image, features):
        return _weighted_layers(self.layer_values(features), self.layer_weights)


class GuidedGramStyleLoss(NamedTuple):
    """Region-guided Grams (Gatys et al. 2017): style i paints the region its mask m_i
    weighs, E_l = Σ_i π_i ¼ Σ ((Ĝ_i − Â_i) / (N_l M_l))², π_i region i's share of the mask
    mass. One all-ones mask gives ``GramStyleLoss``."""

    grams: dict[str, jax.Array]  # Â_l per region: (R, C_l, C_l)
    masks: dict[str, jax.Array]  # the region masks at each layer's size: (R, H_l, W_l)
    layer_weights: dict[str, jax.Array]

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.grams)

    def layer_values(self, features) -> dict[str, jax.Array]:
        return {name: guided_style_layer_loss(features[name], self.masks[name], a) for name, a in self.grams.items()}

    def __call__(self, image, features):
        return _weighted_layers(self.layer_values(features), self.layer_weights)


class SlicedWassersteinStyleLoss(NamedTuple):
    """Σ_l w_l SW_l: the features' 1-D distributions along fixed unit directions against
    the style's quantiles (``losses.sliced_wasserstein_layer_loss``)."""

    quantiles: dict[str, jax.Array]  # target quantiles (D, M_l)
    directions: dict[str, jax.Array]  # unit directions (C_l, D), fixed for the run
    layer_weights: dict[str, jax.Array]

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.quantiles)

    def layer_values(self, features) -> dict[str, jax.Array]:
        return {name: sliced_wasserstein_layer_loss(features[name], q, self.directions[name])
                for name, q in self.quantiles.items()}  # fmt: skip

    def __call__(self, image, features):
        return _weighted_layers(self.layer_values(features), self.layer_weights)


class TotalVariation(NamedTuple):
    """Σ (x[i+1, j] − x[i, j])² + Σ (x[i, j+1] − x[i, j])²: reads the image only."""

    @property
    def layers(self) -> tuple[str, ...]:
        return ()

    def __call__(self, image, features):
        return total_variation(image)


class Weighted(NamedTuple):
    """``weight · term``; the weight is a leaf, so batches and sweeps vary it freely."""

    weight: jax.Array
    term: Any

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.term.layers)

    def __call__(self, image, features):
        return self.weight * self.term(image, features)


class Sum(NamedTuple):
    """The sum of several terms (e.g. the user's own, ``extra_terms``)."""

    terms: tuple = ()

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(name for term in self.terms for name in term.layers))

    def __call__(self, image, features):
        return _sum(term(image, features) for term in self.terms)


def check_extra_terms(terms) -> tuple:
    """Loss terms of your own, checked. A term is a pytree (e.g. a ``flax.struct.PyTreeNode``)
    whose leaves are its targets and weights, with a static ``layers`` (the VGG-19 layers it
    reads) and ``term(image, features) -> scalar``: ``image`` (H, W, 3) in [0, 1], ``features``
    {layer: (H_l, W_l, C_l)}. Its value is added to the total as it is (weight it yourself).
    See ``examples/custom_term.py``."""
    if terms is None:
        return ()
    if not isinstance(terms, (list, tuple)):
        raise OptionError(f"extra_terms must be a list of loss terms, got {type(terms).__name__}")
    for i, term in enumerate(terms, 1):
        if not callable(term) or not isinstance(getattr(term, "layers", None), (tuple, list)):
            raise OptionError(f"extra term {i} ({type(term).__name__}) must be callable as term(image, features) "
                              "and name the VGG-19 layers it reads in a tuple 'layers' (may be empty)")  # fmt: skip
        check_layers(term.layers, f"layer of extra term {i}")
    return tuple(terms)


def layers_read(terms: Mapping[str, Weighted]) -> tuple[str, ...]:
    """Every layer some term reads, each once."""
    return Sum(tuple(terms.values())).layers


def evaluate(terms: Mapping[str, Weighted], image: jax.Array, features: Mapping[str, jax.Array]) -> dict:
    """Each named term's unweighted value (at least float32, whatever the network's
    precision) and ``"total"``: Σ weight · value."""
    parts = {name: _at_least_f32(t.term(image, features)) for name, t in terms.items()}
    parts["total"] = _sum(terms[name].weight * value for name, value in parts.items())
    return parts


def _at_least_f32(value) -> jax.Array:
    value = jnp.asarray(value)
    return value.astype(jnp.promote_types(value.dtype, jnp.float32))


def _weighted_layers(values: Mapping[str, jax.Array], weights: Mapping[str, jax.Array]) -> jax.Array:
    return _sum(weights[name] * v for name, v in values.items())


def _sum(values) -> jax.Array:
    return sum(values, jnp.zeros((), jnp.float32))
