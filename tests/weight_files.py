"""Small weight files of every format jaxstyle converts, written without torch or MATLAB.

The PyTorch writer emits pickle opcodes by hand from the format's description (a
state dict of ``_rebuild_tensor_v2`` calls whose storages are persistent ids), so
the reader is checked against an independent writer, not against itself.
"""

from __future__ import annotations

import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

from jaxstyle.vgg import LAYERS

TORCH_INDEX = {name: i for i, name in enumerate(LAYERS) if name.startswith("conv")}
_STORAGE = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float16): "HalfStorage", np.dtype(np.float64): "DoubleStorage"}


def _global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def _str(s: str) -> bytes:
    data = s.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _int(i: int) -> bytes:
    return b"J" + struct.pack("<i", i)


def _tuple(items) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _state_dict_pickle(entries, legacy: bool) -> bytes:
    """OrderedDict(name -> _rebuild_tensor_v2(storage, 0, shape, stride, False, OrderedDict()))."""
    out = b"\x80\x02" + _global("collections", "OrderedDict") + b")R("
    for name, key, array in entries:
        pid = [_str("storage"), _global("torch", _STORAGE[array.dtype]), _str(key), _str("cpu"), _int(array.size)]
        if legacy:
            pid.append(b"N")  # no view metadata
        stride = [s // array.itemsize for s in array.strides]
        out += _str(name) + _global("torch._utils", "_rebuild_tensor_v2") + b"("
        out += _tuple(pid) + b"Q" + _int(0) + _tuple(map(_int, array.shape)) + _tuple(map(_int, stride))
        out += b"\x89" + _global("collections", "OrderedDict") + b")R" + b"tR"
    return out + b"u."


def write_torch_file(path: Path, tensors: dict[str, np.ndarray], *, legacy: bool = False) -> Path:
    """Save ``tensors`` as ``torch.save`` would: zip format, or the legacy one."""
    entries = [(name, str(i), np.ascontiguousarray(a)) for i, (name, a) in enumerate(tensors.items())]
    if not legacy:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", _state_dict_pickle(entries, legacy=False))
            z.writestr("archive/byteorder", "little")
            for _, key, array in entries:
                z.writestr(f"archive/data/{key}", array.astype(array.dtype.newbyteorder("<")).tobytes())
            z.writestr("archive/version", "3\n")
        return path
    with open(path, "wb") as f:
        f.write(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2))
        f.write(pickle.dumps(1001, protocol=2))
        f.write(pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2))
        f.write(_state_dict_pickle(entries, legacy=True))
        f.write(pickle.dumps([key for _, key, _ in entries], protocol=2))
        for _, _, array in entries:
            f.write(struct.pack("<q", array.size) + array.tobytes())
    return path


def _pytorch_layout(params: dict, layers, key) -> dict[str, np.ndarray]:
    """jaxstyle params (HWIO) as PyTorch conv tensors (OIHW) named ``key(layer)``.weight/.bias."""
    out = {}
    for name in layers:
        out[f"{key(name)}.weight"] = np.transpose(params[name]["kernel"], (3, 2, 0, 1))
        out[f"{key(name)}.bias"] = params[name]["bias"]
    return out


def torchvision_layout(params: dict, layers) -> dict[str, np.ndarray]:
    """A torchvision ``vgg19`` state dict (``features.N``), with a classifier entry to drop."""
    out = _pytorch_layout(params, layers, lambda name: f"features.{TORCH_INDEX[name]}")
    out["classifier.0.weight"] = np.zeros((4, 8), np.float32)
    return out


def gatys_layout(params: dict, layers) -> dict[str, np.ndarray]:
    """Gatys' ``vgg_conv.pth`` keys (``conv1_1.weight``)."""
    return _pytorch_layout(params, layers, lambda name: name)


def write_matconvnet(path: Path, params: dict, layers, mean_rgb, *, bgr_weights: bool) -> Path:
    """A MatConvNet simplenn ``.mat``: layers with name/type/weights, meta.normalization.

    With ``bgr_weights`` the given kernels expect BGR input (Caffe's), so conv1_1's
    input channels are flipped to MatConvNet's RGB.
    """
    import scipy.io

    cells = np.empty((1, 2 * len(layers)), dtype=object)
    for i, name in enumerate(layers):
        kernel = np.asarray(params[name]["kernel"], np.float32)
        if bgr_weights and name == "conv1_1":
            kernel = kernel[:, :, ::-1, :]
        weights = np.empty((1, 2), dtype=object)
        weights[0, 0], weights[0, 1] = kernel, np.asarray(params[name]["bias"], np.float32)[:, None]
        cells[0, 2 * i] = {"name": name, "type": "conv", "weights": weights, "stride": [1, 1], "pad": [1, 1, 1, 1]}
        cells[0, 2 * i + 1] = {"name": "relu" + name[4:], "type": "relu"}
    average = np.broadcast_to(np.asarray(mean_rgb, np.float32), (4, 4, 3)).copy()
    scipy.io.savemat(path, {"layers": cells, "meta": {"normalization": {"averageImage": average}}})
    return path
