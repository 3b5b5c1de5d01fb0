"""Keras' VGG-19 HDF5 files (``vgg19_weights_tf_dim_ordering_tf_kernels[_notop].h5``).

Layout: one group per layer, ``block{b}_conv{c}``, holding ``block{b}_conv{c}_W_1:0``
(3, 3, in, out) HWIO float32 and ``block{b}_conv{c}_b_1:0``. These are the original
Caffe weights: input BGR, 0..255, minus the ImageNet mean, cross-correlation.
Fully-connected layers (in the non-"notop" file) are ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from .errors import WeightsError
from .vgg import CAFFE_PREPROCESSING, CONV_LAYERS
from .weights_file import file_hashes, save_converted


def _keras_name(layer: str) -> str:
    block, conv = layer[len("conv"):].split("_")
    return f"block{block}_conv{conv}"


def read_keras_h5(path: str | os.PathLike, layers: Iterable[str] = CONV_LAYERS) -> dict:
    """Read conv kernels and biases from a Keras VGG-19 HDF5 file as numpy arrays."""
    import h5py

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise WeightsError(f"{path} is not a readable HDF5 file ({e}); give Keras' VGG-19 .h5 file") from None
    params = {}
    with f:
        for layer in layers:
            group_name = _keras_name(layer)
            group = f.get(group_name)
            if group is None:
                raise WeightsError(
                    f"{path} has no group {group_name!r}; it is not Keras' VGG-19 weights file"
                )
            kernel = group.get(f"{group_name}_W_1:0")
            bias = group.get(f"{group_name}_b_1:0")
            # Later Keras versions nest datasets named "kernel:0"/"bias:0" in a subgroup.
            if kernel is None:
                kernel = _find_dataset(group, ("kernel:0", "_W:0"))
            if bias is None:
                bias = _find_dataset(group, ("bias:0", "_b:0"))
            if kernel is None or bias is None:
                raise WeightsError(f"{path}: group {group_name!r} lacks its kernel or bias dataset")
            params[layer] = {
                "kernel": np.asarray(kernel, dtype=np.float32),
                "bias": np.asarray(bias, dtype=np.float32),
            }
    return params


def keras_layers_present(path: str | os.PathLike) -> list[str]:
    """The convolutions from conv1_1 on that the file has groups for, up to the first gap."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            names = set(f.keys())
    except OSError as e:
        raise WeightsError(f"{path} is not a readable HDF5 file ({e}); give Keras' VGG-19 .h5 file") from None
    layers = []
    for layer in CONV_LAYERS:
        if _keras_name(layer) not in names:
            break
        layers.append(layer)
    return layers or [CONV_LAYERS[0]]  # reading then names what is missing


def _find_dataset(group, suffixes):
    import h5py

    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and name.endswith(suffixes):
            found.append(obj)

    group.visititems(visit)
    return found[0] if len(found) == 1 else None


def convert_keras_h5(
    src: str | os.PathLike, dst: str | os.PathLike, layers: Iterable[str] = CONV_LAYERS, dtype: str = "float32"
) -> Path:
    """Convert Keras' VGG-19 HDF5 file into a jaxstyle weights file at ``dst``.

    ``dtype="float16"`` (or ``"bfloat16"``) halves the file; loading gives float32.
    """
    src = Path(src)
    params = read_keras_h5(src, layers)
    source = {"kind": "keras-h5", "name": src.name, **file_hashes(src)}
    return save_converted(dst, params, CAFFE_PREPROCESSING, source, dtype)
