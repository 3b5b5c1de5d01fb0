"""``stylize``: the whole method behind one call."""

from __future__ import annotations

import os
from typing import Callable, Iterable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from .errors import ImageError, OptionError
from .images import ImageLike, fit_size, load_image, to_array, to_pil
from .objective import LossLayers, StyleObjective, Targets, balanced_layer_weights, blend_weights, make_targets
from . import color
from .checks import finite_number, whole_number
from .checkpoint import load_checkpoint, problem_fingerprint
from .optimize import OptimizerConfig, Progress, check_optimizer, init_state, minimize
from .vgg import add_backward_kernels, convs_needed, min_image_side
from .weights import load_weights

#: Defaults: see README "Defaults and where they come from".
DEFAULTS = dict(
    size=512,
    iterations=500,
    optimizer="lbfgs",
    content_weight=1.0,
    style_weight="auto",
    tv_weight=0.0,
    init="content",
    pooling="max",
)
INITS = ("content", "noise", "style")

#: Named option sets; options given explicitly override them.
PRESETS = {
    # Gatys, Ecker & Bethge (2016): white-noise init, L-BFGS, average pooling, w_l = 1/5.
    "paper": dict(init="noise", optimizer="lbfgs", pooling="avg", iterations=500),
    # Adam from the content image: cheaper iterations, fewer of them.
    "fast": dict(init="content", optimizer="adam", learning_rate=0.02, iterations=200),
    # Coarse to fine over three sizes (×√2 apart): the painting's large-scale structure;
    # every style layer counting alike (with its own auto β); the iterates averaged.
    "hq": dict(init="content", optimizer="lbfgs", scales=3, iterations=150, style_layer_weights="balanced",
               average_decay=0.9),
}

#: β of ``style_weight="auto"`` for a 512×512 output, per style term. Gram: α/β = 1e-3
#: with α = 1, the paper's ratio. Gram with balanced layer weights, and sliced
#: Wasserstein: chosen by eye (see README).
AUTO_STYLE_WEIGHT_512 = {"gram": 1e3, "gram_balanced": 2e2, "sliced_wasserstein": 2e8}


def auto_style_weight(height: int, width: int, style_loss: str = "gram") -> float:
    """β = AUTO_STYLE_WEIGHT_512 · H·W / 512²: the same content/style balance at every size.

    The content term ½Σ(F−P)² sums over positions, so it grows with the pixel count, while
    each style term (E_l divided by M_l², SW_l a mean over positions) does not; β ∝ H·W
    keeps their ratio.
    """
    return AUTO_STYLE_WEIGHT_512[style_loss] * height * width / 512**2


def load_mask(mask: ImageLike, size: tuple[int, int], what: str = "mask") -> np.ndarray:
    """A region mask as an (H, W) float32 array in [0, 1] of ``size`` = (width, height):
    a greyscale image (white = inside; colour images are converted to grey) or an
    H×W array (uint8, or float in [0, 1])."""
    if isinstance(mask, np.ndarray) and mask.ndim == 2:
        if mask.dtype != np.uint8:
            if not np.issubdtype(mask.dtype, np.floating) or not np.all((mask >= 0) & (mask <= 1)):
                raise ImageError(f"{what} array must be uint8, or float with values in [0, 1]")
            mask = np.round(mask * 255).astype(np.uint8)
        grey = Image.fromarray(mask, "L")
    else:
        grey = load_image(mask, what).convert("L")
    if grey.size != tuple(size):
        grey = grey.resize(size, Image.Resampling.BILINEAR)
    return np.asarray(grey, np.float32) / 255.0


def _initial_image(init, content: np.ndarray, style: np.ndarray, seed: int) -> np.ndarray:
    h, w, _ = content.shape
    if isinstance(init, str) and init in INITS:
        if init == "content":
            return content
        if init == "style":
            return to_array(to_pil(style), (w, h))
        # White noise, as in the paper; seeded so that runs repeat exactly.
        return np.asarray(jax.random.uniform(jax.random.key(seed), (h, w, 3), jnp.float32))
    if isinstance(init, str) and not os.path.exists(init):
        raise OptionError(f"init must be one of {', '.join(INITS)}, or an image (path, PIL image, array)")
    if isinstance(init, (np.ndarray, jax.Array)) and init.shape == content.shape and jnp.issubdtype(init.dtype, jnp.floating):
        exact = np.asarray(init, np.float32)  # already the output's size: used as it is, not rounded to 8 bits
        if np.all(np.isfinite(exact)) and exact.min() >= 0 and exact.max() <= 1:
            return exact
    return to_array(load_image(init, "init image"), (w, h))


class StyleProblem(NamedTuple):
    """Everything one run needs, checked and computed: what ``solve`` takes."""

    objective: StyleObjective
    params: dict
    targets: Targets
    init_image: jax.Array  # H×W×3 in [0, 1], the output's size
    optimizer: OptimizerConfig
    iterations: int
    preserve_color: str | None = None  # "luminance"/"swap": solve puts back the content's chroma
    content_image: np.ndarray | None = None  # H×W×3, the content in colour


def _finish(image: np.ndarray, preserve_color: str | None, content: np.ndarray | None) -> np.ndarray:
    """The optimised image as the user gets it: with the content's chroma if asked."""
    if preserve_color in ("luminance", "swap"):
        return color.with_content_chroma(image, content)
    return image


def prepare(
    content: ImageLike,
    style: ImageLike,
    *,
    size: int = DEFAULTS["size"],
    iterations: int = DEFAULTS["iterations"],
    optimizer: str = DEFAULTS["optimizer"],
    content_weight: float = DEFAULTS["content_weight"],
    style_weight: float | str = DEFAULTS["style_weight"],
    tv_weight: float = DEFAULTS["tv_weight"],
    content_layers: Sequence[str] = LossLayers().content,
    style_layers: Sequence[str] = LossLayers().style,
    style_layer_weights: Mapping[str, float] | Sequence[float] | str | None = None,
    pooling: str = DEFAULTS["pooling"],
    init: str | ImageLike = DEFAULTS["init"],
    seed: int = 0,
    weights: str | os.PathLike | Mapping | None = None,
    learning_rate: float = OptimizerConfig().learning_rate,
    style_blend_weights: Sequence[float] | None = None,
    linesearch: str = OptimizerConfig().linesearch,
    preserve_color: str | None = None,
    style_scale: float = 1.0,
    shape: tuple[int, int] | None = None,
    masks: Sequence[ImageLike] | None = None,
    style_loss: str = "gram",
    average_decay: float = 0.0,
    remat: bool = False,
    compute_dtype: str = "float32",
) -> StyleProblem:
    """Check every option, load images and weights, and compute the targets.

    Raises OptionError, ImageError or WeightsError before any optimisation starts.
    The options are those of ``stylize``; ``shape=(height, width)`` fixes the output's
    exact size instead (``size`` then only scales the style images).
    """
    size = whole_number(size, "size (the output's longer side in px)", minimum=1)
    iterations = whole_number(iterations, "iterations", minimum=0)
    seed = whole_number(seed, "seed", minimum=0)
    layers = LossLayers(tuple(content_layers), tuple(style_layers), pooling, style_loss, remat, compute_dtype).checked()
    config = check_optimizer(OptimizerConfig(name=optimizer, learning_rate=learning_rate, linesearch=linesearch,
                                             average_decay=average_decay))  # fmt: skip
    balanced = isinstance(style_layer_weights, str)
    if balanced and style_layer_weights != "balanced":
        raise OptionError(f"style_layer_weights must be numbers, a mapping, None or 'balanced', got {style_layer_weights!r}")

    if preserve_color is not None and preserve_color not in color.MODES:
        raise OptionError(f"preserve_color must be None or one of {', '.join(color.MODES)}, got {preserve_color!r}")
    style_size = max(1, round(size * finite_number(style_scale, "style scale", positive=True)))
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    if masks is not None and style_blend_weights is not None:
        raise OptionError("give region masks or style blend weights, not both: with masks each style paints its region")
    blend = blend_weights(style_blend_weights, len(styles))
    content_pil = load_image(content, "content image")
    if shape is None:
        content_arr = to_array(content_pil, fit_size(*content_pil.size, size))
    else:
        h, w = (whole_number(v, "output shape", minimum=1) for v in shape)
        content_arr = to_array(content_pil, (w, h))
    named = [("content image", content_arr)]
    for i, s in enumerate(styles):
        what = "style image" if len(styles) == 1 else f"style image {i + 1}"
        pil = load_image(s, what)
        named.append((what, to_array(pil, fit_size(*pil.size, style_size))))
    needed = min_image_side(layers.content + layers.style)
    for what, arr in named:
        if min(arr.shape[:2]) < needed:
            raise ImageError(
                f"the {what} is {arr.shape[1]}×{arr.shape[0]} px after resizing; the chosen "
                f"layers need at least {needed} px on each side: raise size or use shallower layers"
            )
    style_arrs = [arr for _, arr in named[1:]]
    color_content = content_arr
    if preserve_color == "histogram":
        style_arrs = [color.match_color_statistics(s, content_arr) for s in style_arrs]
    elif preserve_color == "luminance":
        style_arrs = [color.match_luminance(s, content_arr) for s in style_arrs]
        content_arr = color.grey(content_arr)
    x0 = _initial_image(init, content_arr, style_arrs[0], seed)
    if preserve_color == "luminance":
        x0 = color.grey(x0)  # an image init (a coarser scale's result, say) joins the grey transfer
    region_masks = None
    if masks is not None:
        h, w = content_arr.shape[:2]
        region_masks = [load_mask(m, (w, h), f"mask {i}") for i, m in enumerate(masks, 1)]
    if isinstance(style_weight, str):
        if style_weight != "auto":
            raise OptionError(f"style_weight must be a number ≥ 0 or 'auto', got {style_weight!r}")
        kind = "gram_balanced" if balanced and layers.style_loss == "gram" else layers.style_loss
        style_weight = auto_style_weight(*content_arr.shape[:2], kind)

    params = vgg_params(weights, layers.content + layers.style)
    targets = make_targets(
        params, content_arr, style_arrs, layers,
        content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight,
        style_layer_weights=None if balanced else style_layer_weights, style_blend_weights=blend, masks=region_masks,
    )  # fmt: skip
    if balanced and layers.style:
        targets = targets._replace(style_layer_weights=balanced_layer_weights(x0, params, targets, layers))
    return StyleProblem(
        StyleObjective(layers), params, targets, jnp.asarray(x0), config, int(iterations),
        preserve_color, color_content,
    )  # fmt: skip


def solve(
    problem: StyleProblem,
    *,
    callback: Callable[[Progress], None] | None = None,
    chunk_size: int = 10,
    resume: str | os.PathLike | None = None,
) -> Image.Image:
    """Run the optimisation of a prepared problem; return the image.

    ``resume``: a checkpoint of the same problem (``save_checkpoint``, or the CLI's
    ``--checkpoint``) to continue from; the result is the one an uninterrupted run gives.
    If the loss becomes NaN or infinite the run stops with a ``NonFiniteLossWarning``
    and the last image whose loss was finite is returned.
    """
    start = None
    if resume is not None:
        template = init_state(problem.init_image, problem.optimizer)
        start = load_checkpoint(resume, template, problem_fingerprint(problem))
    image, _ = minimize(
        problem.objective, (problem.params, problem.targets), problem.init_image,
        problem.iterations, problem.optimizer, chunk_size=chunk_size, callback=callback, resume=start,
    )  # fmt: skip
    return to_pil(_finish(np.asarray(image), problem.preserve_color, problem.content_image))


def stylize(
    content: ImageLike,
    style: ImageLike,
    *,
    callback: Callable[[Progress], None] | None = None,
    chunk_size: int = 10,
    **options,
) -> Image.Image:
    """Paint ``content`` in the style of ``style`` (Gatys, Ecker & Bethge, 2016).

    ``content``/``style``/``init`` accept a path, a PIL image or an H×W×3 array
    (uint8, or float in [0, 1]). ``style`` may be a list of images: their style targets
    blend, A_l = Σ b_i A_l^(i), with ``style_blend_weights`` b (normalised; default
    equal). Options (defaults in ``DEFAULTS``):

    - ``size``: the output's longer side in px (the content's aspect ratio is kept);
      the style image is resized to the same longer side.
    - ``iterations``, ``optimizer`` ("lbfgs" or "adam"), ``learning_rate`` (Adam's),
      ``linesearch`` (L-BFGS's: "zoom" or "backtracking").
    - ``content_weight`` α, ``style_weight`` β, ``tv_weight`` γ. ``style_weight="auto"``
      is ``auto_style_weight(H, W)``: α/β = 1e-3 at 512×512, the same balance at any size.
    - ``content_layers``, ``style_layers``, ``style_layer_weights`` (default 1/L each;
      "balanced": every layer contributes alike at the initial image, see
      ``objective.balanced_layer_weights``), ``pooling`` ("max" or "avg").
    - ``average_decay``: return the exponential moving average of the iterates with
      this decay (``optimize.IterateAverage``; default 0, the last iterate).
    - ``masks``: one region mask per style image (guided Grams); ``style_loss``:
      "gram" or "sliced_wasserstein".
    - ``remat``: recompute each VGG block in the backward pass (less memory, more
      time); ``compute_dtype``: "bfloat16" runs VGG in bfloat16 (targets, losses and
      the image stay float32).
    - ``init``: "content", "noise" (white noise from ``seed``), "style", or an image.
    - ``preserve_color``: None, "luminance", "histogram" or "swap" (see ``jaxstyle.color``).
    - ``style_scale``: the style images' size relative to the output (default 1).
    - ``weights``: a converted weights file, loaded params, or None to locate them
      (``JAXSTYLE_WEIGHTS``, the cache, then a fetch).

    - ``preset``: "paper", "fast" or "hq" (``PRESETS``); explicit options override it.
    - ``scales``: coarse-to-fine, the number of sizes ×√2 apart ending at ``size``
      (default 1: ``size`` alone); ``iterations`` run at each.

    ``callback(Progress)`` is called every ``chunk_size`` iterations (counting anew at
    each scale). Returns the stylized RGB image.
    """
    preset = options.pop("preset", None)
    if preset is not None:
        if preset not in PRESETS:
            raise OptionError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        options = {**PRESETS[preset], **options}
    scales = options.pop("scales", 1)
    init, params = coarse_to_fine_init(content, style, scales=scales, callback=callback, chunk_size=chunk_size, **options)
    if init is not None:
        options.update(init=init, weights=params)  # the weights loaded once, for every scale
    return solve(prepare(content, style, **options), callback=callback, chunk_size=chunk_size)


def vgg_params(weights: str | os.PathLike | Mapping | None, layers: Iterable[str] | None = None) -> dict:
    """Weights ready for the loop: loaded if a path (or located if None), on the device,
    prepared by ``add_backward_kernels``. With ``layers``, convolutions deeper than
    the deepest of them are left out (they would only hold memory). Already-prepared
    params pass through unchanged, so a caller running several problems (scales,
    batch items) loads and prepares them once."""
    params = weights if isinstance(weights, Mapping) else load_weights(weights)
    layers = tuple(layers or ())
    if layers:
        needed = set(convs_needed(layers))
        params = {name: value for name, value in params.items() if not name.startswith("conv") or name in needed}
    return add_backward_kernels(jax.tree.map(jnp.asarray, params))


def scale_sizes(size: int, scales: int) -> list[int]:
    """Coarse-to-fine output sizes: ``scales`` of them, ×√2 apart, the last ``size``."""
    return [max(1, round(size / 2 ** ((scales - 1 - i) / 2))) for i in range(scales)]


def coarse_to_fine_init(
    content: ImageLike, style: ImageLike, *, scales: int = 1, callback=None, chunk_size: int = 10, **options
) -> tuple[Image.Image | None, dict | None]:
    """Run every scale but the finest; return its result, to initialise the finest,
    and the prepared weights, to reuse there. (None, None) when ``scales`` is 1.

    Scale k starts from scale k−1's result, upsampled (Lanczos); the style images are
    resized for each scale as for any size. The weights are loaded once.
    """
    scales = whole_number(scales, "scales", minimum=1)
    size = options.pop("size", DEFAULTS["size"])
    image = None
    for coarse in scale_sizes(size, scales)[:-1]:
        if image is not None:
            options["init"] = image
        problem = prepare(content, style, size=coarse, **options)
        options["weights"] = problem.params
        image = solve(problem, callback=callback, chunk_size=chunk_size)
    return image, options.get("weights") if image is not None else None
