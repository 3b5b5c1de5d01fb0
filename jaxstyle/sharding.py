"""Where a run's arrays live: the batch axis over devices, and optionally each image's rows.

A run's devices form a 2-D ``jax.sharding`` mesh, ``("batch", "space")``: items are split
over the first axis, and with ``spatial_parts = P`` > 1 each image's rows over the second
(P devices per item). The weights are replicated. XLA's SPMD partitioner then does the
rest: the convolutions exchange the rows at the tiles' edges (halos), the Gram matrices and
L-BFGS's inner products become partial sums and an all-reduce. Nothing here names a platform.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .errors import OptionError
from .vgg import deepest_layer, min_image_side


def check_spatial_parts(parts: int, height: int, layers: Sequence[str]) -> int:
    """``parts`` if each part keeps at least one row at the deepest of ``layers``."""
    if parts > 1 and layers:
        deepest = deepest_layer(layers)
        rows = height // min_image_side(layers)  # each pooling up to the deepest layer halves the rows
        if parts > rows:
            raise OptionError(f"spatial_parts {parts} is more than the {rows} rows at {deepest} for a {height}-row "
                              f"image: use at most {rows} parts, or a larger size")  # fmt: skip
    return parts


def run_mesh(devices: Sequence[jax.Device], spatial_parts: int = 1) -> Mesh:
    """The ("batch", "space") mesh of ``devices``: len(devices) / spatial_parts items at a time."""
    devices = list(devices)
    if spatial_parts < 1 or len(devices) % spatial_parts:
        raise OptionError(f"spatial_parts {spatial_parts} does not divide the {len(devices)} devices: choose a divisor "
                          "of the device count, or other devices")  # fmt: skip
    return Mesh(np.asarray(devices, dtype=object).reshape(-1, spatial_parts), ("batch", "space"))


def leaf_spec(leaf: Any, image_shape: tuple[int, int] | None = None) -> PartitionSpec:
    """Where a leaf with a leading axis K goes: axis 0 over "batch", and a leaf that ends in
    an image (…, H, W, 3), given ``image_shape`` (H, W), also its rows over "space". A
    scalar is replicated."""
    ndim = np.ndim(leaf)
    if ndim == 0:
        return PartitionSpec()
    spec = [None] * ndim
    spec[0] = "batch"
    if image_shape is not None and ndim >= 4 and tuple(np.shape(leaf)[-3:]) == (*image_shape, 3):
        spec[ndim - 3] = "space"
    return PartitionSpec(*spec)


def batch_specs(tree: Any, image_shape: tuple[int, int] | None = None) -> Any:
    """``leaf_spec`` of every leaf of ``tree``."""
    return jax.tree.map(lambda leaf: leaf_spec(leaf, image_shape), tree)


def place_batch(tree: Any, mesh: Mesh, image_shape: tuple[int, int] | None = None) -> Any:
    """Put every leaf (leading axis K) on the mesh, as ``leaf_spec`` says."""
    return jax.tree.map(lambda leaf: jax.device_put(jax.numpy.asarray(leaf), NamedSharding(mesh, leaf_spec(leaf, image_shape))), tree)


def spatial_placer(spatial_parts: int, devices: Sequence[jax.Device] | None = None):
    """For computing targets the way the run computes: a function putting an (H, W, C) image
    with its rows over ``spatial_parts`` devices (this process's own), or None for one device."""
    if spatial_parts <= 1:
        return None
    devices = list(devices if devices is not None else jax.local_devices())[:spatial_parts]
    if len(devices) < spatial_parts:
        raise OptionError(f"spatial_parts {spatial_parts} needs as many devices; there are {len(devices)}")
    sharding = NamedSharding(run_mesh(devices, spatial_parts), PartitionSpec("space"))
    return lambda image: jax.device_put(jax.numpy.asarray(image, jax.numpy.float32), sharding)
