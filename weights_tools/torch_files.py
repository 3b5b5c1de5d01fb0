"""Read tensors out of PyTorch ``.pth`` files without torch and without running pickle code.

A ``torch.save`` file is a pickle whose tensors point at raw storages kept beside it:

- the zip format (torch >= 1.6): ``<root>/data.pkl`` plus one ``<root>/data/<key>``
  member of raw bytes per storage, and ``<root>/byteorder``;
- the legacy format (torch 0.4 - 1.5, or ``_use_new_zipfile_serialization=False``):
  pickles of a magic number, a protocol version and ``sys_info``, then the main
  pickle, then the list of storage keys, then each storage as an int64 element count
  followed by its bytes.

Loading a pickle can call any importable function, so ``torch.load`` on a stranger's
file can run code. Here the unpickler knows a short allow-list (an ``OrderedDict``,
tensor and parameter rebuilders, storage and dtype names) and maps each entry to our
own plain-Python stand-in; any other global is refused with ``UnsafePickleError``
before anything is called. Tensors come back as lazy ``TensorRef`` records, so the
storages of layers nobody asked for (VGG's 400 MB classifier) are never read.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import ml_dtypes  # bfloat16 as a numpy dtype (a dependency of jax already)
import numpy as np

from jaxstyle.errors import WeightsError


class UnsafePickleError(WeightsError):
    """The pickle asked for something other than tensors; nothing was executed."""


_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": ml_dtypes.bfloat16, "LongStorage": np.int64, "IntStorage": np.int32,
    "ShortStorage": np.int16, "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}  # fmt: skip
_TORCH_DTYPES = {
    "float32": np.float32, "float": np.float32, "float64": np.float64, "double": np.float64,
    "float16": np.float16, "half": np.float16, "bfloat16": ml_dtypes.bfloat16, "int64": np.int64,
    "long": np.int64, "int32": np.int32, "int": np.int32, "int16": np.int16, "int8": np.int8,
    "uint8": np.uint8, "bool": np.bool_,
}  # fmt: skip
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@dataclass(frozen=True)
class StorageRef:
    """A storage named by its key; ``offset`` (elements) is non-zero only for old storage views."""

    key: str
    dtype: np.dtype
    numel: int
    offset: int = 0


@dataclass(frozen=True)
class TensorRef:
    """A tensor not yet read: a strided view of ``storage`` (offsets and strides in elements)."""

    storage: StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.storage.dtype)


@dataclass(frozen=True)
class _DType:
    dtype: Any


def _rebuild_tensor(storage, storage_offset, size, stride, *_rest) -> TensorRef:
    if not isinstance(storage, StorageRef):
        raise UnsafePickleError("a tensor in the pickle does not point at a storage")
    return TensorRef(storage, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, hooks, dtype, *_rest):
    # v3 pairs an untyped (byte) storage with an explicit dtype.
    typed = StorageRef(storage.key, np.dtype(dtype.dtype), storage.numel // np.dtype(dtype.dtype).itemsize)
    return _rebuild_tensor(typed, storage_offset, size, stride)


def _rebuild_parameter(data, *_rest):
    return data  # a Parameter is its tensor; requires_grad and hooks do not matter here


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch", "Size"): tuple,
    **{("torch", name): _DType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
    **{("torch", name): _DType(dtype) for name, dtype in _TORCH_DTYPES.items()},
    ("torch", "UntypedStorage"): _DType(np.uint8),
    ("torch.storage", "UntypedStorage"): _DType(np.uint8),
}


class _TensorUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, path: Path, legacy: bool):
        super().__init__(file)
        self.path, self.legacy = path, legacy
        self.views: dict[str, StorageRef] = {}

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self.path}: refused to load: its pickle asks for {module}.{name}, which is not "
                "part of a tensor state dict (a .pth file can run code when loaded, so jaxstyle only "
                "rebuilds tensors); if it holds a whole model, re-save model.state_dict()"
            ) from None

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage" and isinstance(pid[1], _DType)):
            raise UnsafePickleError(f"{self.path}: unexpected persistent id in the pickle: {pid!r:.80}")
        dtype = np.dtype(pid[1].dtype)
        if not self.legacy:  # ('storage', type, key, location, numel)
            return StorageRef(str(pid[2]), dtype, int(pid[4]))
        # legacy: ('storage', type, root_key, location, numel, view_metadata)
        root_key, numel, view = str(pid[2]), int(pid[4]), pid[5] if len(pid) > 5 else None
        root = self.views.setdefault(root_key, StorageRef(root_key, dtype, numel))
        if view is not None:
            view_key, offset, view_numel = view
            return self.views.setdefault(str(view_key), StorageRef(root_key, dtype, int(view_numel), int(offset)))
        return root


class TorchFile:
    """An opened ``.pth`` file: ``.obj`` is the unpickled object with ``TensorRef`` leaves;
    ``read(ref)`` returns one tensor as a numpy array."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._file = open(self.path, "rb")
        except OSError as e:
            raise WeightsError(f"cannot read {self.path}: {e.strerror}") from None
        try:
            if zipfile.is_zipfile(self._file):
                self._open_zip()
            else:
                self._open_legacy()
        except WeightsError:
            self.close()
            raise
        except Exception as e:  # damaged pickles raise many unrelated types
            self.close()
            raise WeightsError(f"{self.path} is not a readable PyTorch file ({type(e).__name__}: {e})") from None

    # -- the zip format ---------------------------------------------------------------
    def _open_zip(self) -> None:
        self._zip = zipfile.ZipFile(self._file)
        pickles = [n for n in self._zip.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise WeightsError(f"{self.path} is a zip archive but not a torch.save file (no <root>/data.pkl)")
        self._root = pickles[0].split("/")[0]
        order = self._member("byteorder")
        self._little = order is None or order.strip() == b"little"
        self.obj = _TensorUnpickler(io.BytesIO(self._zip.read(pickles[0])), self.path, legacy=False).load()
        self.format = "pytorch-zip"

    def _member(self, name: str) -> bytes | None:
        try:
            return self._zip.read(f"{self._root}/{name}")
        except KeyError:
            return None

    # -- the legacy format --------------------------------------------------------------
    def _open_legacy(self) -> None:
        f = self._file
        f.seek(0)
        if f.read(262)[257:262] == b"ustar":
            raise WeightsError(
                f"{self.path} is a PyTorch file of the tar format from before torch 0.4, which this "
                "reader does not take; load and re-save it with torch (torch.save(torch.load(f), g))"
            )
        f.seek(0)
        safe = _TensorUnpickler(f, self.path, legacy=True)
        if safe.load() != _LEGACY_MAGIC:
            raise WeightsError(f"{self.path} is neither a zip archive nor a legacy PyTorch file")
        safe.load()  # protocol version
        sys_info = safe.load()
        self._little = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True
        unpickler = _TensorUnpickler(f, self.path, legacy=True)
        self.obj = unpickler.load()
        keys = _TensorUnpickler(f, self.path, legacy=True).load()
        # Storages follow in key order, each as an int64 element count and its bytes.
        self._legacy_offsets: dict[str, int] = {}
        for key in keys:
            head = f.read(8)
            if len(head) != 8:
                raise WeightsError(f"{self.path} is truncated (storage {key} missing)")
            (numel,) = struct.unpack("<q" if self._little else ">q", head)
            root = unpickler.views.get(str(key))
            itemsize = np.dtype(root.dtype).itemsize if root else 1
            self._legacy_offsets[str(key)] = f.tell()
            f.seek(numel * itemsize, io.SEEK_CUR)
        self.format = "pytorch-legacy"

    # -- reading tensors -----------------------------------------------------------------
    def _storage_bytes(self, storage: StorageRef, count: int) -> bytes:
        itemsize = np.dtype(storage.dtype).itemsize
        if self.format == "pytorch-zip":
            raw = self._member(f"data/{storage.key}")
            if raw is None:
                raise WeightsError(f"{self.path}: storage {storage.key} is missing from the archive")
            return raw[storage.offset * itemsize : (storage.offset + count) * itemsize]
        start = self._legacy_offsets.get(storage.key)
        if start is None:
            raise WeightsError(f"{self.path}: storage {storage.key} is missing")
        self._file.seek(start + storage.offset * itemsize)
        return self._file.read(count * itemsize)

    def read(self, ref: TensorRef) -> np.ndarray:
        """The tensor ``ref`` as a (copied, native byte order) numpy array."""
        dtype = ref.dtype
        if any(s < 0 for s in ref.shape) or any(s < 0 for s in ref.stride):
            raise WeightsError(f"{self.path}: a tensor has a negative size or stride")
        # Elements from the tensor's offset to its last element, in storage order.
        span = 1 + sum((n - 1) * s for n, s in zip(ref.shape, ref.stride)) if all(ref.shape) else 0
        raw = self._storage_bytes(ref.storage, ref.offset + span)
        flat = np.frombuffer(raw, dtype=dtype.newbyteorder("<" if self._little else ">"))
        if flat.size < ref.offset + span:
            raise WeightsError(f"{self.path} is truncated: a tensor needs more data than its storage holds")
        view = np.lib.stride_tricks.as_strided(
            flat[ref.offset :], shape=ref.shape, strides=[s * dtype.itemsize for s in ref.stride], writeable=False
        )
        return np.array(view, dtype=dtype)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "TorchFile":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def tensor_dict(obj: Any, path: Path) -> dict[str, TensorRef]:
    """The name → tensor mapping of a state dict (also inside ``{"state_dict": ...}``)."""
    if isinstance(obj, dict) and not any(isinstance(v, TensorRef) for v in obj.values()):
        for key in ("state_dict", "model", "params"):
            if isinstance(obj.get(key), dict):
                return tensor_dict(obj[key], path)
    if not isinstance(obj, dict):
        raise WeightsError(f"{path} holds a {type(obj).__name__}, not a state dict of tensors")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, TensorRef)}
    if not tensors:
        raise WeightsError(f"{path} holds no tensors")
    return tensors
