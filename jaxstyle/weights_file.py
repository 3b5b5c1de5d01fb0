"""jaxstyle's VGG-19 weights file: format, loading, and where to find one.

A weights file is a msgpack document written with ``flax.serialization`` (no pickle:
loading it cannot run code)::

    {"format": "jaxstyle-vgg19", "format_version": 1,
     "layers": ["conv1_1", ...], "dtype": "float32",
     "preprocessing": {"channel_order": "BGR", "scale": 255.0, "mean": [...], "std": [...]},
     "source": {"kind": "keras-h5", "name": ..., "sha256": ..., "md5": ...},
     "content_sha256": <hash of the layers, preprocessing, kernels and biases>,
     "credit": ..., "params": {"conv1_1": {"kernel": HWIO array, "bias": array}, ...}}

Where weights are found and loaded is ``jaxstyle.weights``; this module only reads and
writes the files (and knows the cache directory they are kept in).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Mapping

import ml_dtypes  # bfloat16 as a numpy dtype (a dependency of jax already)
import numpy as np

from .documents import read_document, write_document
from .errors import WeightsError
from .vgg import CONV_LAYERS, CONV_SHAPES, Preprocessing

FORMAT = "jaxstyle-vgg19"
FORMAT_VERSION = 1
CACHE_FILENAME = "vgg19-keras-notop.msgpack"
CREDIT = (
    "VGG-19 by K. Simonyan and A. Zisserman (Visual Geometry Group, University of Oxford), "
    "'Very Deep Convolutional Networks for Large-Scale Image Recognition', 2014; "
    "weights released under the Creative Commons Attribution licence."
)


def content_digest(params: Mapping[str, Mapping[str, np.ndarray]], layers, preprocessing: Mapping) -> str:
    """sha256 over the layer list, the preprocessing, and every kernel and bias (dtype,
    shape, bytes) in ``layers`` order: what decides the features a file gives."""
    h = hashlib.sha256()
    h.update(json.dumps([list(layers), preprocessing], sort_keys=True).encode())
    for name in layers:
        for part in ("kernel", "bias"):
            a = np.ascontiguousarray(params[name][part])
            h.update(f"{name}/{part}:{a.dtype.str}:{a.shape};".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def save_weights(
    path: str | os.PathLike,
    params: Mapping[str, Mapping[str, np.ndarray]],
    preprocessing: Preprocessing,
    source: Mapping[str, str],
) -> Path:
    """Write conv ``params`` (numpy, HWIO) with their convention, atomically."""
    layers = [name for name in CONV_LAYERS if name in params]
    if not layers:
        raise WeightsError("no VGG-19 convolution layers to save")
    arrays = {
        name: {part: np.ascontiguousarray(params[name][part]) for part in ("kernel", "bias")}
        for name in layers
    }
    _check_shapes(arrays, layers, path)
    dtypes = {str(a.dtype) for layer in arrays.values() for a in layer.values()}
    convention = {
        "channel_order": preprocessing.channel_order,
        "scale": float(preprocessing.scale),
        "mean": [float(v) for v in preprocessing.mean],
        "std": [float(v) for v in preprocessing.std],
    }
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "layers": layers,
        "dtype": dtypes.pop() if len(dtypes) == 1 else "mixed",
        "preprocessing": convention,
        "source": dict(source),
        "content_sha256": content_digest(arrays, layers, convention),
        "credit": CREDIT,
        "params": arrays,
    }
    return write_document(path, document)


def _check_shapes(arrays, layers, path) -> None:
    for name in layers:
        want = CONV_SHAPES[name]
        got = (arrays[name]["kernel"].shape, arrays[name]["bias"].shape)
        if got != (want, want[-1:]):
            raise WeightsError(
                f"{path}: layer {name} has kernel/bias shapes {got}, VGG-19 needs "
                f"{(want, want[-1:])}; the file is not VGG-19 weights or is damaged"
            )


def read_weights_file(path: str | os.PathLike) -> dict:
    """Read and check a weights file; return its document with numpy arrays."""
    path = Path(path)
    hint = "re-create it with 'jaxstyle weights fetch' or 'python -m weights_tools convert'"
    document = read_document(
        path, fmt=FORMAT, version=FORMAT_VERSION, kind="weights file", error=WeightsError, hint=hint
    )
    layers = list(document["layers"])
    params = document["params"]
    _check_shapes(params, layers, path)
    for name in layers:
        for part in ("kernel", "bias"):
            if not np.all(np.isfinite(params[name][part])):
                raise WeightsError(f"{path}: {name} {part} holds NaN or infinite values; {hint}")
    if "content_sha256" not in document:
        raise WeightsError(f"{path} records no sha256 of its contents, so it cannot be checked; {hint}")
    if content_digest(params, layers, document["preprocessing"]) != document["content_sha256"]:
        raise WeightsError(f"{path}: weights do not match their recorded sha256 (damaged file); {hint}")
    return document


def describe_weights_file(path: str | os.PathLike) -> str:
    """A checked weights file, described: layers, shapes, dtype, convention, hashes, credit."""
    doc = read_weights_file(path)
    p = describe_preprocessing(doc)
    size = sum(doc["params"][n][k].nbytes for n in doc["layers"] for k in ("kernel", "bias"))
    shapes = ", ".join(f"{n} {tuple(doc['params'][n]['kernel'].shape)}" for n in doc["layers"])
    return "\n".join([
        f"file:          {path}",
        f"layers:        {', '.join(doc['layers'])}",
        f"kernels (HWIO): {shapes}",
        f"dtype:         {doc['dtype']} ({size / 1e6:.1f} MB of parameters)",
        f"preprocessing: {p.channel_order}, x{p.scale:g}, mean {list(p.mean)}, std {list(p.std)}",
        f"source:        {doc['source']}",
        f"sha256:        {doc['content_sha256']} (layers, preprocessing, arrays; checked)",
        f"credit:        {doc['credit']}",
    ])  # fmt: skip


def describe_preprocessing(document: Mapping) -> Preprocessing:
    p = document["preprocessing"]
    return Preprocessing(p["channel_order"], float(p["scale"]), tuple(p["mean"]), tuple(p["std"]))


def cache_dir() -> Path:
    """Where fetched weights are kept: ``JAXSTYLE_CACHE_DIR`` or the platform's user cache."""
    override = os.environ.get("JAXSTYLE_CACHE_DIR")
    if override:
        return Path(override)
    import platformdirs  # the per-platform cache location, without hand-written rules

    return Path(platformdirs.user_cache_dir("jaxstyle"))


def cached_weights_path() -> Path:
    return cache_dir() / CACHE_FILENAME


def file_hashes(path: str | os.PathLike) -> dict[str, str]:
    """sha256 and md5 of a file, read once."""
    sha, md5 = hashlib.sha256(), hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
            md5.update(chunk)
    return {"sha256": sha.hexdigest(), "md5": md5.hexdigest()}


#: The dtypes a weights file may store (loading gives float32 either way).
DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


def save_converted(
    dst: str | os.PathLike, params: Mapping, preprocessing: Preprocessing, source: Mapping, dtype: str = "float32"
) -> Path:
    """``save_weights`` of float32 ``params`` stored as ``dtype``, refusing NaN or infinite values."""
    as_dtype = DTYPES[dtype]
    arrays = {
        name: {part: np.asarray(np.asarray(parts[part], np.float32), as_dtype) for part in ("kernel", "bias")}
        for name, parts in params.items()
    }
    for name, parts in arrays.items():
        for part, a in parts.items():
            if not np.all(np.isfinite(a.astype(np.float32))):
                raise WeightsError(f"{source.get('name', 'the source')}: {name} {part} holds NaN or infinite values")
    return save_weights(dst, arrays, preprocessing, source)
