"""Convert any common VGG-19 weights file into a jaxstyle weights file.

Formats are told apart by their first bytes, and within PyTorch files by their keys:

===================  ===============================  ==================================
format               recognised by                    preprocessing convention
===================  ===============================  ==================================
Keras HDF5           HDF5 signature                   Caffe: BGR, 0..255, minus mean
torchvision          ``features.N.weight`` keys       RGB in [0, 1], ImageNet mean/std
Caffe → PyTorch      ``features.N.weight`` keys       Caffe (same keys as torchvision)
Gatys vgg_conv.pth   ``conv1_1.weight`` keys          Caffe
MatConvNet .mat      "MATLAB 5.0 MAT-file" header     RGB, 0..255, minus averageImage
jaxstyle msgpack     its format tag                   the one it records
===================  ===============================  ==================================

torchvision's own file and the Caffe weights converted for the PyTorch ports have
identical keys and shapes; only where they came from says which convention they
need. A file is recognised by the sha256 prefix that its published name carries
(``vgg19-dcbb9e9d.pth``: torchvision; ``vgg19-d01eb7cb.pth``: Caffe), or by that
name; anything else needs ``convention="caffe"|"torchvision"`` — a wrong guess would
give subtly wrong features, so there is no guessing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from jaxstyle.errors import OptionError, WeightsError
from jaxstyle.vgg import CAFFE_PREPROCESSING, CONV_LAYERS, LAYERS, Preprocessing
from jaxstyle.weights_file import DTYPES, FORMAT, describe_preprocessing, file_hashes, read_weights_file, save_converted

#: torchvision's convention: RGB in [0, 1], normalised by the ImageNet mean and std.
TORCHVISION_PREPROCESSING = Preprocessing("RGB", 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CONVENTIONS = {"caffe": CAFFE_PREPROCESSING, "torchvision": TORCHVISION_PREPROCESSING}

# Published PyTorch files, by the sha256 prefix in their names.
KNOWN_TORCH_FILES = {
    "dcbb9e9d": ("torchvision", "torchvision's vgg19-dcbb9e9d.pth"),
    "d01eb7cb": ("caffe", "the Caffe VGG-19 converted for PyTorch, vgg19-d01eb7cb.pth"),
}
# In torchvision's ``features`` Sequential every conv, ReLU and pool is one entry, in
# the same order as jaxstyle's LAYERS, so a conv's index is its position there.
TORCHVISION_INDEX = {name: i for i, name in enumerate(LAYERS) if name.startswith("conv")}


@dataclass
class SourceWeights:
    """Conv params (numpy, HWIO, float32 unless stored smaller) read from some file."""

    params: dict[str, dict[str, np.ndarray]]
    preprocessing: Preprocessing | None  # None: the file alone does not tell
    source: dict = field(default_factory=dict)


def detect_format(path: str | os.PathLike) -> str:
    """``"keras-h5"``, ``"pytorch"``, ``"matconvnet"`` or ``"jaxstyle"``, from the first bytes."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4096)  # msgpack keys are sorted: the format tag follows the credit
    except FileNotFoundError:
        raise WeightsError(f"weights source {path} does not exist") from None
    except OSError as e:
        raise WeightsError(f"cannot read {path}: {e.strerror}") from None
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "keras-h5"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":  # zip archive, or a bare pickle
        return "pytorch"
    if head.startswith(b"MATLAB 5.0 MAT-file"):
        return "matconvnet"
    if FORMAT.encode() in head:
        return "jaxstyle"
    raise WeightsError(
        f"{path} is not a VGG-19 weights format jaxstyle knows (Keras .h5, PyTorch .pth, "
        "MatConvNet .mat, or a jaxstyle file)"
    )


def _hwio(kernel: np.ndarray) -> np.ndarray:
    """PyTorch's (out, in, H, W) kernel as (H, W, in, out)."""
    return np.ascontiguousarray(np.transpose(kernel, (2, 3, 1, 0)))


def _strip_prefix(keys: Iterable[str]) -> str:
    """The ``module.`` (DataParallel) or ``model.`` prefix all keys share, if any."""
    keys = list(keys)
    for prefix in ("module.", "model."):
        if keys and all(k.startswith(prefix) for k in keys):
            return prefix
    return ""


def _prefix_present(present) -> list[str]:
    """The convolutions from conv1_1 on that ``present(name)`` finds, up to the first gap."""
    layers = []
    for name in CONV_LAYERS:
        if not present(name):
            break
        layers.append(name)
    return layers


def read_pytorch(path: Path, layers: Iterable[str] | None) -> SourceWeights:
    """A torchvision-layout or Gatys-layout state dict, read safely (see ``torch_files``)."""
    from .torch_files import TorchFile, tensor_dict

    with TorchFile(path) as f:
        tensors = tensor_dict(f.obj, path)
        prefix = _strip_prefix(tensors)
        tensors = {k[len(prefix):]: v for k, v in tensors.items()}
        if "conv1_1.weight" in tensors:
            layout, key_of = "gatys", lambda name: name
        elif "features.0.weight" in tensors:
            layout, key_of = "torchvision", lambda name: f"features.{TORCHVISION_INDEX[name]}"
        else:
            some = ", ".join(sorted(tensors)[:6])
            raise WeightsError(
                f"{path} is a PyTorch state dict but not VGG-19's: expected keys 'features.0.weight' "
                f"(torchvision layout) or 'conv1_1.weight' (Gatys' vgg_conv.pth); found {some}, ..."
            )
        if layers is None:
            layers = _prefix_present(lambda name: f"{key_of(name)}.weight" in tensors)
        params = {}
        for name in layers:
            key = key_of(name)
            if f"{key}.weight" not in tensors or f"{key}.bias" not in tensors:
                raise WeightsError(
                    f"{path}: no {key}.weight/.bias for {name}; this is not VGG-19 "
                    "(VGG-16, or VGG-19 with batch norm, number their layers differently)"
                )
            kernel, bias = f.read(tensors[f"{key}.weight"]), f.read(tensors[f"{key}.bias"])
            if kernel.ndim != 4:
                raise WeightsError(f"{path}: {key}.weight has shape {kernel.shape}, not a conv kernel")
            params[name] = {"kernel": _hwio(kernel), "bias": np.asarray(bias)}
        kind = f"pytorch-{layout}"
        fmt = f.format
    preprocessing = CAFFE_PREPROCESSING if layout == "gatys" else None
    return SourceWeights(params, preprocessing, {"kind": kind, "container": fmt})


def read_matconvnet(path: Path, layers: Iterable[str] | None) -> SourceWeights:
    """MatConvNet's ``imagenet-vgg-verydeep-19.mat`` (simplenn), via scipy.

    MatConvNet's Caffe importer already transposed Caffe's filters into MATLAB's
    height-first order and flipped BGR to RGB, so the (H, W, in, out) arrays are used
    as stored. Its input convention is RGB, 0..255, minus the mean of ``averageImage``.
    """
    try:
        import scipy.io
    except ImportError:
        raise WeightsError("reading MatConvNet .mat files needs scipy: pip install scipy") from None
    try:
        data = scipy.io.loadmat(path, struct_as_record=False, squeeze_me=True)
    except Exception as e:  # scipy raises several types on damaged files
        raise WeightsError(f"{path} is not a readable MATLAB file ({e})") from None
    if "layers" not in data:
        raise WeightsError(f"{path} is a MATLAB file without 'layers': not a MatConvNet network")
    by_name = {}
    for layer in np.atleast_1d(data["layers"]):
        name = getattr(layer, "name", None)
        if isinstance(name, str):
            by_name[name] = layer
    params = {}
    for name in layers if layers is not None else _prefix_present(lambda name: name in by_name):
        layer = by_name.get(name)
        if layer is None:
            raise WeightsError(f"{path} has no layer {name!r}; it is not MatConvNet's VGG-19")
        if hasattr(layer, "weights"):
            kernel, bias = layer.weights
        else:  # the beta releases stored them as separate fields
            kernel, bias = layer.filters, layer.biases
        params[name] = {"kernel": np.asarray(kernel, np.float32), "bias": np.asarray(bias, np.float32).reshape(-1)}
    meta = data.get("meta")
    normalization = getattr(meta, "normalization", None) if meta is not None else data.get("normalization")
    average = getattr(normalization, "averageImage", None)
    if average is None:
        raise WeightsError(f"{path} records no normalization.averageImage, so its input convention is unknown")
    mean = np.asarray(average, np.float64).reshape(-1, 3).mean(axis=0)
    # averageImage is single precision; 4 decimals drop float32 noise (≤ 5e-5 of 0..255).
    preprocessing = Preprocessing("RGB", 255.0, tuple(round(float(v), 4) for v in mean), (1.0, 1.0, 1.0))
    return SourceWeights(params, preprocessing, {"kind": "matconvnet"})


def read_jaxstyle(path: Path, layers: Iterable[str] | None) -> SourceWeights:
    document = read_weights_file(path)
    layers = document["layers"] if layers is None else layers
    missing = [name for name in layers if name not in document["layers"]]
    if missing:
        raise WeightsError(f"{path} holds layers up to {document['layers'][-1]}, not {missing}")
    params = {name: dict(document["params"][name]) for name in layers}
    return SourceWeights(params, describe_preprocessing(document), dict(document["source"]))


def read_source(
    src: str | os.PathLike, layers: Iterable[str] | None = None, convention: str | None = None
) -> SourceWeights:
    """Read ``layers`` (default: all from conv1_1 on that the file has) and the
    preprocessing convention from any supported file.

    ``convention`` ("caffe" or "torchvision") overrides what the file implies, and is
    required for a torchvision-layout file that is not one of the published ones.
    """
    from jaxstyle.keras_h5 import keras_layers_present, read_keras_h5

    src, layers = Path(src), None if layers is None else list(layers)
    if convention is not None and convention not in CONVENTIONS:
        raise OptionError(f"convention must be one of {sorted(CONVENTIONS)}, got {convention!r}")
    fmt = detect_format(src)
    if fmt == "keras-h5":
        if layers is None:
            layers = keras_layers_present(src)
        weights = SourceWeights(read_keras_h5(src, layers), CAFFE_PREPROCESSING, {"kind": "keras-h5"})
    elif fmt == "pytorch":
        weights = read_pytorch(src, layers)
    elif fmt == "matconvnet":
        weights = read_matconvnet(src, layers)
    else:
        weights = read_jaxstyle(src, layers)
    if fmt != "jaxstyle":
        weights.source.update(name=src.name, **file_hashes(src))
    if convention is not None:
        weights.preprocessing = CONVENTIONS[convention]
        weights.source["convention"] = f"{convention} (given)"
    elif weights.preprocessing is None:
        known = KNOWN_TORCH_FILES.get(weights.source["sha256"][:8])
        by = "sha256 prefix"
        if known is None:
            known = next((v for k, v in KNOWN_TORCH_FILES.items() if src.name == f"vgg19-{k}.pth"), None)
            by = "file name"
        if known is None:
            raise WeightsError(
                f"{src} has torchvision's keys, which both torchvision's own VGG-19 (RGB in [0, 1], "
                "ImageNet mean/std) and the Caffe weights converted for PyTorch (BGR, 0..255, minus mean) "
                "use; say which with --convention torchvision or --convention caffe"
            )
        weights.preprocessing = CONVENTIONS[known[0]]
        weights.source["convention"] = f"{known[0]} (recognised {known[1]} by {by})"
    return weights


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    layers: Iterable[str] | None = None,
    dtype: str = "float32",
    convention: str | None = None,
) -> Path:
    """Convert ``src`` (any supported format) into a jaxstyle weights file at ``dst``.

    ``dtype`` float16 or bfloat16 halves the file; loading turns it back into float32.
    """
    if dtype not in DTYPES:
        raise OptionError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if Path(dst).resolve() == Path(src).resolve():
        raise OptionError(f"output {dst} is the source file; choose another output path")
    weights = read_source(src, layers, convention)
    return save_converted(dst, weights.params, weights.preprocessing, weights.source, dtype)


def describe_source(path: str | os.PathLike) -> str:
    """What ``convert`` would make of a (non-jaxstyle) file: format, layers, convention."""
    path = Path(path)
    fmt = detect_format(path)
    try:
        weights = read_source(path)
        p = weights.preprocessing
        convention = f"{p.channel_order}, x{p.scale:g}, mean {list(p.mean)}, std {list(p.std)}"
        convention += f" — {weights.source['convention']}" if "convention" in weights.source else ""
    except WeightsError as e:
        if "--convention" not in str(e):
            raise
        weights = read_source(path, convention="caffe")  # to list the layers; the convention stays open
        convention = "not recorded in the file: convert with --convention caffe|torchvision"
    shapes = ", ".join(f"{n} {weights.params[n]['kernel'].shape}" for n in weights.params)
    return "\n".join([
        f"file:          {path} ({fmt}, {weights.source.get('kind')})",
        f"layers (HWIO): {shapes}",
        f"dtype:         {', '.join(sorted({str(a.dtype) for l in weights.params.values() for a in l.values()}))}",
        f"preprocessing: {convention}",
        f"sha256:        {weights.source.get('sha256')}",
    ])  # fmt: skip
