"""Frozen-backbone image features, computed once and cached on disk.

With a frozen backbone the image features of a study never change, so comparing training
set-ups (STL vs MTL, task weights, seeds) need not run EfficientNet again. Entries are keyed
by **image content** (sha256 of the file bytes: a renamed or copied file hits, an edited
file misses) and by **backbone identity**:

    ``<directory>/<backbone_name>-<S>px-<fingerprint>/``

where the fingerprint is a sha256 over every weight array of the backbone (shapes and
bytes) and the image-pipeline version, so random-init and ImageNet weights, or two
fine-tuned checkpoints, never share entries. Hashing all weights costs ~50 ms for
EfficientNetB0 (16 MB), negligible next to one feature batch.

Format: one ``.npy`` per image, ``<key dir>/<sha[:2]>/<sha>.npy``, float16 ``(L, C)``
(49 × 1280 × 2 bytes = 125 KB for EfficientNetB0 at 224 px; 7,000 studies ≈ 880 MB),
loaded as float32. One file per image rather than shards because entries are added
incrementally (a new split, a few new studies) and by concurrent runs: each is written to
a temporary name and renamed, so a crash never leaves a half entry and no shard has to be
rewritten; reading 7,000 small files takes a few seconds, once per training run.
``manifest.json`` in the key directory records what the features are.

A ``file_index.json`` at the top maps ``path → (size, mtime_ns, sha256)``, so unchanged files
are not re-hashed on every run.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import time
import weakref
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from mtl_report.data.errors import DataError
from mtl_report.image_decoding import IMAGE_PIPELINE_VERSION, read_image

INDEX_FILE = "file_index.json"
MANIFEST_FILE = "manifest.json"
STORE_DTYPE = np.float16
_PREDICT_FNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class MissingFeaturesError(LookupError):
    """Features requested for images that :meth:`FeatureCache.ensure` has not computed."""


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 hex digest of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def weights_fingerprint(model: keras.Model) -> str:
    """sha256 over the model's weight arrays (shapes and values) and the image pipeline."""
    h = hashlib.sha256(f"pipeline-v{IMAGE_PIPELINE_VERSION}".encode())
    for w in model.weights:
        value = np.ascontiguousarray(w.numpy())
        h.update(f"{value.dtype.str}{value.shape}".encode())
        h.update(value.tobytes())
    return h.hexdigest()


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "backbone"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _as_sequence(features) -> tf.Tensor:
    """Backbone output → (B, L, C): a spatial grid is flattened, a vector is one token."""
    if isinstance(features, dict):
        raise TypeError("backbone returns a dict; wrap it so it returns one feature tensor")
    features = tf.convert_to_tensor(features)
    rank = features.shape.rank
    if rank == 4:
        shape = tf.shape(features)
        return tf.reshape(features, [shape[0], shape[1] * shape[2], shape[3]])
    if rank == 3:
        return features
    if rank == 2:
        return features[:, None, :]
    raise ValueError(f"backbone output has rank {rank}; expected (B, H, W, C), (B, L, C) or (B, C)")


class FeatureCache:
    """Disk cache of a frozen backbone's features, keyed by image content and backbone.

    Args:
        directory: cache root (shared by all backbones; created when needed).
        backbone: the frozen image model, float ``(B, S, S, 3)`` in [0, 255] (as
            :func:`mtl_report.image_decoding.read_image` yields) → ``(B, H, W, C)``, ``(B, L, C)``
            or ``(B, C)``.
        backbone_name: registry name, part of the key (``"efficientnet_b0"``).
        image_size: input side S, part of the key.

    Example::

        cache = FeatureCache(root / ".feature_cache", backbone, "efficientnet_b0", 224)
        cache.ensure(records["image_path"])          # computes only missing entries
        feats = cache.lookup(records["image_path"])  # (n, 49, 1280) float32
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        backbone: keras.Model,
        backbone_name: str,
        image_size: int,
    ):
        if image_size < 1:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.root = Path(directory)
        self.backbone = backbone
        self.backbone_name = backbone_name
        self.image_size = int(image_size)
        self.fingerprint = weights_fingerprint(backbone)
        self.key = f"{_safe_name(backbone_name)}-{self.image_size}px-{self.fingerprint[:16]}"
        self.directory = self.root / self.key
        self._feature_shape: tuple[int, int] | None = None
        self._index: dict[str, list] | None = None
        manifest = self.directory / MANIFEST_FILE
        if manifest.is_file():
            info = json.loads(manifest.read_text())
            if info.get("fingerprint") != self.fingerprint:
                raise DataError(f"{manifest}: belongs to other backbone weights")
            self._feature_shape = tuple(info["feature_shape"])

    # ------------------------------------------------------------------ identity
    @property
    def feature_shape(self) -> tuple[int, int]:
        """``(L, C)`` of one image's features (probed once with a blank image if needed)."""
        if self._feature_shape is None:
            blank = tf.zeros((1, self.image_size, self.image_size, 3), tf.float32)
            out = _as_sequence(self.backbone(blank, training=False))
            self._feature_shape = (int(out.shape[1]), int(out.shape[2]))
        return self._feature_shape

    def _write_manifest(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        info = {
            "backbone_name": self.backbone_name,
            "image_size": self.image_size,
            "fingerprint": self.fingerprint,
            "feature_shape": list(self.feature_shape),
            "dtype": np.dtype(STORE_DTYPE).name,
            "image_pipeline_version": IMAGE_PIPELINE_VERSION,
            "layout": "<sha256[:2]>/<sha256>.npy",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        _atomic_write_bytes(
            self.directory / MANIFEST_FILE, (json.dumps(info, indent=2) + "\n").encode()
        )

    # ------------------------------------------------------------------ content hashes
    def _load_index(self) -> dict[str, list]:
        if self._index is None:
            self._index = {}
            path = self.root / INDEX_FILE
            if path.is_file():
                try:
                    self._index = json.loads(path.read_text())
                except ValueError:  # a damaged index only costs re-hashing
                    self._index = {}
        return self._index

    def _save_index(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        data = json.dumps(self._load_index(), separators=(",", ":")).encode()
        _atomic_write_bytes(self.root / INDEX_FILE, data)

    def content_hashes(self, image_paths: Sequence[str]) -> list[str]:
        """sha256 of each file, from the index when size and mtime are unchanged."""
        index = self._load_index()
        paths = [os.path.abspath(os.fspath(p)) for p in image_paths]
        hashes: list[str | None] = [None] * len(paths)
        todo = []
        for i, p in enumerate(paths):
            try:
                st = os.stat(p)
            except FileNotFoundError:
                raise DataError(f"{p}: image file not found") from None
            entry = index.get(p)
            if entry and entry[0] == st.st_size and entry[1] == st.st_mtime_ns:
                hashes[i] = entry[2]
            else:
                todo.append((i, p, st))
        if todo:
            with ThreadPoolExecutor(max_workers=4) as pool:
                digests = list(pool.map(file_sha256, [p for _, p, _ in todo]))
            for (i, p, st), digest in zip(todo, digests):
                hashes[i] = digest
                index[p] = [st.st_size, st.st_mtime_ns, digest]
            self._save_index()
        return hashes  # type: ignore[return-value]

    def entry_path(self, sha: str) -> Path:
        return self.directory / sha[:2] / f"{sha}.npy"

    def missing(self, image_paths: Sequence[str]) -> list[str]:
        """Paths (as given) whose features are not cached yet."""
        paths = list(image_paths)
        hashes = self.content_hashes(paths)
        return [p for p, h in zip(paths, hashes) if not self.entry_path(h).is_file()]

    # ------------------------------------------------------------------ compute
    def _predict_fn(self):
        # One traced function per (backbone, size), shared by cache objects: tracing
        # EfficientNet costs seconds.
        fns = _PREDICT_FNS.setdefault(self.backbone, {})
        if self.image_size not in fns:
            spec = tf.TensorSpec((None, self.image_size, self.image_size, 3), tf.float32)
            backbone = self.backbone

            @tf.function(input_signature=[spec])
            def predict(images):
                return _as_sequence(backbone(images, training=False))

            fns[self.image_size] = predict
        return fns[self.image_size]

    def ensure(
        self, image_paths: Sequence[str], batch_size: int = 32, progress: bool = True
    ) -> int:
        """Compute and store the features of every image not cached yet.

        Identical files are computed once. Returns how many entries were computed.

        Raises:
            DataError: a missing file; non-finite features (nothing of that batch is stored).
            tf.errors.InvalidArgumentError: an undecodable image, naming the file.
        """
        paths = [os.fspath(p) for p in image_paths]
        hashes = self.content_hashes(paths)
        todo: dict[str, str] = {}
        for p, h in zip(paths, hashes):
            if h not in todo and not self.entry_path(h).is_file():
                todo[h] = p
        if not todo:
            return 0
        shas, files = list(todo), list(todo.values())
        size = self.image_size

        def load(path):
            return read_image(path, size)

        images = tf.data.Dataset.from_tensor_slices(files).map(
            load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
        images = images.batch(batch_size).prefetch(2)
        bar = keras.utils.Progbar(len(files), unit_name="image") if progress else None
        predict = self._predict_fn()
        done = 0
        for batch in images:
            feats = predict(batch).numpy()
            with np.errstate(over="ignore", invalid="ignore"):
                stored = feats.astype(STORE_DTYPE)
            finite = np.isfinite(stored).reshape(len(stored), -1).all(axis=1)
            if not finite.all():
                bad = [files[done + i] for i in np.flatnonzero(~finite)[:3]]
                raise DataError(
                    f"backbone {self.backbone_name} gave NaN/inf features (or values beyond "
                    f"float16) for {int((~finite).sum())} image(s), e.g. {', '.join(bad)}"
                )
            if self._feature_shape is None:
                self._feature_shape = (int(stored.shape[1]), int(stored.shape[2]))
            if tuple(stored.shape[1:]) != self.feature_shape:
                raise DataError(
                    f"backbone output {stored.shape[1:]} differs from the cache's "
                    f"{self.feature_shape}"
                )
            if done == 0:
                self._write_manifest()
            for i, arr in enumerate(stored):
                sha = shas[done + i]
                target = self.entry_path(sha)
                target.parent.mkdir(parents=True, exist_ok=True)
                _atomic_write_bytes(target, _npy_bytes(arr))
            done += len(stored)
            if bar is not None:
                bar.update(done)
        return done

    # ------------------------------------------------------------------ read
    def lookup(self, image_paths: Sequence[str], dtype: str | np.dtype = "float32") -> np.ndarray:
        """Cached features of the images, ``(n, L, C)`` in ``dtype`` (float32 by default).

        Raises:
            MissingFeaturesError: some images have no entry (call :meth:`ensure`).
            DataError: an entry is unreadable or has the wrong shape (delete it to recompute).
        """
        paths = [os.fspath(p) for p in image_paths]
        hashes = self.content_hashes(paths)
        missing = [p for p, h in zip(paths, hashes) if not self.entry_path(h).is_file()]
        if missing:
            raise MissingFeaturesError(
                f"{len(missing)} of {len(paths)} image(s) have no cached {self.key} features, "
                f"e.g. {missing[0]}; call ensure() first"
            )
        shape = self.feature_shape
        out = np.empty((len(paths), *shape), dtype=dtype)
        for i, h in enumerate(hashes):
            entry = self.entry_path(h)
            try:
                arr = np.load(entry, allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                raise DataError(f"{entry}: unreadable cache entry ({exc}); delete it") from None
            if arr.shape != shape:
                raise DataError(f"{entry}: shape {arr.shape}, expected {shape}; delete it")
            out[i] = arr
        return out

    def __repr__(self) -> str:
        return f"FeatureCache({str(self.directory)!r})"


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()
