"""``stylize`` and ``stylize_batch``: the whole method behind one call.

One pipeline serves one image and many: a ``StyleProblem`` holds K items (K = 1 for
``stylize``) whose loss terms are stacked along a leading axis, and ``solve`` runs them as
one compiled, vmapped program, the batch axis sharded over the devices. Every option
works for every item: presets, coarse to fine, masks, colour preservation, blends,
averaged iterates, checkpoints (the whole batch's state) and sweeps.

    stylize_batch(content, [style_a, style_b, ...])        one content × K styles
    stylize_batch([content_a, content_b, ...], style)      K contents × one style
    stylize_batch([content_a, ...], [style_a, ...])        K pairs
    stylize_batch(content, [[style_a, style_b]], style_blend_weights=[[3, 1]])   blends per item
    stylize_batch(content, style, sweep={"style_weight": [1e2, 1e3, 1e4]})   one option, K values

Every item gets the output shape of the first content (the others are resized to it,
aspect ratio not kept), so that the batch is one array and one program.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec
from PIL import Image

from .errors import ImageError, OptionError
from .images import ImageLike, fit_size, load_image, to_array, to_pil
from .objective import (
    LossLayers, StyleObjective, Terms, balanced_layer_weights, blend_weights, make_terms, with_style_layer_weights,
)  # fmt: skip
from . import color
from .checks import whole_number
from .config import DEFAULTS, INITS, NAMES, Options, option_docs, resolve
from .checkpoint import Checkpoint, load_checkpoint, problem_fingerprint
from .optimize import OptimizerConfig, Progress, check_optimizer, init_state, minimize_batch
from .processes import ProcessShare, batch_share, gathered, to_global, to_local
from .sharding import batch_specs, check_spatial_parts, place_batch, run_mesh, spatial_placer
from .vgg import convs_needed, min_image_side
from .weights import load_weights

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


#: Options a sweep may vary: they are leaves of the loss terms, so one program serves every value.
SWEEPABLE = ("content_weight", "style_weight", "tv_weight", "seed")


class Item(NamedTuple):
    """One item of a problem, unbatched: what its objective is evaluated with."""

    objective: StyleObjective
    params: dict
    terms: Terms  # the loss terms, each carrying its targets (jaxstyle.terms)
    init_image: jax.Array  # H×W×3
    content_image: np.ndarray  # H×W×3, the content in colour


class _PreparedItem(NamedTuple):
    """One item from ``_prepare_item``, with the settings every item of its batch shares."""

    item: Item
    optimizer: OptimizerConfig
    iterations: int
    preserve_color: str | None
    spatial_parts: int


class StyleProblem(NamedTuple):
    """Everything a run of K items needs, checked and computed: what ``solve`` takes.

    The items share the layers, the network, the optimizer, the iteration count and the
    output shape; every leaf of ``terms`` has a leading axis K, so does everything per item."""

    objective: StyleObjective
    params: dict
    terms: Terms  # every leaf with a leading axis K
    init_images: jax.Array  # (K, H, W, 3) in [0, 1], the output's size
    optimizer: OptimizerConfig
    iterations: int
    preserve_color: str | None = None  # "luminance"/"swap": solve puts back the content's chroma
    content_images: np.ndarray | None = None  # (K, H, W, 3), the contents in colour
    spatial_parts: int = 1  # each image's rows over this many devices (``jaxstyle.sharding``)
    share: ProcessShare | None = None  # in a multi-process run: which of the batch's items these are

    @property
    def indices(self) -> range:
        """The batch indices of this problem's own items (all K, except in a multi-process run)."""
        return self.share.indices if self.share is not None else range(self.size)

    @property
    def size(self) -> int:
        """K, the number of items."""
        return int(self.init_images.shape[0])

    @property
    def init_image(self) -> jax.Array:
        """The first item's start image (a one-item problem's)."""
        return self.init_images[0]

    def item(self, k: int = 0) -> Item:
        """Item ``k`` on its own: ``item.objective(x, item.params, item.terms)`` is its loss."""
        return Item(self.objective, self.params, jax.tree.map(lambda a: a[k], self.terms), self.init_images[k],
                    None if self.content_images is None else self.content_images[k])  # fmt: skip

    def finished(self, images) -> list[np.ndarray]:
        """The optimised images (K, H, W, 3) as the user gets them (the content's chroma put back if asked)."""
        images = [np.asarray(image) for image in images]
        if self.preserve_color in ("luminance", "swap"):
            return [color.with_content_chroma(image, c) for image, c in zip(images, self.content_images)]
        return images


def _prepare_item(content: ImageLike, style: ImageLike, options: Options, shape: tuple[int, int] | None = None) -> _PreparedItem:
    """One item, its options checked (``Options.checked``) and its terms computed, with the
    settings its batch shares. ``shape=(height, width)`` fixes the output's exact size."""
    o = options.checked()
    # The CPU fast paths would defeat XLA's partitioner: a split image takes XLA's own convolutions.
    convolutions = "plain" if o.spatial_parts > 1 and o.convolutions == "auto" else o.convolutions
    layers = LossLayers(o.content_layers, o.style_layers, o.pooling, o.style_loss, o.remat, o.compute_dtype,
                        convolutions).checked()  # fmt: skip
    config = check_optimizer(OptimizerConfig(name=o.optimizer, learning_rate=o.learning_rate, linesearch=o.linesearch,
                                             average_decay=o.average_decay, tolerance=o.tolerance))  # fmt: skip
    balanced = o.style_layer_weights == "balanced"
    size, preserve_color = o.size, o.preserve_color
    style_size = max(1, round(size * o.style_scale))
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    blend = blend_weights(o.style_blend_weights, len(styles))
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
        check_spatial_parts(o.spatial_parts, arr.shape[0], layers.content + layers.style)
    place = spatial_placer(o.spatial_parts)
    style_arrs = [arr for _, arr in named[1:]]
    color_content = content_arr
    if preserve_color == "histogram":
        style_arrs = [color.match_color_statistics(s, content_arr) for s in style_arrs]
    elif preserve_color == "luminance":
        style_arrs = [color.match_luminance(s, content_arr) for s in style_arrs]
        content_arr = color.grey(content_arr)
    x0 = _initial_image(o.init, content_arr, style_arrs[0], o.seed)
    if preserve_color == "luminance":
        x0 = color.grey(x0)  # an image init (a coarser scale's result, say) joins the grey transfer
    region_masks = None
    if o.masks is not None:
        h, w = content_arr.shape[:2]
        region_masks = [load_mask(m, (w, h), f"mask {i}") for i, m in enumerate(o.masks, 1)]
    style_weight = o.style_weight
    if style_weight == "auto":
        kind = "gram_balanced" if balanced and layers.style_loss == "gram" else layers.style_loss
        style_weight = auto_style_weight(*content_arr.shape[:2], kind)

    params = vgg_params(o.weights, layers.content + layers.style)
    terms = make_terms(
        params, content_arr, style_arrs, layers,
        content_weight=o.content_weight, style_weight=style_weight, tv_weight=o.tv_weight,
        style_layer_weights=None if balanced else o.style_layer_weights, style_blend_weights=blend, masks=region_masks,
        extra_terms=o.extra_terms, place=place,
    )  # fmt: skip
    if balanced and layers.style:
        at = x0 if place is None else place(x0)
        terms = with_style_layer_weights(terms, balanced_layer_weights(at, params, terms, layers))
    item = Item(StyleObjective(layers), params, terms, jnp.asarray(x0), color_content)
    return _PreparedItem(item, config, o.iterations, preserve_color, o.spatial_parts)


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _items(contents, styles, sweep: Mapping[str, Sequence] | None, options: Options) -> list[tuple]:
    """(content, style or list of styles to blend, options) for each item."""
    contents, styles = _as_list(contents), _as_list(styles)
    if not contents or not styles:
        raise OptionError("give at least one content and one style image")
    if sweep:
        if len(contents) != 1 or len(styles) != 1:
            raise OptionError("a sweep takes one content and one style image")
        if not isinstance(sweep, Mapping):
            raise OptionError(f"sweep must map option names to lists of values, got {type(sweep).__name__}")
        unknown = set(sweep) - set(SWEEPABLE)
        if unknown:
            raise OptionError(f"cannot sweep {sorted(unknown)}; a sweep varies one of {', '.join(SWEEPABLE)}")
        lengths = {len(_as_list(v)) for v in sweep.values()}
        if len(lengths) != 1 or 0 in lengths:
            raise OptionError("every swept option needs the same number (≥ 1) of values")
        (k,) = lengths
        return [(contents[0], styles[0], options.replace(**{key: _as_list(v)[i] for key, v in sweep.items()})) for i in range(k)]
    if len(contents) == 1:
        contents = contents * len(styles)
    elif len(styles) == 1:
        styles = styles * len(contents)
    elif len(contents) != len(styles):
        raise OptionError(
            f"got {len(contents)} content and {len(styles)} style images: give one content and K styles, "
            "K contents and one style, or K of each (taken as pairs)"
        )
    return [(c, s, options) for c, s in zip(contents, styles)]


def _per_item(value, k: int, count: int, what: str):
    """A per-item option: one value for every item, or (a list of lists) one per item."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (list, tuple)) for v in value):
        if len(value) != count:
            raise OptionError(f"{len(value)} lists of {what} for {count} items; give one list per item")
        return list(value[k])
    return value


def prepare_batch(
    contents: ImageLike | Sequence,
    styles: ImageLike | Sequence,
    *,
    sweep: Mapping[str, Sequence] | None = None,
    inits: Sequence | None = None,
    devices: Sequence[jax.Device] | None = None,
    **options,
) -> StyleProblem:
    """Check everything and compute each item's targets; the options are ``stylize``'s.

    ``styles``: one style per item; an item's style may itself be a list of images that
    blend (``style_blend_weights`` as a list per item, or one list for all), each with its
    own region mask (``masks``: a list per item, or one list for all). ``inits``: one
    start image per item (coarse to fine and resumed runs use it). Raises OptionError,
    ImageError or WeightsError before any optimisation starts. ``shape=(height, width)``
    fixes the output's exact size instead of ``size``.

    In a multi-process run (``jaxstyle.processes.start_processes``) each process prepares
    only its own items, its share of the mesh of ``devices`` (default: every process's),
    and ``inits`` are still indexed over the whole batch (only this process's are read).
    """
    if options.get("preset") is not None or options.get("scales", 1) != 1:
        raise OptionError("presets and scales are stylize's and stylize_batch's; prepare_batch takes plain options")
    options.pop("preset", None)
    options.pop("scales", None)
    shape = options.pop("shape", None)
    items = _items(contents, styles, sweep, DEFAULTS.replace(**options))
    first_options = items[0][2].checked()
    share = batch_share(len(items), devices, first_options.spatial_parts)
    # A process with no item of its own computes a copy of the last one: every process holds rows.
    chosen = share.members if share is not None else range(len(items))
    if shape is None and 0 not in chosen:  # the batch's shape is its first item's, wherever that is
        shape = fit_size(*load_image(items[0][0], "content image").size, first_options.size)[::-1]
    prepared: list[_PreparedItem] = []
    for k in chosen:
        content, style, item_options = items[k]
        changes = {}
        for name, what in (("style_blend_weights", "style blend weights"), ("masks", "masks")):
            if getattr(item_options, name) is not None:
                changes[name] = _per_item(getattr(item_options, name), k, len(items), what)
        if inits is not None and inits[k] is not None:  # (a process computing a copy may lack its start)
            changes["init"] = inits[k]
        if prepared:  # every item takes the first one's shape, and its weights: one array, one program
            shape = tuple(prepared[0].item.init_image.shape[:2])
            changes["weights"] = prepared[0].item.params
        prepared.append(_prepare_item(content, style, item_options.replace(**changes), shape))
    first, items = prepared[0], [p.item for p in prepared]
    stack = lambda *leaves: jnp.stack(leaves)  # noqa: E731
    return StyleProblem(
        first.item.objective, first.item.params, jax.tree.map(stack, *[i.terms for i in items]),
        jnp.stack([i.init_image for i in items]), first.optimizer, first.iterations,
        first.preserve_color, np.stack([i.content_image for i in items]), first.spatial_parts, share,
    )  # fmt: skip


def prepare(content: ImageLike, style: ImageLike, **options) -> StyleProblem:
    """A one-item problem: ``prepare_batch`` of one content and one style (or a list of
    styles that blend). Raises OptionError, ImageError or WeightsError before any
    optimisation starts."""
    return prepare_batch([content], [style], **options)


def _pad(tree: Any, total: int) -> Any:
    """Repeat each leaf's last item along axis 0 up to ``total`` items."""

    def pad(a):
        extra = total - a.shape[0]
        return a if extra == 0 else jnp.concatenate([a, jnp.repeat(a[-1:], extra, axis=0)])

    return jax.tree.map(pad, tree)


def solve(
    problem: StyleProblem,
    *,
    callback: Callable[[Progress], None] | None = None,
    chunk_size: int = 10,
    resume: str | os.PathLike | Checkpoint | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> list[Image.Image | None]:
    """Run the optimisation of a prepared problem; return its K images.

    The batch axis is sharded over ``devices`` (default: all of ``jax.devices()``; the
    batch is padded to a multiple of their count with copies of the last item, and the
    padding dropped). With ``problem.spatial_parts`` = P > 1 each image's rows are split
    over P devices too: a ("batch", "space") mesh of len(devices) / P × P
    (``jaxstyle.sharding``). ``resume``: a checkpoint of the same problem (``save_checkpoint``,
    or the CLI's ``--checkpoint``) to continue from; the result is the one an
    uninterrupted run gives. An item whose loss becomes NaN or infinite stops alone with
    a ``NonFiniteLossWarning`` and keeps the last image whose loss was finite.

    In a multi-process run every process calls it with its own part of the batch
    (``prepare_batch`` gave it ``problem.share``): the K images come back as None except
    this process's own, and ``callback`` sees this process's items (their losses, images
    and state: what its checkpoint keeps).
    """
    devices = list(devices) if devices is not None else jax.devices()
    mesh = run_mesh(devices, problem.spatial_parts)
    shape, count, share = tuple(problem.init_images.shape[1:3]), problem.size, problem.share
    if share is None:
        rows = -(-count // mesh.shape["batch"]) * mesh.shape["batch"]
        first = 0
        to_devices = lambda tree, image_shape=None: place_batch(_pad(tree, rows), mesh, image_shape)  # noqa: E731
        from_devices = lambda tree: tree  # noqa: E731
        params = jax.device_put(problem.params, NamedSharding(mesh, PartitionSpec()))
    else:  # this process's rows of global arrays
        rows, first = share.block, share.first
        to_devices = lambda tree, image_shape=None: to_global(_pad(tree, rows), mesh, batch_specs(tree, image_shape))  # noqa: E731
        from_devices = lambda tree: to_local(tree, mesh, batch_specs(tree, shape))  # noqa: E731
        params = to_global(problem.params, mesh, jax.tree.map(lambda _: PartitionSpec(), problem.params))
    state, done = init_state(problem.init_images, problem.optimizer), 0
    if resume is not None:
        state, done = load_checkpoint(resume, state, problem_fingerprint(problem))
    mine = lambda tree: jax.tree.map(lambda a: a if a.shape[0] == count else a[:count], from_devices(tree))  # noqa: E731

    def progress(p: Progress):
        if callback is not None:
            callback(Progress(p.iteration, p.iterations, p.losses[first : first + count], mine(p.images), mine(p.state)))

    images, _, _ = minimize_batch(
        problem.objective, (params,), (to_devices(problem.terms),), problem.init_images, problem.iterations,
        problem.optimizer, chunk_size=chunk_size, callback=progress, resume=(to_devices(state, shape), done), to_host=gathered,
    )  # fmt: skip
    images = images[first : first + count] if isinstance(images, np.ndarray) else mine(images)
    finished = [to_pil(image) for image in problem.finished(np.asarray(images))]
    if share is None:
        return finished
    return [finished[k - share.first] if k in share.indices else None for k in range(share.count)]


def stylize_batch(
    contents: ImageLike | Sequence,
    styles: ImageLike | Sequence,
    *,
    sweep: Mapping[str, Sequence] | None = None,
    callback: Callable[[Progress], None] | None = None,
    chunk_size: int = 10,
    devices: Sequence[jax.Device] | None = None,
    **options,
) -> list[Image.Image]:
    """Stylize K items as one vmapped, sharded program; returns their K images in order.

    One content × K styles, K contents × one style, K (content, style) pairs, or one pair
    with ``sweep={option: [K values]}`` for an option in ``SWEEPABLE``. An item's style may
    be a list of images that blend. The options are ``stylize``'s, presets and coarse to
    fine included. Each image is what ``stylize`` gives for that item alone (equal up to
    float rounding: batched convolutions may sum in another order). In a multi-process run
    (``jaxstyle.processes.start_processes``) every process makes the same call and gets its
    own items' images, None for the others'.
    """
    options = with_preset(options)
    scales = options.pop("scales", 1)
    inits, params = coarse_to_fine_inits(contents, styles, scales=scales, sweep=sweep, callback=callback,
                                         chunk_size=chunk_size, devices=devices, **options)  # fmt: skip
    if inits is not None:
        options["weights"] = params  # the weights loaded once, for every scale
    problem = prepare_batch(contents, styles, sweep=sweep, inits=inits, devices=devices, **options)
    return solve(problem, callback=callback, chunk_size=chunk_size, devices=devices)


def with_preset(options: Mapping) -> dict:
    """``options`` over their preset's (``PRESETS``), or over the defaults: explicit options win."""
    options = dict(options)
    return resolve(options.pop("preset", None), **options).as_dict()


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
    equal). ``preset`` ("paper", "fast", "hq": ``PRESETS``) sets several options at once;
    the options given explicitly override it.

    ``callback(Progress)`` is called every ``chunk_size`` iterations (counting anew at
    each scale). Returns the stylized RGB image. It is ``stylize_batch`` of one item.

    The options are the fields of ``jaxstyle.config.Options`` (listed below, from there).
    """
    return stylize_batch([content], [style], callback=callback, chunk_size=chunk_size, **options)[0]


if stylize.__doc__:  # None under python -OO
    stylize.__doc__ += option_docs()


def vgg_params(weights: str | os.PathLike | Mapping | None, layers: Iterable[str] | None = None) -> dict:
    """Weights ready for the loop: loaded if a path (or located if None), on the device.
    With ``layers``, convolutions deeper than the deepest of them are left out (they would
    only hold memory). The params stay the plain pytree whatever the backend: the
    convolution strategy prepares what it needs inside the compiled loop. Params already
    on the device pass through, so a caller running several problems loads them once."""
    params = weights if isinstance(weights, Mapping) else load_weights(weights)
    layers = tuple(layers or ())
    if layers:
        needed = set(convs_needed(layers))
        params = {name: value for name, value in params.items() if not name.startswith("conv") or name in needed}
    return jax.tree.map(jnp.asarray, params)


def scale_sizes(size: int, scales: int) -> list[int]:
    """Coarse-to-fine output sizes: ``scales`` of them, ×√2 apart, the last ``size``."""
    return [max(1, round(size / 2 ** ((scales - 1 - i) / 2))) for i in range(scales)]


def coarse_to_fine_inits(
    contents, styles, *, scales: int = 1, sweep=None, callback=None, chunk_size: int = 10, devices=None, **options
) -> tuple[list[Image.Image] | None, dict | None]:
    """Run every scale but the finest; return its K results, to start the finest from,
    and the prepared weights, to reuse there. (None, None) when ``scales`` is 1.

    Scale k starts from scale k−1's results, upsampled (Lanczos); the style images are
    resized for each scale as for any size. The weights are loaded once.
    """
    scales = whole_number(scales, "scales", minimum=1)
    size = options.pop("size", DEFAULTS.size)
    images = None
    for coarse in scale_sizes(size, scales)[:-1]:
        problem = prepare_batch(contents, styles, sweep=sweep, inits=images, size=coarse, devices=devices, **options)
        options["weights"] = problem.params
        images = solve(problem, callback=callback, chunk_size=chunk_size, devices=devices)
    return images, options.get("weights") if images is not None else None
