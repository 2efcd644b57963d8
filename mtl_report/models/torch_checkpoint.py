"""Read a legacy PyTorch checkpoint (``torch.save``, pre-1.6 format) into numpy, without torch.

A legacy ``.pth`` file is a sequence of pickles: a magic number, the protocol version, a
system-info dict, the object itself (here a state dict) whose tensors refer to storages by
key, the list of storage keys, and then each storage's raw bytes (an int64 element count,
then the elements) in that order. The object pickle is read with a restricted unpickler
that allows only the handful of globals a state dict needs (``OrderedDict``, the storage
types, ``torch._utils._rebuild_tensor_v2``) and refuses everything else, so reading a
file runs no code from it. Newer zip-format checkpoints are out of scope (the caller's
files are legacy).
"""

from __future__ import annotations

import collections
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# torch storage class name → numpy dtype (little-endian).
STORAGE_DTYPES = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class CheckpointFormatError(ValueError):
    """The file is not a legacy PyTorch checkpoint this reader understands."""


@dataclass
class _Storage:
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass
class _PendingTensor:
    """A tensor whose storage bytes come after the object pickle."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def materialise(self) -> np.ndarray:
        flat = self.storage.data
        if flat is None:
            raise CheckpointFormatError("a tensor refers to a storage the file does not hold")
        if not self.shape:
            return flat[self.offset].copy()
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=self.shape,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.array(view)  # own, contiguous copy


def _rebuild_tensor_v2(storage, offset, shape, stride, *_rest) -> _PendingTensor:
    return _PendingTensor(storage, int(offset), tuple(shape), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO) -> None:
        super().__init__(file)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return name  # persistent_load reads the dtype from the name
        raise CheckpointFormatError(f"checkpoint refers to {module}.{name}, which is not allowed")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and pid and pid[0] in ("storage", b"storage")):
            raise CheckpointFormatError(f"unsupported persistent id {pid!r:.60}")
        storage_type, key, _location, numel, view = pid[1:6]
        if view is not None:
            raise CheckpointFormatError("storage views are not supported")
        if key not in self.storages:
            self.storages[key] = _Storage(np.dtype(STORAGE_DTYPES[storage_type]), int(numel))
        return self.storages[key]


def read_legacy_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """``{name: array}`` of a legacy ``torch.save`` state dict, read without torch.

    Raises:
        CheckpointFormatError: not a legacy checkpoint, or one holding more than tensors.
    """
    with open(path, "rb") as f:
        try:
            magic = pickle.load(f)
        except Exception as exc:  # a zip checkpoint or another file
            raise CheckpointFormatError(f"{path}: not a legacy PyTorch checkpoint") from exc
        if magic != LEGACY_MAGIC:
            raise CheckpointFormatError(f"{path}: not a legacy PyTorch checkpoint")
        if pickle.load(f) != LEGACY_PROTOCOL:
            raise CheckpointFormatError(f"{path}: unsupported checkpoint protocol")
        sys_info = pickle.load(f)
        if not sys_info.get("little_endian", True):
            raise CheckpointFormatError(f"{path}: big-endian checkpoints are not supported")
        unpickler = _StateDictUnpickler(f)
        state = unpickler.load()
        keys = pickle.load(f)
        for key in keys:
            storage = unpickler.storages[key]
            count = int(np.frombuffer(f.read(8), "<i8")[0])
            nbytes = count * storage.dtype.itemsize
            raw = f.read(nbytes)
            if count != storage.numel or len(raw) != nbytes:
                raise CheckpointFormatError(f"{path}: truncated storage {key}")
            storage.data = np.frombuffer(raw, storage.dtype)
    if not isinstance(state, dict):
        raise CheckpointFormatError(f"{path}: the checkpoint is not a state dict")
    out = {}
    for name, value in state.items():
        if not isinstance(value, _PendingTensor):
            raise CheckpointFormatError(f"{path}: entry {name!r} is not a tensor")
        out[name] = value.materialise()
    return out
