"""Gatys normalisation: rescale VGG-19 so each filter's mean activation is 1.

Gatys et al. (2016, §2) used VGG-19 "normalized by scaling the weights such that the
mean activation of each convolutional filter over images and positions is equal to
one". Because ReLU and both poolings commute with positive per-channel scaling (and
zero padding stays zero), the rescaled network computes exactly the original
activations divided per channel by their mean m_l over the given images::

    W'_l[:, :, i, o] = W_l[:, :, i, o] · m_{l-1}[i] / m_l[o]      b'_l[o] = b_l[o] / m_l[o]

with m_0 = 1 (the input is unchanged). A channel that never activates on the images
(m = 0) keeps its scale. What changes is how much each layer contributes to a Gram
loss with equal layer weights: unnormalised, deep layers' activations (hence E_l)
differ by orders of magnitude from shallow ones.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxstyle.errors import OptionError
from jaxstyle.images import fit_size, load_image, to_array
from jaxstyle.vgg import check_pooling, vgg19_features

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def mean_activations(
    params, images: Iterable[np.ndarray], layers: Sequence[str], pooling: str = "max"
) -> dict[str, np.ndarray]:
    """Per-channel mean ReLU output of each conv in ``layers``, over images and positions.

    Each position of each image counts once (larger images weigh more).
    """
    relus = ["relu" + name[len("conv"):] for name in layers]
    features = jax.jit(lambda p, x: vgg19_features(p, x, relus, pooling=pooling))
    sums = {name: 0.0 for name in layers}
    counts = {name: 0 for name in layers}
    seen = 0
    for image in images:
        out = features(params, jnp.asarray(image)[None])
        for name, relu in zip(layers, relus):
            a = np.asarray(out[relu], np.float64)
            sums[name] = sums[name] + a.sum(axis=(0, 1, 2))
            counts[name] += a.shape[1] * a.shape[2]
        seen += 1
    if not seen:
        raise OptionError("normalisation needs at least one image")
    return {name: sums[name] / counts[name] for name in layers}


def normalize_params(params, means: dict[str, np.ndarray], layers: Sequence[str]) -> dict:
    """Rescale conv ``params`` (numpy HWIO) so activations become original / mean."""
    out, previous = {}, None
    for name in layers:
        m = np.where(means[name] > 0, means[name], 1.0)  # dead channels keep their scale
        kernel = np.asarray(params[name]["kernel"], np.float64)
        if previous is not None:
            kernel = kernel * previous[None, None, :, None]
        out[name] = {
            "kernel": (kernel / m).astype(np.float32),
            "bias": (np.asarray(params[name]["bias"], np.float64) / m).astype(np.float32),
        }
        previous = m
    return out


def image_files(directory: str | os.PathLike) -> list[Path]:
    directory = Path(directory)
    if not directory.is_dir():
        raise OptionError(f"--images must be a directory of images, got {directory}")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise OptionError(f"{directory} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def load_images(files: Sequence[Path], size: int) -> list[np.ndarray]:
    arrays = []
    for path in files:
        image = load_image(path, "normalisation image")
        arrays.append(to_array(image, fit_size(*image.size, size)))
    return arrays


def normalize_file(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    images: str | os.PathLike,
    *,
    size: int = 256,
    pooling: str = "max",
    convention: str | None = None,
    dtype: str = "float32",
) -> tuple[Path, dict]:
    """Write a Gatys-normalised copy of ``src`` (any supported format) to ``dst``.

    Returns the path and a summary (images used, dead channels per layer).
    """
    from jaxstyle.checks import whole_number

    from jaxstyle.weights_file import save_converted

    from .convert import read_source

    whole_number(size, "size", minimum=16)
    check_pooling(pooling)
    weights = read_source(src, convention=convention)
    layers = list(weights.params)
    files = image_files(images)
    params = {name: {k: jnp.asarray(np.asarray(v, np.float32)) for k, v in p.items()} for name, p in weights.params.items()}
    params["input"] = {k: jnp.asarray(v) for k, v in weights.preprocessing.input_params().items()}
    means = mean_activations(params, load_images(files, size), layers, pooling)
    dead = {name: int(np.sum(means[name] <= 0)) for name in layers if np.any(means[name] <= 0)}
    normalized = normalize_params(weights.params, means, layers)
    source = {**weights.source, "normalized": f"Gatys: mean activation 1 over {len(files)} images "
              f"at {size} px, {pooling} pooling", "normalized_dead_channels": str(dead)}  # fmt: skip
    path = save_converted(dst, normalized, weights.preprocessing, source, dtype)
    return path, {"images": len(files), "dead_channels": dead}
