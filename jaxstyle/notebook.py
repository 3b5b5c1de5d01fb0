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

from typing import Callable, Sequence

import numpy as np

from .errors import MissingExtraError
from .images import as_pil, grid
from .optimize import Progress

__all__ = ["grid", "preview"]


def _ipython_display():
    try:
        from IPython.display import display
    except ImportError:
        raise MissingExtraError(
            "jaxstyle.notebook.preview needs IPython, which every Jupyter kernel has: run it in a notebook, or "
            "pip install ipython (or: pip install -e '.[notebook]')"
        ) from None
    return display


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
        picture = as_pil(picture)
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
        finished = progress.iteration >= progress.iterations or bool(np.all(progress.converged))  # or stopped early
        shown.update(iteration=progress.iteration, done=finished)
        if shown.get("bar") is not None:
            shown["bar"].update(progress.iteration - shown["bar"].n)
            shown["bar"].set_postfix(loss=f"{progress.loss:.4g}")
            if shown["done"]:
                shown["bar"].close()

    return callback
