"""Watching a run in a notebook: a live preview callback, and image grids.

    image = jaxstyle.stylize(content, style, callback=preview())
    images = jaxstyle.stylize_batch(content, styles, callback=preview(columns=2))
    grid(images, captions=["a", "b"], columns=2)            # a PIL image; shown inline

``preview()`` draws the picture once and redraws it in place every chunk (IPython's
display handles), beside a ``tqdm.auto`` bar with the iteration and the loss; a batch
is drawn as a grid. It needs IPython (every Jupyter kernel has it) and nothing else of
the notebook's.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from .errors import MissingExtraError
from .optimize import Progress


def _ipython_display():
    try:
        from IPython.display import display
    except ImportError:
        raise MissingExtraError(
            "jaxstyle.notebook.preview needs IPython, which every Jupyter kernel has: run it in a notebook, or "
            "pip install ipython (or: pip install -e '.[notebook]')"
        ) from None
    return display


def grid(images: Sequence, *, captions: Sequence[str] | None = None, columns: int | None = None, gap: int = 4) -> Image.Image:
    """The images (PIL, or H×W×3 arrays: uint8, or float in [0, 1]) side by side in rows of
    ``columns`` (default: about square), each with its caption below if given."""
    pictures = [_as_pil(image) for image in images]
    if not pictures:
        raise ValueError("grid needs at least one image")
    if captions is not None and len(captions) != len(pictures):
        raise ValueError(f"{len(captions)} captions for {len(pictures)} images; give one each")
    columns = columns or math.ceil(math.sqrt(len(pictures)))
    rows = math.ceil(len(pictures) / columns)
    w, h = max(p.width for p in pictures), max(p.height for p in pictures)
    text_h = 14 if captions is not None else 0
    sheet = Image.new("RGB", (columns * w + (columns - 1) * gap, rows * (h + text_h) + (rows - 1) * gap), "white")
    draw = ImageDraw.Draw(sheet)
    for i, picture in enumerate(pictures):
        x, y = (i % columns) * (w + gap), (i // columns) * (h + text_h + gap)
        sheet.paste(picture, (x, y))
        if captions is not None:
            draw.text((x + 2, y + h + 1), str(captions[i]), fill="black")
    return sheet


def _as_pil(image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8:
        array = np.round(np.clip(array.astype(np.float32), 0, 1) * 255).astype(np.uint8)
    return Image.fromarray(array, "RGB")


def preview(*, columns: int | None = None, bar: bool = True, captions: Sequence[str] | None = None) -> Callable[[Progress], None]:
    """A ``callback=`` for ``stylize``/``stylize_batch``/``solve`` that shows the images as
    they form: drawn once, then redrawn in place every chunk (a grid for a batch), with a
    ``tqdm.auto`` bar of the iterations and the loss. Coarse-to-fine runs get one picture
    and one bar per scale. Raises ``MissingExtraError`` without IPython."""
    display = _ipython_display()
    shown: dict = {}

    def callback(progress: Progress) -> None:
        images = np.asarray(progress.images)  # a copy: the loop reuses the device buffers
        picture = images[0] if len(images) == 1 else grid(images, captions=captions, columns=columns)
        picture = _as_pil(picture)
        start = shown.get("done", True) or shown["size"] != picture.size or progress.iteration < shown["iteration"]
        if start:  # a new run or a new scale: a new picture and a new bar
            if shown.get("bar") is not None:
                shown["bar"].close()
            shown.update(handle=display(picture, display_id=True), size=picture.size, bar=None)
            if bar:
                from tqdm.auto import tqdm

                shown["bar"] = tqdm(total=progress.iterations, unit="it")
        else:
            shown["handle"].update(picture)
        shown.update(iteration=progress.iteration, done=progress.iteration >= progress.iterations)
        if shown.get("bar") is not None:
            shown["bar"].update(progress.iteration - shown["bar"].n)
            shown["bar"].set_postfix(loss=f"{progress.loss:.4g}")
            if shown["done"]:
                shown["bar"].close()

    return callback
