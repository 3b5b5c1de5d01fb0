"""Finding and loading VGG-19 weights.

Weights are looked for in this order: an explicit path (argument, else the
``JAXSTYLE_WEIGHTS`` environment variable), then the user cache directory
(``JAXSTYLE_CACHE_DIR`` overrides it), then fetched (``jaxstyle.fetch``). The file
format itself is ``jaxstyle.weights_file``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import WeightsError
from .fetch import fetch_weights
from .weights_file import (  # noqa: F401  (the names users import from here)
    CACHE_FILENAME, CREDIT, FORMAT, FORMAT_VERSION, cache_dir, cached_weights_path, content_digest,
    describe_preprocessing, describe_weights_file, read_weights_file, save_weights,
)  # fmt: skip


def load_weights(path: str | os.PathLike | None = None, *, fetch: bool = True) -> dict:
    """Load VGG-19 params (the pytree ``vgg19_features`` takes) from a weights file.

    With ``path=None`` the weights are located (and fetched if ``fetch``) as the
    module docstring says. Arrays stored in float16 (a smaller file) come back as
    float32: the computation and its accumulation stay in float32 either way.
    """
    document = read_weights_file(locate_weights(path, fetch=fetch))
    params = {"input": describe_preprocessing(document).input_params()}
    for name in document["layers"]:
        params[name] = {
            part: np.asarray(document["params"][name][part], np.float32) for part in ("kernel", "bias")
        }
    return params


def locate_weights(
    path: str | os.PathLike | None = None,
    *,
    fetch: bool = True,
    fetcher: Callable[[Path], Path] | None = None,
) -> Path:
    """Find a weights file: explicit path, ``JAXSTYLE_WEIGHTS``, the cache, then fetch.

    ``fetcher(destination)`` writes a converted file at ``destination``; the default
    is ``jaxstyle.fetch.fetch_weights``.
    """
    if path is not None:
        return _existing(Path(path), "the weights path given")
    env = os.environ.get("JAXSTYLE_WEIGHTS")
    if env:
        return _existing(Path(env), "JAXSTYLE_WEIGHTS")
    cached = cached_weights_path()
    if cached.is_file():
        return cached
    if not fetch:
        raise WeightsError(
            f"no VGG-19 weights at {cached}; run 'jaxstyle weights fetch', "
            "or pass a converted file (weights=... / JAXSTYLE_WEIGHTS)"
        )
    return (fetcher or fetch_weights)(cached)


def _existing(path: Path, what: str) -> Path:
    if not path.is_file():
        raise WeightsError(
            f"{what} points to {path}, which is not a file; give a weights file made by "
            "'jaxstyle weights fetch' or 'python -m weights_tools convert'"
        )
    return path
