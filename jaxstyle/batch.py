"""Many stylizations as one compiled program: vmapped over a batch, sharded over devices.

    stylize_batch(content, [style_a, style_b, ...])        one content × K styles
    stylize_batch([content_a, content_b, ...], style)      K contents × one style
    stylize_batch([content_a, ...], [style_a, ...])        K pairs
    stylize_batch(content, style, sweep={"style_weight": [1e2, 1e3, 1e4]})   one option, K values

Every item gets the output shape of the first content (the others are resized to it,
aspect ratio not kept), so that the batch is one array and one program. The targets
of each item are computed on their own, stacked, and the optimisation loop is
``run_chunk`` vmapped over the batch, the batch axis sharded over the devices of a
one-axis mesh (padded to a multiple of the device count with copies of the last item,
dropped at the end). Nothing here names a platform: CPU, GPU and TPU run the same code.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from PIL import Image

from .api import _finish, prepare, vgg_params
from .errors import OptionError
from .images import ImageLike, to_pil
from .objective import StyleObjective, Targets
from . import optimize
from .optimize import OptimizerConfig, Progress

#: Options a sweep may vary: they live in the targets, so one program serves every value.
SWEEPABLE = ("content_weight", "style_weight", "tv_weight", "seed")


class StyleBatch(NamedTuple):
    """A batch of problems sharing layers, optimizer, iterations and output shape."""

    objective: StyleObjective
    params: dict
    targets: Targets  # every leaf with a leading batch axis
    init_images: jax.Array  # (B, H, W, 3) in [0, 1]
    optimizer: OptimizerConfig
    iterations: int
    preserve_color: str | None = None
    content_images: np.ndarray | None = None  # (B, H, W, 3), the contents in colour


BatchProgress = Progress  # one progress type for single runs and batches


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _items(contents, styles, sweep: Mapping[str, Sequence] | None, options: dict) -> list[tuple]:
    contents, styles = _as_list(contents), _as_list(styles)
    if not contents or not styles:
        raise OptionError("give at least one content and one style image")
    if sweep:
        if len(contents) != 1 or len(styles) != 1:
            raise OptionError("a sweep takes one content and one style image")
        unknown = set(sweep) - set(SWEEPABLE)
        if unknown:
            raise OptionError(f"cannot sweep {sorted(unknown)}; a sweep varies one of {', '.join(SWEEPABLE)}")
        lengths = {len(_as_list(v)) for v in sweep.values()}
        if len(lengths) != 1 or 0 in lengths:
            raise OptionError("every swept option needs the same number (≥ 1) of values")
        (k,) = lengths
        return [(contents[0], styles[0], {**options, **{key: _as_list(v)[i] for key, v in sweep.items()}}) for i in range(k)]
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


def prepare_batch(contents, styles, *, sweep: Mapping[str, Sequence] | None = None, **options) -> StyleBatch:
    """Check everything and compute each item's targets; the options are ``stylize``'s."""
    for name in ("scales", "preset", "masks"):
        if options.get(name) not in (None, 1):
            raise OptionError(f"stylize_batch does not take {name} yet; run those items with stylize")
        options.pop(name, None)
    weights = options.pop("weights", None)
    params = vgg_params(weights)  # loaded and prepared once for every item
    items = _items(contents, styles, sweep, options)
    problems = [prepare(items[0][0], items[0][1], weights=params, **items[0][2])]
    shape = tuple(problems[0].init_image.shape[:2])
    problems += [prepare(c, s, weights=params, **{**o, "shape": shape}) for c, s, o in items[1:]]
    stack = lambda *leaves: jnp.stack(leaves)  # noqa: E731
    first = problems[0]
    return StyleBatch(
        first.objective, first.params, jax.tree.map(stack, *[p.targets for p in problems]),
        jnp.stack([p.init_image for p in problems]), first.optimizer, first.iterations,
        first.preserve_color, np.stack([p.content_image for p in problems]),
    )  # fmt: skip


def _pad(tree: Any, total: int) -> Any:
    """Repeat each leaf's last item along axis 0 up to ``total`` items."""

    def pad(a):
        extra = total - a.shape[0]
        return a if extra == 0 else jnp.concatenate([a, jnp.repeat(a[-1:], extra, axis=0)])

    return jax.tree.map(pad, tree)


def minimize_batch(
    batch: StyleBatch,
    *,
    chunk_size: int = 10,
    callback: Callable[[Progress], None] | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> tuple[np.ndarray, list[list[float]]]:
    """Run every item of ``batch``; returns the (B, H, W, 3) images and each item's losses.

    An item whose loss becomes non-finite stops alone (its last finite image is kept,
    with a ``NonFiniteLossWarning``); the others go on.
    """
    count = batch.init_images.shape[0]
    devices = list(devices) if devices is not None else jax.devices()
    total = -(-count // len(devices)) * len(devices)
    mesh = Mesh(np.asarray(devices), ("batch",))
    along, whole = NamedSharding(mesh, PartitionSpec("batch")), NamedSharding(mesh, PartitionSpec())
    targets = jax.device_put(_pad(batch.targets, total), along)
    params = jax.device_put(batch.params, whole)

    def progress(p: Progress):
        if callback is not None:
            callback(p._replace(losses=p.losses[:count], images=p.images[:count]))

    images, history, _ = optimize.minimize_batch(
        batch.objective, (params,), (targets,), _pad(batch.init_images, total), batch.iterations, batch.optimizer,
        chunk_size=chunk_size, callback=progress, place=lambda state: jax.device_put(state, along),
    )  # fmt: skip
    return np.asarray(images)[:count], history[:count]


def solve_batch(batch: StyleBatch, *, callback=None, chunk_size: int = 10, devices=None) -> list[Image.Image]:
    images, _ = minimize_batch(batch, chunk_size=chunk_size, callback=callback, devices=devices)
    contents = batch.content_images if batch.content_images is not None else [None] * len(images)
    return [to_pil(_finish(image, batch.preserve_color, c)) for image, c in zip(images, contents)]


def stylize_batch(
    contents: ImageLike | Sequence[ImageLike],
    styles: ImageLike | Sequence[ImageLike],
    *,
    sweep: Mapping[str, Sequence] | None = None,
    callback: Callable[[BatchProgress], None] | None = None,
    chunk_size: int = 10,
    devices: Sequence[jax.Device] | None = None,
    **options,
) -> list[Image.Image]:
    """Stylize many items as one vmapped, sharded program; the options are ``stylize``'s.

    One content × K styles, K contents × one style, K (content, style) pairs, or one
    pair with ``sweep={option: [K values]}`` for an option in ``SWEEPABLE``. Returns
    the K images in order, each what ``stylize`` gives for that item alone (equal up
    to float rounding: the batched convolutions may sum in another order).
    """
    batch = prepare_batch(contents, styles, sweep=sweep, **options)
    return solve_batch(batch, callback=callback, chunk_size=chunk_size, devices=devices)
